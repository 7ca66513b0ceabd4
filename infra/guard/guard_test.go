package guard_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/simlab/simlab/infra/guard"
)

// run runs script in sh with PULUMI_COMMAND_STDOUT=prev, as pulumi-command does.
func run(t *testing.T, script, prev string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "PULUMI_COMMAND_STDOUT="+prev)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func args(disk, net, size, domain string, acked bool) *guard.Args {
	return &guard.Args{Subject: "dev-controller-1", Harm: "replace it", Ack: "simlab:controllers.replace", Acked: acked,
		Safely: "see the docs", Values: []guard.Value{
			{Name: "simlab:controllers.diskGiB", Value: disk},
			{Name: "simlab:libvirt.network", Value: net},
			{Name: "pool size", Value: size, Rule: guard.OnDecrease},
			{Name: "failure domain", Value: domain, Rule: guard.OnDecrease, Order: []string{"osd", "host"}},
		}}
}

func TestGuardScripts(t *testing.T) {
	prev, _, err := run(t, guard.Record(args("30", "default", "3", "host", false).Values), "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    *guard.Args
		prev    string
		refused []string // names in the message; none: allowed
	}{
		{"unchanged", args("30", "default", "3", "host", false), prev, nil},
		{"first record", args("40", "lab", "1", "osd", false), "", nil},
		{"grown", args("30", "default", "5", "host", false), prev, nil},
		{"disk changed", args("40", "default", "3", "host", false), prev, []string{"simlab:controllers.diskGiB: 30 -> 40"}},
		{"network changed, pool shrunk", args("30", "it's new", "1", "osd", false), prev,
			[]string{"simlab:libvirt.network: default -> it's new", "pool size: 3 -> 1", "failure domain: host -> osd"}},
		{"acknowledged", args("40", "lab", "1", "osd", true), prev, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, stderr, err := run(t, guard.Script(c.args), c.prev)
			if len(c.refused) == 0 {
				if err != nil {
					t.Fatalf("refused: %v\n%s", err, stderr)
				}
				want, _, _ := run(t, guard.Record(c.args.Values), "")
				if out != want {
					t.Errorf("records %q, want %q", out, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("allowed, want refused; stdout %q", out)
			}
			if !strings.HasPrefix(stderr, "simlab:controllers.replace: refusing to change dev-controller-1") ||
				!strings.Contains(stderr, "set simlab:controllers.replace: true") {
				t.Errorf("message does not name the acknowledgement key:\n%s", stderr)
			}
			for _, r := range c.refused {
				if !strings.Contains(stderr, r) {
					t.Errorf("message does not say %q:\n%s", r, stderr)
				}
			}
		})
	}
}

// A Book checks at program time what the guard's update would refuse at
// `up`, against the record the previous deployment left: the same message;
// it records every guard's values (what the command itself prints) for the
// next run, and checks nothing without a previous record or when
// acknowledged.
func TestBookRefusesAtProgramTime(t *testing.T) {
	first := guard.NewBook(nil)
	if err := first.Check("dev-controller-1-guard", args("30", "default", "3", "host", false)); err != nil {
		t.Fatalf("a first record refused: %v", err)
	}
	printed, _, err := run(t, guard.Record(args("30", "default", "3", "host", false).Values), "")
	if err != nil {
		t.Fatal(err)
	}
	rec := first.Records()
	if got := rec["dev-controller-1-guard"]; got != strings.TrimSuffix(printed, "\n") {
		t.Fatalf("recorded %q, the command prints %q", got, printed)
	}

	next := guard.NewBook(rec)
	err = next.Check("dev-controller-1-guard", args("40", "default", "1", "host", false))
	if err == nil {
		t.Fatal("a disk change and a pool shrink went through")
	}
	_, want, _ := run(t, guard.Script(args("40", "default", "1", "host", false)), printed)
	if err.Error() != strings.TrimSpace(want) || !strings.HasPrefix(err.Error(), "simlab:controllers.replace: ") {
		t.Errorf("the program's refusal:\n%s\nthe guard's at up:\n%s", err, want)
	}
	for _, ok := range []*guard.Args{args("30", "default", "5", "host", false), args("40", "lab", "1", "osd", true)} {
		if err := guard.NewBook(rec).Check("dev-controller-1-guard", ok); err != nil {
			t.Errorf("refused %+v: %v", ok.Values, err)
		}
	}
	if err := guard.NewBook(rec).Check("another-guard", args("40", "lab", "1", "osd", false)); err != nil {
		t.Errorf("a guard with no previous record refused: %v", err)
	}
	var none *guard.Book
	if err := none.Check("x", args("1", "a", "1", "osd", false)); err != nil || none.Records() != nil {
		t.Error("a nil Book checks or records")
	}
}
