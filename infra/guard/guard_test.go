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
