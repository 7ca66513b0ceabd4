package storage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/tests/localcluster"
)

// cephCRD is a minimal CephCluster CRD written for this test (the real one
// comes from the mirror): enough for the API server to store the object.
const cephCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: cephclusters.ceph.rook.io}
spec:
  group: ceph.rook.io
  scope: Namespaced
  names: {kind: CephCluster, plural: cephclusters, singular: cephcluster, listKind: CephClusterList}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

// osdDeployment is an OSD Deployment as Rook labels it, pinned to node.
func osdDeployment(id int, node string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: rook-ceph-osd-%[1]d
  namespace: %[3]s
  labels: {app: rook-ceph-osd, ceph-osd-id: "%[1]d"}
spec:
  replicas: 1
  selector: {matchLabels: {app: rook-ceph-osd, ceph-osd-id: "%[1]d"}}
  template:
    metadata: {labels: {app: rook-ceph-osd, ceph-osd-id: "%[1]d"}}
    spec:
      nodeSelector: {kubernetes.io/hostname: %[2]s}
      containers: [{name: osd, image: stand-in.invalid/ceph:osd}]
`, id, node, RookNamespace)
}

// cephStandIn writes a STAND-IN for the ceph CLI (Ceph cannot run here):
// it logs each call to log, answers `osd safe-to-destroy`, `osd
// ok-to-stop` and `health` "not yet" (an error, an error, HEALTH_WARN)
// notSafe times before "yes" (HEALTH_OK) (-1: never), and prints a pg
// summary. What it leaves unproven: Ceph's own answers and how long a real
// rebalance or recovery takes.
func cephStandIn(t *testing.T, notSafe int) (cmd, log string) {
	dir := t.TempDir()
	log = filepath.Join(dir, "ceph.log")
	script := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %[1]s
case "$1 $2" in
"osd safe-to-destroy"|"osd ok-to-stop")
  n=$(cat %[2]s/count 2>/dev/null || echo 0); echo $((n + 1)) > %[2]s/count
  if [ %[3]d -lt 0 ] || [ "$n" -lt %[3]d ]; then echo "Error EBUSY: OSD(s) have pgs mapped to them" >&2; exit 16; fi;;
"health "*|"health")
  n=$(cat %[2]s/count 2>/dev/null || echo 0); echo $((n + 1)) > %[2]s/count
  if [ %[3]d -lt 0 ] || [ "$n" -lt %[3]d ]; then echo "HEALTH_WARN Degraded data redundancy: 12/96 objects degraded"; else echo HEALTH_OK; fi;;
"pg stat") echo "stand-in: 64 pgs: 60 active+clean, 4 active+remapped+backfilling";;
esac
`, log, dir, notSafe)
	cmd = filepath.Join(dir, "ceph")
	if err := os.WriteFile(cmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return cmd, log
}

// rookAPI is what the OSD scripts' tests run against: a real
// kube-apiserver (the local control plane, with kwok's nodes), kubectl as
// the scripts call it, and helpers to apply Rook's objects there.
type rookAPI struct {
	t       *testing.T
	ctx     context.Context
	c       *localcluster.Cluster
	kubectl string
}

// newRookAPI starts a local control plane with nodes nodes, for at most
// two minutes of the test.
func newRookAPI(t *testing.T, nodes int) *rookAPI {
	c := localcluster.StartT(t, localcluster.Options{Nodes: nodes})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &rookAPI{t: t, ctx: ctx, c: c, kubectl: c.Bin.Kubectl + " --kubeconfig " + c.Kubeconfig}
}

// apply applies doc (YAML) or fails the test.
func (r *rookAPI) apply(doc string) {
	r.t.Helper()
	if _, err := r.c.KubectlContext(r.ctx, strings.NewReader(doc), "apply", "-f", "-"); err != nil {
		r.t.Fatal(err)
	}
}

// run runs script with sh, returning its combined output.
func (r *rookAPI) run(script string) (string, error) {
	out, err := exec.CommandContext(r.ctx, "sh", "-c", script).CombinedOutput()
	return string(out), err
}

// deployments lists the Deployments in Rook's namespace.
func (r *rookAPI) deployments() string {
	out, _ := r.c.Kubectl("-n", RookNamespace, "get", "deployment", "-o", "name")
	return out
}

// installRook applies the CephCluster CRD (cephCRD), waits for it, and
// makes Rook's namespace.
func (r *rookAPI) installRook() {
	r.t.Helper()
	r.apply(cephCRD)
	if _, err := r.c.KubectlContext(r.ctx, nil, "wait", "--for=condition=Established", "crd/cephclusters.ceph.rook.io", "--timeout=60s"); err != nil {
		r.t.Fatal(err)
	}
	r.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + RookNamespace + "}\n")
}

// cephClusterOf is the CephCluster listing nodes as its storage nodes.
func cephClusterOf(nodes ...string) string {
	return fmt.Sprintf("apiVersion: ceph.rook.io/v1\nkind: CephCluster\nmetadata: {name: %s, namespace: %s}\nspec:\n  storage:\n    nodes: [%s]\n",
		CephClusterName, RookNamespace, "{name: "+strings.Join(nodes, "}, {name: ")+"}")
}

// cephCalls is what a stand-in ceph CLI logged (cephStandIn).
func cephCalls(log string) string {
	b, _ := os.ReadFile(log)
	return string(b)
}

// TestOSDDrainOnARealAPIServer runs a leaving worker's -ceph-osd delete
// script against a real kube-apiserver (the local control plane: Rook's
// objects as the API server stores them) with a stand-in for the ceph CLI:
// a node the CephCluster still lists (destroy) and a cluster without Ceph
// are left alone; a removed node's OSD is marked out, waited for until
// Ceph calls it safe to destroy, scaled down, purged and its Deployment
// deleted, the other node's OSD untouched; a drain that times out fails,
// naming the node, and purges nothing.
func TestOSDDrainOnARealAPIServer(t *testing.T) {
	r := newRookAPI(t, 2)
	leaving, staying := r.c.Nodes[0], r.c.Nodes[1]
	drain := func(ceph, node string, timeout int) (string, error) {
		return r.run(osdDrainScriptWith(r.kubectl, ceph, node, timeout, 0))
	}

	ceph, log := cephStandIn(t, 2)
	if out, err := drain(ceph, leaving, 60); err != nil || !strings.Contains(out, "no CephCluster") {
		t.Fatalf("without a CephCluster: %v\n%s", err, out)
	}
	r.installRook()
	r.apply(cephClusterOf(leaving, staying))
	r.apply(osdDeployment(0, leaving))
	r.apply(osdDeployment(1, staying))

	// pulumi destroy: the CephCluster still lists the node.
	if out, err := drain(ceph, leaving, 60); err != nil || !strings.Contains(out, "being destroyed") {
		t.Fatalf("a listed node: %v\n%s", err, out)
	}
	if l := cephCalls(log); len(l) != 0 {
		t.Fatalf("ceph was called for a node the CephCluster lists:\n%s", l)
	}

	// Scale-down: the CephCluster was updated first.
	r.apply(cephClusterOf(staying))
	out, err := drain(ceph, leaving, 60)
	if err != nil {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	want := "osd out osd.0\nosd safe-to-destroy osd.0\npg stat\nosd safe-to-destroy osd.0\npg stat\nosd safe-to-destroy osd.0\nosd purge 0 --yes-i-really-mean-it\n"
	if calls := cephCalls(log); calls != want {
		t.Errorf("ceph calls:\n%s\nwant:\n%s", calls, want)
	}
	if d := r.deployments(); strings.Contains(d, "rook-ceph-osd-0") || !strings.Contains(d, "rook-ceph-osd-1") {
		t.Errorf("deployments after the drain: %s (want osd-0 gone, osd-1 kept)", d)
	}
	if !strings.Contains(out, "active+remapped+backfilling") || !strings.Contains(out, "drained and purged") {
		t.Errorf("the drain's output shows no progress or result:\n%s", out)
	}
	// Run again (a retried delete): nothing left to drain.
	if out, err := drain(ceph, leaving, 60); err != nil || !strings.Contains(out, "no OSD on it") {
		t.Errorf("second run: %v\n%s", err, out)
	}

	// A drain that does not finish in time purges nothing and fails.
	never, neverLog := cephStandIn(t, -1)
	r.apply(cephClusterOf())
	out, err = drain(never, staying, 0)
	if err == nil || !strings.Contains(out, staying+": OSD(s) osd.1 are still not safe to destroy") {
		t.Errorf("a drain past its deadline: %v\n%s", err, out)
	}
	if l := cephCalls(neverLog); strings.Contains(l, "purge") {
		t.Errorf("purged after a timeout:\n%s", l)
	}
	if !strings.Contains(r.deployments(), "rook-ceph-osd-1") {
		t.Error("the OSD's Deployment was deleted after a timeout")
	}
}
