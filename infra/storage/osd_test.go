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

// TestOSDDrainOnARealAPIServer runs a leaving worker's -ceph-osd delete
// script against a real kube-apiserver (the local control plane: Rook's
// objects as the API server stores them) with a stand-in for the ceph CLI:
// a node the CephCluster still lists (destroy) and a cluster without Ceph
// are left alone; a removed node's OSD is marked out, waited for until
// Ceph calls it safe to destroy, scaled down, purged and its Deployment
// deleted, the other node's OSD untouched; a drain that times out fails,
// naming the node, and purges nothing.
func TestOSDDrainOnARealAPIServer(t *testing.T) {
	c := localcluster.StartT(t, localcluster.Options{Nodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leaving, staying := c.Nodes[0], c.Nodes[1]
	kubectl := c.Bin.Kubectl + " --kubeconfig " + c.Kubeconfig
	apply := func(doc string) {
		t.Helper()
		if _, err := c.KubectlContext(ctx, strings.NewReader(doc), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
	}
	run := func(script string) (string, error) {
		out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput()
		return string(out), err
	}
	deployments := func() string {
		out, _ := c.Kubectl("-n", RookNamespace, "get", "deployment", "-o", "name")
		return out
	}

	ceph, log := cephStandIn(t, 2)
	if out, err := run(osdDrainScriptWith(kubectl, ceph, leaving, 60, 0)); err != nil || !strings.Contains(out, "no CephCluster") {
		t.Fatalf("without a CephCluster: %v\n%s", err, out)
	}
	apply(cephCRD)
	if _, err := c.KubectlContext(ctx, nil, "wait", "--for=condition=Established", "crd/cephclusters.ceph.rook.io", "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + RookNamespace + "}\n")
	cluster := func(nodes ...string) string {
		return fmt.Sprintf("apiVersion: ceph.rook.io/v1\nkind: CephCluster\nmetadata: {name: %s, namespace: %s}\nspec:\n  storage:\n    nodes: [%s]\n",
			CephClusterName, RookNamespace, "{name: "+strings.Join(nodes, "}, {name: ")+"}")
	}
	apply(cluster(leaving, staying))
	apply(osdDeployment(0, leaving))
	apply(osdDeployment(1, staying))

	// pulumi destroy: the CephCluster still lists the node.
	if out, err := run(osdDrainScriptWith(kubectl, ceph, leaving, 60, 0)); err != nil || !strings.Contains(out, "being destroyed") {
		t.Fatalf("a listed node: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(log); len(b) != 0 {
		t.Fatalf("ceph was called for a node the CephCluster lists:\n%s", b)
	}

	// Scale-down: the CephCluster was updated first.
	apply(cluster(staying))
	out, err := run(osdDrainScriptWith(kubectl, ceph, leaving, 60, 0))
	if err != nil {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	calls, _ := os.ReadFile(log)
	want := "osd out osd.0\nosd safe-to-destroy osd.0\npg stat\nosd safe-to-destroy osd.0\npg stat\nosd safe-to-destroy osd.0\nosd purge 0 --yes-i-really-mean-it\n"
	if string(calls) != want {
		t.Errorf("ceph calls:\n%s\nwant:\n%s", calls, want)
	}
	if d := deployments(); strings.Contains(d, "rook-ceph-osd-0") || !strings.Contains(d, "rook-ceph-osd-1") {
		t.Errorf("deployments after the drain: %s (want osd-0 gone, osd-1 kept)", d)
	}
	if !strings.Contains(out, "active+remapped+backfilling") || !strings.Contains(out, "drained and purged") {
		t.Errorf("the drain's output shows no progress or result:\n%s", out)
	}
	// Run again (a retried delete): nothing left to drain.
	if out, err := run(osdDrainScriptWith(kubectl, ceph, leaving, 60, 0)); err != nil || !strings.Contains(out, "no OSD on it") {
		t.Errorf("second run: %v\n%s", err, out)
	}

	// A drain that does not finish in time purges nothing and fails.
	never, neverLog := cephStandIn(t, -1)
	apply(cluster())
	out, err = run(osdDrainScriptWith(kubectl, never, staying, 0, 0))
	if err == nil || !strings.Contains(out, staying+": OSD(s) osd.1 are still not safe to destroy") {
		t.Errorf("a drain past its deadline: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(neverLog); strings.Contains(string(b), "purge") {
		t.Errorf("purged after a timeout:\n%s", b)
	}
	if !strings.Contains(deployments(), "rook-ceph-osd-1") {
		t.Error("the OSD's Deployment was deleted after a timeout")
	}
}
