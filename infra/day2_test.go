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
	"github.com/simlab/simlab/tests/pulumimock"
)

// runForPlan runs the whole program for cfg under the mock engine with IDs
// that change exactly when a resource is replaced (pulumimock.Diff).
func runForPlan(t *testing.T, cfg *config.Loaded) *pulumimock.Recorder {
	t.Helper()
	rec, err := pulumimock.Run("simlab", "dev", func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, cfg)
		return err
	}, withCommandOutputs, pulumimock.WithReplacementIDs())
	if err != nil {
		t.Fatalf("under mocks: %v", err)
	}
	return rec
}

// day2Snippet is a Butane snippet whose content the rows change.
const day2Snippet = "variant: fcos\nversion: 1.6.0\nstorage:\n  files:\n    - path: /etc/simlab-day2\n      contents:\n        inline: %s\n"

// nodeResources are the names of a libvirt node's own resources (its
// component and the children the nodes layer registers).
func nodeResources(node string) []string {
	return []string{node, node + "-ignition", node + "-disks", node + "-domain", node + "-address", node + "-ssh"}
}

// joinResources are the cluster layer's resources for one worker.
func joinResources(node string) []string {
	return []string{node + "-join-token", node + "-kubeadm-join", node + "-admit"}
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
			create: cat(nodeResources("dev-worker-3"), joinResources("dev-worker-3")),
			// Sizing grows: 3 mons, size-3 pools across hosts.
			update: ceph,
		},
		{
			name:   "workers 3->2 without Ceph",
			base:   func(c *config.Loaded) { noCeph(c); c.Workers.Count = 3 },
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Workers.Count = 2 },
			delete: cat(nodeResources("dev-worker-3"), joinResources("dev-worker-3")),
		},
		{
			name:   "workers 3->2 with Ceph",
			base:   func(c *config.Loaded) { c.Workers.Count = 3 },
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Workers.Count = 2 },
			delete: cat(nodeResources("dev-worker-3"), joinResources("dev-worker-3")),
			// Today: pools shrink to size 1, the mons to 1.
			update: ceph,
		},
		{
			name:   "controller cpus 2->4",
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Controllers.CPUs = 4 },
			// Today: a new domain UUID re-runs kubeadm init: a new cluster.
			replace: cat(replacedMachine("dev-controller-1"),
				[]string{"dev-controller-1-kubeadm-init", "dev-controller-1-admin-kubeconfig", "dev-controller-1-admit"},
				joinResources("dev-worker-1"), joinResources("dev-worker-2")),
			replaceAll: true,
		},
		{
			name:   "FCOS bump",
			change: fcosBump("43.20251101.3.0"),
			// Today: the base image is replaced (its delete removes the old
			// file); every overlay's create names the new base (update: a no-op).
			replace: []string{"dev-fcos-image"},
			update:  []string{"dev-controller-1-disks", "dev-worker-1-disks", "dev-worker-2-disks"},
		},
		{
			name: "snippet change",
			base: func(c *config.Loaded) {
				c.Ignition.Controller = []string{fmt.Sprintf(day2Snippet, "one")}
				c.Ignition.Worker = []string{fmt.Sprintf(day2Snippet, "one")}
			},
			change: func(c *config.Loaded, _ string, _ *testing.T) {
				c.Ignition.Controller = []string{fmt.Sprintf(day2Snippet, "two")}
				c.Ignition.Worker = []string{fmt.Sprintf(day2Snippet, "two")}
			},
			// The controller ignores its Ignition's drift; every worker is
			// recreated from new disks.
			update: []string{"dev-worker-1-ignition", "dev-worker-2-ignition"},
			replace: cat([]string{"dev-worker-1-disks", "dev-worker-2-disks"},
				replacedMachine("dev-worker-1"), replacedMachine("dev-worker-2"),
				joinResources("dev-worker-1"), joinResources("dev-worker-2")),
		},
		{
			name: "SSH key rotation",
			change: func(c *config.Loaded, _ string, _ *testing.T) {
				c.SSHPrivateKey = strings.Replace(fakePrivateKey, "TESTONLY", "TESTONLY-rotated", 1)
			},
			// Every remote command's connection (and the derived bootstrap
			// token) changes: updates, no replacement.
			update: cat([]string{"dev-fcos-image"},
				remoteCommands("dev-controller-1", "dev-worker-1", "dev-worker-2"),
				[]string{"dev-controller-1-kubeadm-init", "dev-controller-1-admin-kubeconfig", "dev-controller-1-admit"},
				joinResources("dev-worker-1"), joinResources("dev-worker-2")),
		},
		{
			name:   "simulator maxWorkers",
			change: func(c *config.Loaded, _ string, _ *testing.T) { c.Simulator.MaxWorkers = 8 },
			update: []string{"workloads-simulator"},
		},
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
			newRun := runForPlan(t, newCfg)
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
			if t.Failed() {
				t.Logf("the whole plan:\n%s", plan)
			}
		})
	}
}

// sortedUnique sorts names, keeping one of each (the plan lists a name once
// per resource type: flannel is a ServiceAccount, a ClusterRole and a binding).
func sortedUnique(names []string) []string {
	out := append([]string(nil), names...)
	sort.Strings(out)
	return out
}
