package infra_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
	"github.com/simlab/simlab/infra/plan"
	"github.com/simlab/simlab/infra/pulumimock"
)

// runForPlan runs the whole program for cfg under the mock engine with IDs
// that change exactly when a resource is replaced (pulumimock.Diff), as
// the lab runs it: an `up` after one with the same config.
func runForPlan(t *testing.T, cfg *config.Loaded) *pulumimock.Recorder {
	t.Helper()
	return runAfter(t, cfg, cfg)
}

// runAfter is runForPlan for an `up` of cfg after one of last (the stack
// outputs it reads back are last's: infra.RecordedOutputs).
func runAfter(t *testing.T, cfg, last *config.Loaded) *pulumimock.Recorder {
	t.Helper()
	rec, err := pulumimock.Run("simlab", "dev", func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, cfg)
		return err
	}, withCommandOutputs, pulumimock.WithReplacementIDs(), pulumimock.WithPreviousOutputs(infra.RecordedOutputs(&last.Config)))
	if err != nil {
		t.Fatalf("under mocks: %v", err)
	}
	return rec
}

// day2Snippet is a Butane snippet whose content the rows change.
const day2Snippet = "variant: fcos\nversion: 1.6.0\nstorage:\n  files:\n    - path: /etc/simlab-day2\n      contents:\n        inline: %s\n"

// snippets gives the controllers and the workers one day2Snippet with content.
func snippets(c *config.Loaded, content string) {
	c.Ignition.Controller = []string{fmt.Sprintf(day2Snippet, content)}
	c.Ignition.Worker = []string{fmt.Sprintf(day2Snippet, content)}
}

// nodeResources are the names of a libvirt node's own resources (its
// component and the children the nodes layer registers).
func nodeResources(node string) []string {
	return []string{node, node + "-guard", node + "-ignition", node + "-disks", node + "-domain", node + "-address", node + "-ssh"}
}

// joinResources are the cluster layer's resources for one worker (its
// upgrade step and its drained step aside).
func joinResources(node string) []string {
	return []string{node + "-join-token", node + "-kubeadm-join", node + "-admit", node + "-settled"}
}

// drainedStep is the cluster layer's drained step of each libvirt worker
// (cluster/drained.go).
func drainedStep(nodes ...string) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n+"-drained")
	}
	return out
}

// upgradeStep is the cluster layer's upgrade phase step of one node.
func upgradeStep(nodes ...string) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n+"-kubeadm-upgrade")
	}
	return out
}

// cephOSD is the storage layer's OSD drain step of each Ceph worker.
func cephOSD(nodes ...string) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n+"-ceph-osd")
	}
	return out
}

// replacedMachine is what replacing a node's domain replaces after it: a
// new UUID re-runs everything keyed on the machine.
func replacedMachine(node string) []string {
	return []string{node + "-domain", node + "-address", node + "-ssh"}
}

func cat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// kubernetesObjects are the names of every Kubernetes object (and chart and
// manifest component) and the cluster's provider: what a new cluster (a
// re-run kubeadm init, a new CA) replaces.
func kubernetesObjects(rec *pulumimock.Recorder) []string {
	out := []string{"cluster"} // the provider
	for _, r := range rec.Resources() {
		if strings.HasPrefix(r.Type, "kubernetes:") { // objects, and the chart and manifest components

			out = append(out, r.Name)
		}
	}
	return out
}

type day2Row struct {
	name string
	// base adjusts the old config (both runs start from stacks/Pulumi.dev.yaml).
	base func(*config.Loaded)
	// change turns the old config into the new one; dir is the shared mirror.
	change func(c *config.Loaded, dir string, t *testing.T)
	// The expected names per operation; every other resource is unchanged
	// (its inputs are equal). replaceAll adds kubernetesObjects.
	create, update, replace, delete []string
	replaceAll                      bool
	// refused maps each guard (infra/guard) whose update refuses the change
	// to the acknowledgement key its error names; every other updated guard
	// must let the change through.
	refused map[string]string
}

func day2Rows() []day2Row {
	noCeph := func(c *config.Loaded) {
		c.Storage.Ceph.Enabled = false
		c.Storage.NFS.Server, c.Storage.NFS.Path = "nfs.dev.simlab.internal", "/export/simlab"
	}
	ceph := []string{"storage-ceph-cluster", "storage-ceph-pool", "storage-ceph-pool-mgr"}
	remoteCommands := func(nodes ...string) []string {
		var out []string
		for _, n := range nodes {
			out = append(out, n+"-ignition", n+"-disks", n+"-domain", n+"-address", n+"-ssh")
		}
		return out
	}
	return []day2Row{
		{
			name:   "workers 2->3",
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Workers.Count = 3 },
			create: cat(nodeResources("dev-worker-3"), joinResources("dev-worker-3"), drainedStep("dev-worker-3"), upgradeStep("dev-worker-3"), cephOSD("dev-worker-3")),
			// Sizing grows: 3 mons, size-3 pools across hosts; the guard
			// records it and lets it through.
			update: cat(ceph, []string{"storage-ceph-guard"}),
		},
		{
			name:   "workers 3->2 without Ceph",
			base:   func(c *config.Loaded) { noCeph(c); c.Workers.Count = 3 },
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Workers.Count = 2 },
			delete: cat(nodeResources("dev-worker-3"), joinResources("dev-worker-3"), drainedStep("dev-worker-3"), upgradeStep("dev-worker-3")),
		},
		{
			name:   "workers 3->2 with Ceph",
			base:   func(c *config.Loaded) { c.Workers.Count = 3 },
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Workers.Count = 2 },
			delete: cat(nodeResources("dev-worker-3"), joinResources("dev-worker-3"), drainedStep("dev-worker-3"), upgradeStep("dev-worker-3"), cephOSD("dev-worker-3")),
			// The plan shrinks the pools to size 1 and the mons to 1; the
			// Ceph guard refuses before the CephCluster or a pool changes.
			update:  cat(ceph, []string{"storage-ceph-guard"}),
			refused: map[string]string{"storage-ceph-guard": "simlab:storage.ceph.allowShrink"},
		},
		{
			name: "workers 3->2 with Ceph acknowledged",
			base: func(c *config.Loaded) { c.Workers.Count = 3 },
			change: func(c *config.Loaded, _ string, _ *testing.T) {
				c.Workers.Count = 2
				c.Storage.Ceph.AllowShrink = true
			},
			delete: cat(nodeResources("dev-worker-3"), joinResources("dev-worker-3"), drainedStep("dev-worker-3"), upgradeStep("dev-worker-3"), cephOSD("dev-worker-3")),
			update: cat(ceph, []string{"storage-ceph-guard"}),
		},
		{
			name:   "workers 4->3 with Ceph",
			base:   func(c *config.Loaded) { c.Workers.Count = 4 },
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Workers.Count = 3 },
			// Pools keep size 3 across hosts and 3 mons: nothing shrinks,
			// nothing is refused. The CephCluster stops listing the worker,
			// then its -ceph-osd delete drains and purges its OSD before
			// the worker is drained, reset and removed.
			delete: cat(nodeResources("dev-worker-4"), joinResources("dev-worker-4"), drainedStep("dev-worker-4"), upgradeStep("dev-worker-4"), cephOSD("dev-worker-4")),
			update: []string{"storage-ceph-cluster"},
		},
		{
			name:   "controller cpus 2->4",
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Controllers.CPUs = 4 },
			// In place: the domain is resized and restarted, its UUID kept,
			// so kubeadm init and everything after it stay.
			update: []string{"dev-controller-1-domain"},
		},
		{
			name:   "worker memory 8192->16384",
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Workers.MemoryMiB = 16384 },
			// In place, one worker at a time (TestMockResizeRollsOneWorkerAtATime):
			// each worker's drained step is keyed on the size, so replaced
			// (its create drains the worker), then its domain's update
			// resizes and restarts it, then its settle step's update brings
			// it back before the next worker's drained step.
			update:  cat([]string{"dev-worker-1-domain", "dev-worker-2-domain", "dev-worker-1-settled", "dev-worker-2-settled"}),
			replace: drainedStep("dev-worker-1", "dev-worker-2"),
		},
		{
			name:   "controller diskGiB 30->40",
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Controllers.DiskGiB = 40 },
			// Unacknowledged, disks ignore their triggers: nothing is
			// replaced, and the guard refuses at `pulumi up` before the
			// disks' (no-op) update.
			update:  []string{"dev-controller-1-guard", "dev-controller-1-disks"},
			refused: map[string]string{"dev-controller-1-guard": "simlab:controllers.replace"},
		},
		{
			name: "controller diskGiB 30->40 acknowledged",
			change: func(c *config.Loaded, _ string, _ *testing.T) {
				c.Controllers.DiskGiB = 40
				c.Controllers.Replace = true
			},
			// A new cluster: the workers' upgrade steps get its kubeconfig.
			update: cat([]string{"dev-controller-1-guard"}, upgradeStep("dev-worker-1", "dev-worker-2")),
			replace: cat([]string{"dev-controller-1-disks"}, replacedMachine("dev-controller-1"),
				[]string{"dev-controller-1-kubeadm-init", "dev-controller-1-admin-kubeconfig", "dev-controller-1-admit"},
				joinResources("dev-worker-1"), joinResources("dev-worker-2")),
			replaceAll: true,
		},
		{
			name:   "FCOS bump",
			change: fcosBump("43.20251101.3.0"),
			// One base image resource per release: the new one is created,
			// the old one deleted (its delete keeps the file while an overlay
			// uses it). Every overlay's create names the new base: an update
			// whose script is a no-op, so existing nodes keep their disks.
			create: []string{"dev-fcos-image-43.20251101.3.0"},
			delete: []string{"dev-fcos-image-42.20251012.3.0"},
			update: []string{"dev-controller-1-disks", "dev-worker-1-disks", "dev-worker-2-disks"},
		},
		{
			name: "FCOS bump acknowledged",
			change: func(c *config.Loaded, dir string, t *testing.T) {
				fcosBump("43.20251101.3.0")(c, dir, t)
				c.Workers.Replace = true
			},
			// The workers move to the new release: each from new disks on
			// the new base image, one at a time (TestMockReplaceRollsOneWorkerAtATime);
			// the controller keeps its disks and release. The guards record
			// the acknowledgement.
			create: []string{"dev-fcos-image-43.20251101.3.0"},
			delete: []string{"dev-fcos-image-42.20251012.3.0"},
			update: []string{"dev-controller-1-disks", "dev-worker-1-guard", "dev-worker-2-guard"},
			replace: cat([]string{"dev-worker-1-disks", "dev-worker-2-disks"},
				replacedMachine("dev-worker-1"), replacedMachine("dev-worker-2"),
				joinResources("dev-worker-1"), joinResources("dev-worker-2")),
		},
		{
			name:   "snippet change",
			base:   func(c *config.Loaded) { snippets(c, "one") },
			change: func(c *config.Loaded, _ string, _ *testing.T) { snippets(c, "two") },
			// The controller ignores its Ignition's drift; the workers'
			// guards refuse new machines, and without the acknowledgement
			// their disks ignore the changed trigger: nothing is replaced.
			update:  []string{"dev-worker-1-ignition", "dev-worker-2-ignition", "dev-worker-1-guard", "dev-worker-2-guard"},
			refused: map[string]string{"dev-worker-1-guard": "simlab:workers.replace", "dev-worker-2-guard": "simlab:workers.replace"},
		},
		{
			name: "snippet change acknowledged",
			base: func(c *config.Loaded) { snippets(c, "one") },
			change: func(c *config.Loaded, _ string, _ *testing.T) {
				snippets(c, "two")
				c.Workers.Replace = true
			},
			// Every worker from new disks: a new machine, joined again.
			update: []string{"dev-worker-1-ignition", "dev-worker-2-ignition", "dev-worker-1-guard", "dev-worker-2-guard"},
			replace: cat([]string{"dev-worker-1-disks", "dev-worker-2-disks"},
				replacedMachine("dev-worker-1"), replacedMachine("dev-worker-2"),
				joinResources("dev-worker-1"), joinResources("dev-worker-2")),
		},
		{
			name:   "Kubernetes v1.34 -> v1.35",
			change: kubernetesBump("v1.35.0"),
			// In place: the upgrade phase's steps (their scripts name the
			// new release) run in turn, controller first; the workers'
			// Ignition files name the new binaries for machines made later,
			// but their identity (and so their guards and disks) is
			// unchanged: no machine is replaced. kubeadm init's config
			// changes too (an update whose create skips: the cluster exists),
			// and so does each join token's (it names the release, so that
			// kubeadm looks none up): the token is refreshed.
			update: cat([]string{"dev-controller-1-kubeadm-init", "dev-worker-1-ignition", "dev-worker-2-ignition",
				"dev-worker-1-join-token", "dev-worker-2-join-token"},
				upgradeStep("dev-controller-1", "dev-worker-1", "dev-worker-2")),
		},
		{
			name: "SSH key rotation",
			change: func(c *config.Loaded, _ string, _ *testing.T) {
				c.SSHPrivateKey = strings.Replace(fakePrivateKey, "TESTONLY", "TESTONLY-rotated", 1)
			},
			// Every remote command's connection (and the derived bootstrap
			// token) changes: updates, no replacement. So does the SFTP host
			// key derived from it (the dev stack has an sftp type and no
			// simlab:simulator.sftp.hostKey of its own).
			update: cat([]string{"dev-fcos-image-42.20251012.3.0"},
				remoteCommands("dev-controller-1", "dev-worker-1", "dev-worker-2"),
				[]string{"dev-controller-1-kubeadm-init", "dev-controller-1-admin-kubeconfig", "dev-controller-1-admit"},
				joinResources("dev-worker-1"), joinResources("dev-worker-2"), drainedStep("dev-worker-1", "dev-worker-2"), []string{"workloads-sftp-host-key"},
				upgradeStep("dev-controller-1", "dev-worker-1", "dev-worker-2"), cephOSD("dev-worker-1", "dev-worker-2")),
		},
		{
			name:   "simulator maxWorkers",
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Simulator.MaxWorkers = 8 },
			update: []string{"workloads-simulator"},
		},
	}
}

// kubernetesBump moves the stack and its mirror's Kubernetes binaries to
// another version.
func kubernetesBump(version string) func(c *config.Loaded, dir string, t *testing.T) {
	return func(c *config.Loaded, dir string, t *testing.T) {
		m, err := artifacts.LoadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		old := c.Versions.Kubernetes
		for name, a := range m.Artifacts {
			if strings.Contains(a.Path, "/"+old+"/") {
				a.Path = strings.ReplaceAll(a.Path, old, version)
				a.SHA512 = strings.Repeat("cd", 64)
				m.Artifacts[name] = a
			}
		}
		m.Versions.Kubernetes = version
		if err := m.Write(dir); err != nil {
			t.Fatal(err)
		}
		c.Versions.Kubernetes = version
	}
}

// fcosBump moves the stack and its mirror's QEMU image to another release.
func fcosBump(release string) func(c *config.Loaded, dir string, t *testing.T) {
	return func(c *config.Loaded, dir string, t *testing.T) {
		m, err := artifacts.LoadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		old := c.Versions.FCOSRelease
		a := m.Artifacts[artifacts.FCOSQemu]
		a.Path = strings.ReplaceAll(a.Path, old, release)
		a.SHA512 = strings.Repeat("ab", 64)
		m.Artifacts[artifacts.FCOSQemu] = a
		m.Versions.FCOSRelease = release
		if err := m.Write(dir); err != nil {
			t.Fatal(err)
		}
		c.Versions.FCOSRelease = release
	}
}

// TestMockDay2Changes runs the program for the old and the new config of
// each row and asserts exactly which resources are created, updated,
// replaced and deleted (docs/DAY2.md; the rules are pulumimock.Diff's),
// comparing every resource's inputs: nodes, workers, cluster, storage and
// workloads alike.
func TestMockDay2Changes(t *testing.T) {
	for _, row := range day2Rows() {
		t.Run(row.name, func(t *testing.T) {
			oldCfg, newCfg := loadStack(t, "dev"), loadStack(t, "dev")
			newCfg.Artifacts.Dir = oldCfg.Artifacts.Dir // one project, one mirror
			if row.base != nil {
				row.base(oldCfg)
				row.base(newCfg)
			}
			oldRun := runForPlan(t, oldCfg)
			row.change(newCfg, newCfg.Artifacts.Dir, t)
			newRun := runAfter(t, newCfg, oldCfg)
			plan := pulumimock.Diff(oldRun, newRun)

			replace := row.replace
			if row.replaceAll {
				replace = cat(replace, kubernetesObjects(newRun))
			}
			want := map[pulumimock.Op][]string{
				pulumimock.OpCreate: row.create, pulumimock.OpUpdate: row.update,
				pulumimock.OpReplace: replace, pulumimock.OpDelete: row.delete,
			}
			for _, op := range []pulumimock.Op{pulumimock.OpCreate, pulumimock.OpUpdate, pulumimock.OpReplace, pulumimock.OpDelete} {
				if got, exp := plan.Names(op), sortedUnique(want[op]); strings.Join(got, " ") != strings.Join(exp, " ") {
					t.Errorf("%s:\n got  %v\n want %v", op, got, exp)
				}
			}
			checkGuards(t, plan, oldRun, newRun, row.refused)
			if t.Failed() {
				t.Logf("the whole plan:\n%s", plan)
			}
		})
	}
}

// checkGuards runs the guards the plan updates as `pulumi up` would
// (plan.Guards, what `simlab plan` shows) and checks they refuse exactly the
// guards in refused, naming their key first.
func checkGuards(t *testing.T, p pulumimock.Plan, oldRun, newRun *pulumimock.Recorder, refused map[string]string) {
	t.Helper()
	got, err := plan.Guards(p, oldRun, newRun)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, r := range got {
		seen[r.Guard] = r.Message
	}
	for name, key := range refused {
		msg, ok := seen[name]
		switch {
		case !ok:
			t.Errorf("%s lets the change through (or is not updated), want it refused naming %s", name, key)
		case !strings.HasPrefix(msg, key+": "):
			t.Errorf("%s refuses without naming %s first:\n%s", name, key, msg)
		}
		delete(seen, name)
	}
	for name, msg := range seen {
		t.Errorf("%s refuses:\n%s", name, msg)
	}
}

// sortedUnique sorts names, keeping one of each (the plan lists a name once
// per resource type: flannel is a ServiceAccount, a ClusterRole and a binding).
func sortedUnique(names []string) []string {
	out := append([]string(nil), names...)
	sort.Strings(out)
	return out
}

// TestMockUpgradeRollsOneNodeAtATime: the upgrade phase's steps run after
// each node is admitted, the controller's first and each worker's after the
// previous one's (so one node at a time is drained); the storage layer
// waits for the last; a worker's step gets the admin kubeconfig on stdin,
// as a secret, and its script names the release.
func TestMockUpgradeRollsOneNodeAtATime(t *testing.T) {
	cfg := loadStack(t, "dev")
	cfg.Workers.Count = 3
	rec := runForPlan(t, cfg)
	urn := map[string]string{}
	for _, r := range rec.Resources() {
		urn[r.Name] = r.URN
	}
	dependsOn := func(name, on string) bool {
		r, ok := rec.Find("command:remote:Command", name)
		if !ok {
			t.Fatalf("no command %s", name)
		}
		for _, d := range r.Dependencies {
			if d == urn[on] {
				return true
			}
		}
		return false
	}
	prev := "dev-controller-1-kubeadm-upgrade"
	if !dependsOn(prev, "dev-controller-1-admit") {
		t.Errorf("%s does not wait for the controller's admission", prev)
	}
	for i := 1; i <= 3; i++ {
		w := fmt.Sprintf("dev-worker-%d", i)
		step := w + "-kubeadm-upgrade"
		if !dependsOn(step, prev) || !dependsOn(step, w+"-admit") {
			t.Errorf("%s must wait for %s and %s-admit", step, prev, w)
		}
		r, _ := rec.Find("command:remote:Command", step)
		if !pulumimock.IsSecret(r.Inputs, "stdin") {
			t.Errorf("%s: the admin kubeconfig on its stdin is not a secret", step)
		}
		if s := pulumimock.String(r.Inputs, "create"); !strings.Contains(s, "want='"+cfg.Versions.Kubernetes+"'") ||
			s != pulumimock.String(r.Inputs, "update") {
			t.Errorf("%s: create and update must be the same script for %s", step, cfg.Versions.Kubernetes)
		}
		prev = step
	}
	var storage []string
	for _, r := range rec.Resources() {
		if r.Type == "simlab:storage:Storage" {
			for _, d := range r.Dependencies {
				storage = append(storage, d)
			}
		}
	}
	if !strings.Contains(strings.Join(storage, " "), urn["dev-worker-3-kubeadm-upgrade"]) {
		t.Errorf("the storage layer does not wait for the last upgrade step: %v", storage)
	}
}

// TestMockLeavingWorkerDrainsItsOSDFirst: each Ceph worker's -ceph-osd step
// depends on the worker's settle step (after its admit) and on the
// CephCluster, so Pulumi deletes it (draining and purging the OSD) before
// the worker hands off, is drained and reset and before Ceph itself goes;
// its delete bounds the wait by storage.readyTimeoutMinutes.
func TestMockLeavingWorkerDrainsItsOSDFirst(t *testing.T) {
	cfg := loadStack(t, "dev")
	cfg.Storage.ReadyTimeoutMinutes = 7
	rec := runForPlan(t, cfg)
	urn := map[string]string{}
	for _, r := range rec.Resources() {
		urn[r.Name] = r.URN
	}
	for _, w := range cfg.NodesByRole(config.RoleWorker) {
		r, ok := rec.Find("command:remote:Command", w.Name+"-ceph-osd")
		if !ok {
			t.Fatalf("no %s-ceph-osd", w.Name)
		}
		deps := strings.Join(r.Dependencies, " ")
		for _, on := range []string{w.Name + "-settled", "storage-ceph-cluster"} {
			if urn[on] == "" || !strings.Contains(deps, urn[on]) {
				t.Errorf("%s-ceph-osd does not depend on %s", w.Name, on)
			}
		}
		if del := pulumimock.String(r.Inputs, "delete"); !strings.Contains(del, "ceph osd out") || !strings.Contains(del, "(at most 420s)") {
			t.Errorf("%s-ceph-osd's delete does not drain within storage.readyTimeoutMinutes:\n%s", w.Name, del)
		}
	}
}

// TestMockReplaceRollsOneWorkerAtATime: with simlab:workers.replace set,
// each worker's disks (the resource the engine replaces first, deleting
// what is keyed on them before it) wait for the previous worker's settle
// step, which waits for it to be back (Node Ready, its new OSD up, Ceph
// healthy): worker N+1 is drained and recreated only after worker N
// rejoined. Each settle step is keyed on its worker's admission, so it is
// replaced with the machine: its delete hands the OSDs off (ok-to-stop,
// out, purge) before the admit's delete drains the node. Without the
// acknowledgement the workers do not wait for each other.
func TestMockReplaceRollsOneWorkerAtATime(t *testing.T) {
	cfg := loadStack(t, "dev")
	cfg.Workers.Count = 3
	cfg.Storage.ReadyTimeoutMinutes = 9
	plain := runForPlan(t, cfg)
	cfg.Workers.Replace = true
	rolled := runForPlan(t, cfg)

	for _, rec := range []*pulumimock.Recorder{plain, rolled} {
		rolling := rec == rolled
		urn := map[string]string{}
		for _, r := range rec.Resources() {
			urn[r.Name] = r.URN
		}
		for i := 1; i <= 3; i++ {
			w := fmt.Sprintf("dev-worker-%d", i)
			disks, ok := rec.Find("command:remote:Command", w+"-disks")
			if !ok {
				t.Fatalf("no %s-disks", w)
			}
			deps := strings.Join(disks.Dependencies, " ")
			for j := 1; j <= 3; j++ {
				other := fmt.Sprintf("dev-worker-%d-settled", j)
				want := rolling && j == i-1
				if got := strings.Contains(deps, urn[other]); got != want {
					t.Errorf("replace=%v: %s-disks depends on %s: %v, want %v", rolling, w, other, got, want)
				}
			}
			settled, ok := rec.Find("command:remote:Command", w+"-settled")
			if !ok {
				t.Fatalf("no %s-settled", w)
			}
			if !settled.DependsOn(mustFind(t, rec, w+"-admit")) {
				t.Errorf("%s-settled does not depend on %s-admit", w, w)
			}
			create, del := pulumimock.String(settled.Inputs, "create"), pulumimock.String(settled.Inputs, "delete")
			for _, s := range []string{"ceph health", "rook-ceph-osd", "(simlab:storage.readyTimeoutMinutes)", "after 540s"} {
				if !strings.Contains(create, s) {
					t.Errorf("%s-settled's create does not contain %q:\n%s", w, s, create)
				}
			}
			for _, s := range []string{"ceph osd ok-to-stop", "ceph osd purge", "(at most 540s)"} {
				if !strings.Contains(del, s) {
					t.Errorf("%s-settled's delete does not contain %q:\n%s", w, s, del)
				}
			}
		}
	}
}

// mustFind is the remote command name in rec.
func mustFind(t *testing.T, rec *pulumimock.Recorder, name string) pulumimock.Resource {
	t.Helper()
	r, ok := rec.Find("command:remote:Command", name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	return r
}

// TestMockResizeRollsOneWorkerAtATime: when the workers' size differs from
// the one the last `up` recorded (the stack output workerSize), each
// worker that last `up` had is resized one at a time: its domain (whose
// update restarts it) waits for its drained step (whose create, run again
// for the new size, pauses its OSDs and drains it), which waits for the
// previous worker's settle step (whose update waits for that worker's new
// boot, uncordons it and resumes its OSDs). A running worker's domain
// always waits for its own drained step (a no-op unless it is resized);
// a worker added in the same `up` waits for nothing, and without a resize
// no worker waits for another: machines are created, changed and destroyed
// side by side. A stack whose last `up` recorded no size resizes none one
// at a time. The size is recorded only once every worker is settled.
func TestMockResizeRollsOneWorkerAtATime(t *testing.T) {
	old := loadStack(t, "dev")
	old.Workers.Count = 3
	resized := loadStack(t, "dev")
	resized.Artifacts.Dir = old.Artifacts.Dir
	resized.Workers.Count = 4
	resized.Workers.CPUs = old.Workers.CPUs + 2
	rolled := runAfter(t, resized, old)
	steady := runForPlan(t, resized)

	find := func(rec *pulumimock.Recorder, name string) pulumimock.Resource { return mustFind(t, rec, name) }
	for _, rec := range []*pulumimock.Recorder{rolled, steady} {
		rolling := rec == rolled
		for i := 1; i <= 4; i++ {
			w := fmt.Sprintf("dev-worker-%d", i)
			running := i <= 3 || !rolling // dev-worker-4 is new in the resize (the steady run had it)
			domain, drained, settled := find(rec, w+"-domain"), find(rec, w+"-drained"), find(rec, w+"-settled")
			if got := domain.DependsOn(drained); got != running {
				t.Errorf("resizing=%v: %s-domain depends on %s-drained: %v, want %v", rolling, w, w, got, running)
			}
			if i > 1 {
				prev := find(rec, fmt.Sprintf("dev-worker-%d-settled", i-1))
				if got, want := drained.DependsOn(prev), rolling && running; got != want {
					t.Errorf("resizing=%v: %s-drained depends on the previous worker's settle step: %v, want %v", rolling, w, got, want)
				}
			}
			if !drained.DependsOn(find(rec, "dev-controller-1-admit")) || !settled.DependsOn(drained) {
				t.Errorf("%s-drained must wait for the controller's admission and %s-settled for it", w, w)
			}
			size := resized.Workers.Size()
			create := pulumimock.String(drained.Inputs, "create")
			for _, s := range []string{"size='" + size + "'", `drain "$node"`, "ceph osd ok-to-stop", "ceph osd add-noout", "simlab.io/restart-from-boot"} {
				if !strings.Contains(create, s) {
					t.Errorf("%s-drained's create does not contain %q:\n%s", w, s, create)
				}
			}
			update := pulumimock.String(settled.Inputs, "update")
			for _, s := range []string{"size='" + size + "'", `uncordon "$node"`, "ceph osd rm-noout", "nodeInfo.bootID", "simlab.io/restart-from-boot-"} {
				if !strings.Contains(update, s) {
					t.Errorf("%s-settled's update does not contain %q:\n%s", w, s, update)
				}
			}
		}
	}

	// A last `up` that recorded no size (a stack deployed before it was).
	unknown := infra.RecordedOutputs(&old.Config)
	delete(unknown, config.WorkerSizeOutput)
	rec, err := pulumimock.Run("simlab", "dev", func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, resized)
		return err
	}, withCommandOutputs, pulumimock.WithPreviousOutputs(unknown))
	if err != nil {
		t.Fatal(err)
	}
	if find(rec, "dev-worker-2-drained").DependsOn(find(rec, "dev-worker-1-settled")) {
		t.Error("with no size recorded, dev-worker-2 waits for dev-worker-1")
	}
}

// deployed runs cfg as an `up` after one of last under the mock engine,
// with the previous deployment's outputs being last's and the guards'
// records prior (nil: none); it returns the run's guard records and the
// program's error.
func deployed(t *testing.T, stack string, cfg, last *config.Loaded, prior map[string]string) (map[string]string, error) {
	t.Helper()
	outs := infra.RecordedOutputs(&last.Config)
	if prior != nil {
		m := map[string]any{}
		for k, v := range prior {
			m[k] = v
		}
		outs[guard.Output] = m
	}
	var records map[string]string
	_, err := pulumimock.Run("simlab", stack, func(ctx *pulumi.Context) error {
		st, err := infra.Deploy(ctx, cfg)
		if st != nil {
			records = st.Guards
		}
		return err
	}, withCommandOutputs, pulumimock.WithPreviousOutputs(outs))
	return records, err
}

// TestMockPreviewRefusesWhatUpWould: the program itself checks every
// guard against the records its previous deployment left (the stack output
// guards), so `pulumi preview` fails, with the guard's message naming the
// acknowledgement key, where `up` would be refused — in existing mode too,
// where no guard command runs (the Ceph sizing). Acknowledged, or without
// records (a stack deployed before they were kept), the program runs.
func TestMockPreviewRefusesWhatUpWould(t *testing.T) {
	for _, tc := range []struct {
		name, stack string
		base        func(*config.Loaded)
		change      func(*config.Loaded)
		refused     string // the message's start; "": runs
	}{
		{"controller disk", "dev", nil, func(c *config.Loaded) { c.Controllers.DiskGiB = 40 },
			"simlab:controllers.replace: refusing to change dev-controller-1"},
		{"controller disk acknowledged", "dev", nil, func(c *config.Loaded) { c.Controllers.DiskGiB, c.Controllers.Replace = 40, true }, ""},
		{"worker snippet", "dev", nil, func(c *config.Loaded) { snippets(c, "two") },
			"simlab:workers.replace: refusing to change dev-worker-1"},
		{"Ceph shrink", "dev", func(c *config.Loaded) { c.Workers.Count = 3 }, func(c *config.Loaded) { c.Workers.Count = 2 },
			"simlab:storage.ceph.allowShrink: refusing to change Ceph"},
		{"Ceph shrink in existing mode", "local", func(c *config.Loaded) { c.Storage.Ceph.Enabled, c.Workers.Count = true, 3 },
			func(c *config.Loaded) { c.Workers.Count = 2 }, "simlab:storage.ceph.allowShrink: refusing to change Ceph"},
		{"Ceph shrink acknowledged", "dev", func(c *config.Loaded) { c.Workers.Count = 3 },
			func(c *config.Loaded) { c.Workers.Count, c.Storage.Ceph.AllowShrink = 2, true }, ""},
		{"growth", "dev", nil, func(c *config.Loaded) { c.Workers.Count = 3 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, cur := loadStack(t, tc.stack), loadStack(t, tc.stack)
			cur.Artifacts.Dir = old.Artifacts.Dir
			if tc.base != nil {
				tc.base(old)
				tc.base(cur)
			}
			records, err := deployed(t, tc.stack, old, old, nil)
			if err != nil || len(records) == 0 {
				t.Fatalf("the old config: %v (records %v)", err, records)
			}
			tc.change(cur)
			_, err = deployed(t, tc.stack, cur, old, records)
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
				t.Fatalf("got %v, want the program to refuse with %q", err, tc.refused)
			}
			// A stack that kept no records: only `up`'s guards refuse.
			if _, err := deployed(t, tc.stack, cur, old, nil); err != nil {
				t.Errorf("without records: %v", err)
			}
		})
	}
}

// TestMockWorkerSizeIsRecorded: the stack output workerSize is the
// workers' size once every worker's settle step is done (it is derived
// from their IDs, so an `up` that stops half way through a resize leaves
// the old size recorded and the next `up` rolls the workers it did not
// reach; that rests on the SDK, whose mocks stop every apply once a
// registration fails, so it is not shown here).
func TestMockWorkerSizeIsRecorded(t *testing.T) {
	cfg := loadStack(t, "dev")
	var recorded []string
	_, err := pulumimock.Run("simlab", "dev", func(ctx *pulumi.Context) error {
		st, err := infra.Deploy(ctx, cfg)
		if err != nil {
			return err
		}
		st.WorkerSize.ApplyT(func(s string) string { recorded = append(recorded, s); return s })
		return nil
	}, withCommandOutputs)
	if err != nil || strings.Join(recorded, ",") != cfg.Workers.Size() {
		t.Errorf("recorded %q (%v), want %q", recorded, err, cfg.Workers.Size())
	}
}
