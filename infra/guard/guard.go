// Package guard refuses dangerous day-2 changes at `pulumi up` (docs/DAY2.md).
//
// A guard is a local command that remembers, as its stdout, the values it
// watches (a controller's disk size, the Ceph pool size, ...). On an update
// (any watched value changed) its script compares the new values with the
// previous stdout, which pulumi-command hands it as PULUMI_COMMAND_STDOUT,
// and fails with an error naming the acknowledgement key unless the stack
// set it. The resources a change would harm depend on the guard, so the
// engine never reaches them when it refuses. A guard's first create only
// records: there is nothing to compare with.
//
// Guards run on the Pulumi host (pulumi-command's local provider), so they
// are only registered where the stack already uses pulumi-command (libvirt
// and metal, not existing mode).
//
// A Book refuses the same changes earlier, at `pulumi preview` as at `up`
// and in every mode: the stack records every guard's values in its output
// Output, the program reads them back from its previous deployment, and
// each guard's update script runs in the program itself against them
// (Book.Check), so the program stops, with the guard's own message, before
// the engine plans anything.
package guard

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/pulumi/pulumi-command/sdk/go/command/local"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Rule says which change of a value is refused.
type Rule int

const (
	// OnChange refuses any change.
	OnChange Rule = iota
	// OnDecrease refuses a smaller value: a smaller integer, or an earlier
	// entry of Value.Order.
	OnDecrease
)

// Value is one watched value.
type Value struct {
	// Name identifies the value in the guard's record and its message,
	// usually the config key it comes from (simlab:controllers.diskGiB).
	Name string
	// Value is the current value (no newline).
	Value string
	// Rule says which change is refused.
	Rule Rule
	// Order ranks non-numeric values for OnDecrease, lowest first (e.g.
	// Ceph failure domains: osd, host).
	Order []string
}

// Args describe one guard.
type Args struct {
	// Subject names what is protected, for the message (dev-controller-1).
	Subject string
	// Harm says what the refused change would do, for the message.
	Harm string
	// Ack is the acknowledgement key (simlab:controllers.replace).
	Ack string
	// Acked is the key's value: true lets every change through.
	Acked bool
	// Safely says how to make the change with the acknowledgement, for the message.
	Safely string
	// Values are what the guard watches.
	Values []Value
	// Book, when set, checks the change at program time too (Book.Check).
	Book *Book
}

// Output is the stack output holding every guard's record (RecordText),
// by guard name: what the next `up` or preview checks its values against.
const Output = "guards"

// Book holds a stack's guard records: those its previous deployment
// recorded (its Output) and those this run records. A nil Book checks and
// records nothing.
type Book struct {
	prior map[string]string
	mu    sync.Mutex
	now   map[string]string
}

// NewBook is a Book whose previous deployment recorded prior (nil: none,
// or a stack deployed before guards were recorded).
func NewBook(prior map[string]string) *Book {
	return &Book{prior: prior, now: map[string]string{}}
}

// Check runs guard name's update script (Script) in the program, with the
// record the previous deployment left for it as PULUMI_COMMAND_STDOUT, as
// pulumi-command runs it at `up`: a refused change is this error (the
// guard's message, its acknowledgement key first) at `pulumi preview` as
// at `up`. It records args' values for this run's Output. Without a
// previous record it only records.
func (b *Book) Check(name string, args *Args) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	b.now[name] = RecordText(args.Values)
	prev, ok := b.prior[name]
	b.mu.Unlock()
	if !ok || args.Acked {
		return nil
	}
	if msg := Refusal(Script(args), prev); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// Refusal runs a guard's update script as pulumi-command does at `up`,
// with prev (the guard's last record) as PULUMI_COMMAND_STDOUT, and
// returns its refusal: the message it printed when it failed ("" when it
// let the change through).
func Refusal(update, prev string) string {
	cmd := exec.Command("sh", "-c", update)
	cmd.Env = append(os.Environ(), "PULUMI_COMMAND_STDOUT="+prev)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return msg
		}
		return "the guard's update failed without a message: " + err.Error()
	}
	return ""
}

// Records are the records this run made, by guard name (Output's value).
func (b *Book) Records() map[string]string {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.now))
	for k, v := range b.now {
		out[k] = v
	}
	return out
}

// RecordText is what Record prints: one name=value a line, in order.
func RecordText(values []Value) string { return strings.Join(recordLines(values), "\n") }

// recordLines are a record's lines, name=value each.
func recordLines(values []Value) []string {
	lines := make([]string, len(values))
	for i, v := range values {
		lines[i] = v.Name + "=" + v.Value
	}
	return lines
}

// New registers a guard named name. Make the resources it protects depend on it.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*local.Command, error) {
	if args == nil || len(args.Values) == 0 {
		return nil, fmt.Errorf("guard %s: no values to watch", name)
	}
	for _, v := range args.Values {
		if strings.ContainsAny(v.Name, "=\n") || strings.Contains(v.Value, "\n") {
			return nil, fmt.Errorf("guard %s: value %q: names hold no '=' or newline, values no newline", name, v.Name)
		}
	}
	if err := args.Book.Check(name, args); err != nil {
		return nil, err
	}
	return local.NewCommand(ctx, name, &local.CommandArgs{
		Create: pulumi.String(Record(args.Values)),
		Update: pulumi.String(Script(args)),
	}, opts...)
}

// Record is the script that prints the watched values, one name=value a line.
func Record(values []Value) string {
	var b strings.Builder
	b.WriteString("printf '%s\\n'")
	for _, l := range recordLines(values) {
		b.WriteString(" " + shq(l))
	}
	return b.String()
}

// Script is the update script: it refuses a change its rules forbid unless
// args.Acked, then records the new values.
func Script(args *Args) string {
	if args.Acked {
		return Record(args.Values)
	}
	var b strings.Builder
	b.WriteString(`set -eu
prev=${PULUMI_COMMAND_STDOUT:-}
refused=
old() { printf '%s\n' "$prev" | awk -v k="$1" 'index($0, k "=") == 1 {print substr($0, length(k) + 2); exit}'; }
`)
	for i, v := range args.Values {
		fmt.Fprintf(&b, "o=$(old %s); n=%s\n", shq(v.Name), shq(v.Value))
		switch {
		case v.Rule == OnChange:
			b.WriteString(`if [ -n "$o" ] && [ "$o" != "$n" ]; then`)
		case len(v.Order) > 0:
			fmt.Fprintf(&b, "rank%d() { case $1 in", i)
			for r, s := range v.Order {
				fmt.Fprintf(&b, " %s) echo %d;;", shq(s), r)
			}
			b.WriteString(" *) echo -1;; esac; }\n")
			fmt.Fprintf(&b, `if [ -n "$o" ] && [ "$(rank%[1]d "$n")" -lt "$(rank%[1]d "$o")" ]; then`, i)
		default:
			b.WriteString(`if [ -n "$o" ] && [ "$n" -lt "$o" ]; then`)
		}
		fmt.Fprintf(&b, "\n  refused=\"$refused\n  %s: $o -> $n\"\nfi\n", v.Name)
	}
	msg := fmt.Sprintf("%s: refusing to change %s: it would %s. Changed:", args.Ack, args.Subject, args.Harm)
	fmt.Fprintf(&b, `if [ -n "$refused" ]; then
  printf '%%s%%s\n%%s\n' %s "$refused" %s >&2
  exit 1
fi
`, shq(msg), shq(fmt.Sprintf("Restore the old values, or set %s: true to do it anyway (%s) and remove it afterwards; see docs/DAY2.md.", args.Ack, args.Safely)))
	b.WriteString(Record(args.Values))
	return b.String()
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }
