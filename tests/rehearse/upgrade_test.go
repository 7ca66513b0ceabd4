//go:build rehearse

package rehearse

import (
	"strings"
	"testing"
	"time"
)

// rehearseUpgradeDryRun runs the upgrade phase's steps (infra/cluster's
// upgrade.go) as the program declared them, in the program's order, in
// their dry-run mode: each downloads its release's kubeadm, kubelet and
// kubectl from the artifact server and checks their sha512, then the real
// kubeadm runs `upgrade plan` and `upgrade apply --dry-run` on the
// controller and `upgrade node --dry-run` on the worker, and kubectl a
// server-side dry run of each drain. The nodes run the pinned release
// already (their steps' creates reported nothing to upgrade), so this is as
// far as an upgrade goes here: no second release is built (docs/DAY2.md).
func rehearseUpgradeDryRun(t *testing.T, run *runner, tm *timings) {
	t.Helper()
	t0 := time.Now()
	steps := 0
	for _, c := range run.done {
		if !strings.HasSuffix(c.Name, "-kubeadm-upgrade") {
			continue
		}
		steps++
		if out := run.stdout[c.Name]; !strings.Contains(out, "nothing to upgrade") {
			t.Errorf("%s's create on a cluster at the pinned release did not skip: %s", c.Name, out)
		}
		out, err := run.exec(c, "export SIMLAB_UPGRADE_DRY_RUN=1\n"+c.Create)
		if err != nil {
			t.Errorf("%s, dry run: %v\n%s", c.Name, err, out)
			continue
		}
		for _, want := range []string{"--dry-run passed", "kubelet " + run.l.Versions.Kubernetes + " verified, not installed", "(server dry run)"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s, dry run: want %q in its output:\n%s", c.Name, want, out)
			}
		}
		t.Logf("%s, dry run:\n%s", c.Name, tail(out, 1200))
	}
	if steps != len(machines) {
		t.Errorf("ran %d upgrade steps, want one per node (%d)", steps, len(machines))
	}
	tm.mark("upgrade steps' dry run (real kubeadm)", t0)
}
