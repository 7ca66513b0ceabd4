// Package plan owns `simlab plan`: what `pulumi up` would do to a stack when
// its config goes from one file to another, computed from the program itself
// run twice under the mock engine (infra/pulumimock: Diff) — no Pulumi
// backend, no cluster, no hypervisor is touched and no secret is read — with
// the day-2 guards (infra/guard) evaluated as `pulumi up` would run them, so
// a refused change is shown as refused, with the guard's own message.
package plan

import (
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"golang.org/x/crypto/ssh"

	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
	"github.com/simlab/simlab/infra/pulumimock"
)

// Change is one resource the plan touches.
type Change struct {
	Op   pulumimock.Op
	Type string
	Name string
}

// Refusal is a guard that `pulumi up` would stop at, with its message
// (which names the acknowledgement key first).
type Refusal struct {
	Guard   string
	Message string
}

// Plan is what `pulumi up` would do.
type Plan struct {
	// Changes, destructive first: replace, delete, then update, create; by
	// type and name within each.
	Changes []Change
	// Refused are the guards that stop `pulumi up` before what they protect.
	Refused []Refusal
}

// order ranks operations, destructive first.
var order = map[pulumimock.Op]int{pulumimock.OpReplace: 0, pulumimock.OpDelete: 1, pulumimock.OpUpdate: 2, pulumimock.OpCreate: 3}

// Count is how many changes have op.
func (p *Plan) Count(op pulumimock.Op) int {
	n := 0
	for _, c := range p.Changes {
		if c.Op == op {
			n++
		}
	}
	return n
}

// placeholderKey stands in for the stack's SSH private key in both runs, so
// plan reads no secret (a rotated key does not show) and both runs derive
// the same values from it (bootstrap token, SFTP host key).
func placeholderKey() (string, error) {
	k := ed25519.NewKeyFromSeed([]byte("simlab plan: no secret is read.."))
	b, err := ssh.MarshalPrivateKey(k, "simlab plan placeholder")
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(b)), nil
}

// Record runs the program for cfg under the mock engine, with IDs that change
// exactly when a resource is replaced (pulumimock.Diff needs it), as an `up`
// after one with config last (what that one recorded: infra.RecordedOutputs).
func Record(stack string, cfg, last *config.Loaded) (*pulumimock.Recorder, error) {
	return pulumimock.Run("simlab", stack, func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, cfg)
		return err
	}, pulumimock.WithState(pulumimock.CommandOutputs), pulumimock.WithReplacementIDs(),
		pulumimock.WithPreviousOutputs(infra.RecordedOutputs(&last.Config)))
}

// Compute plans the move of stack from config old to config new. Their SSH
// keys are replaced by one placeholder; their artifact mirrors must hold what
// each config pins (simlab:artifacts.dir).
func Compute(stack string, old, new *config.Loaded) (*Plan, error) {
	key, err := placeholderKey()
	if err != nil {
		return nil, err
	}
	o, n := *old, *new
	if o.Provider != config.ProviderExisting {
		o.SSHPrivateKey = key
	}
	if n.Provider != config.ProviderExisting {
		n.SSHPrivateKey = key
	}
	// The old config as the lab runs it (an `up` with it after one with
	// it), then the new one's `up` after it.
	oldRun, err := Record(stack, &o, &o)
	if err != nil {
		return nil, fmt.Errorf("the program with the old config: %w", err)
	}
	newRun, err := Record(stack, &n, &o)
	if err != nil {
		return nil, fmt.Errorf("the program with the new config: %w", err)
	}
	diff := pulumimock.Diff(oldRun, newRun)
	p := &Plan{}
	if p.Refused, err = Guards(diff, oldRun, newRun); err != nil {
		return nil, err
	}
	// Refused, nothing the guards protect changes (a machine's disks even
	// ignore their triggers until acknowledged): the changes listed are
	// what `pulumi up` would do once the refusals' keys are set.
	if acked, ok := acknowledged(n, p.Refused); ok {
		ackRun, err := Record(stack, acked, &o)
		if err != nil {
			return nil, fmt.Errorf("the program with the new config, acknowledged: %w", err)
		}
		diff = pulumimock.Diff(oldRun, ackRun)
	}
	for k, op := range diff {
		i := strings.LastIndex(k, "::")
		p.Changes = append(p.Changes, Change{Op: op, Type: k[:i], Name: k[i+2:]})
	}
	sort.Slice(p.Changes, func(i, j int) bool {
		a, b := p.Changes[i], p.Changes[j]
		if order[a.Op] != order[b.Op] {
			return order[a.Op] < order[b.Op]
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.Name < b.Name
	})
	return p, nil
}

// acks set each acknowledgement key a guard can name (infra/guard's Ack).
var acks = map[string]func(*config.Loaded){
	"simlab:controllers.replace":      func(c *config.Loaded) { c.Controllers.Replace = true },
	"simlab:workers.replace":          func(c *config.Loaded) { c.Workers.Replace = true },
	"simlab:storage.ceph.allowShrink": func(c *config.Loaded) { c.Storage.Ceph.AllowShrink = true },
}

// acknowledged is cfg with the key of every refusal set (each message
// starts with its key), false when nothing was refused.
func acknowledged(cfg config.Loaded, refused []Refusal) (*config.Loaded, bool) {
	for _, r := range refused {
		key, _, _ := strings.Cut(r.Message, ": ")
		if set, ok := acks[key]; ok {
			set(&cfg)
		}
	}
	return &cfg, len(refused) > 0
}

// guardType is what infra/guard registers: a local command.
const guardType = "command:local:Command"

// Guards runs the update script of every guard the plan updates, with the old
// guard's record as PULUMI_COMMAND_STDOUT (as pulumi-command does at `pulumi
// up`), and returns those that refuse. A guard the plan creates only records.
func Guards(diff pulumimock.Plan, oldRun, newRun *pulumimock.Recorder) ([]Refusal, error) {
	var out []Refusal
	for _, name := range diff.Names(pulumimock.OpUpdate) {
		if !strings.HasSuffix(name, "-guard") {
			continue
		}
		o, ok1 := oldRun.Find(guardType, name)
		n, ok2 := newRun.Find(guardType, name)
		if !ok1 || !ok2 {
			continue
		}
		prev, err := exec.Command("sh", "-c", pulumimock.String(o.Inputs, "create")).Output()
		if err != nil {
			return nil, fmt.Errorf("guard %s: recording its old values: %w", name, err)
		}
		if msg := guard.Refusal(pulumimock.String(n.Inputs, "update"), string(prev)); msg != "" {
			out = append(out, Refusal{Guard: name, Message: msg})
		}
	}
	return out, nil
}

// symbols are the marks `pulumi preview` uses.
var symbols = map[pulumimock.Op]string{pulumimock.OpReplace: "+-", pulumimock.OpDelete: "- ", pulumimock.OpUpdate: "~ ", pulumimock.OpCreate: "+ "}

// Write prints the plan for people: the refusals, then every change,
// destructive first, then the counts.
func (p *Plan) Write(w io.Writer) {
	if len(p.Changes) == 0 {
		fmt.Fprintln(w, "No changes.")
		return
	}
	if len(p.Refused) > 0 {
		fmt.Fprintf(w, "REFUSED: `pulumi up` stops at %d guard(s) before anything they protect changes (docs/DAY2.md):\n", len(p.Refused))
		for _, r := range p.Refused {
			fmt.Fprintf(w, "  %s:\n", r.Guard)
			for _, l := range strings.Split(r.Message, "\n") {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
		fmt.Fprintln(w, "\nWhat `pulumi up` would do once acknowledged:")
	}
	width := 0
	for _, c := range p.Changes {
		width = max(width, len(c.Type))
	}
	for _, c := range p.Changes {
		fmt.Fprintf(w, "  %s %-7s  %-*s  %s\n", symbols[c.Op], c.Op, width, c.Type, c.Name)
	}
	fmt.Fprintf(w, "\n%d to replace, %d to delete, %d to update, %d to create.\n",
		p.Count(pulumimock.OpReplace), p.Count(pulumimock.OpDelete), p.Count(pulumimock.OpUpdate), p.Count(pulumimock.OpCreate))
}
