package storage

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/remote"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/cluster"
)

// Leaving workers: each Ceph storage node has a command on the controller,
// `<node>-ceph-osd`, that depends on the node's settle step and on the
// CephCluster, so Pulumi deletes it before the node is drained, reset and
// its machine removed. Its delete takes the node's OSDs out of Ceph as
// Rook's OSD management guide does by hand: `ceph osd out`, wait until
// Ceph has moved their data (`ceph osd safe-to-destroy`, bounded by
// simlab:storage.readyTimeoutMinutes, progress printed), scale the OSD's
// Deployment to 0, `ceph osd purge`, delete the Deployment. Ceph is reached
// through the operator's own ceph CLI and admin config, as Rook's kubectl
// plugin does (no toolbox needed).
//
// It only drains a node the CephCluster no longer lists (the removed
// worker: Pulumi updates the CephCluster before it deletes what left the
// program); at `pulumi destroy` the CephCluster still lists every node and
// goes itself, so nothing is drained.

// OSDLeaving is what the storage layer needs to drain a leaving worker's
// OSDs: where to run kubectl and each worker's admission.
type OSDLeaving struct {
	// Controller reaches the controller, which has the admin kubeconfig.
	Controller remote.ConnectionInput
	// After is each storage node's last cluster-layer resource (its
	// settle step, cluster.Cluster.Settled): the drain comes before the
	// node hands off, is drained and reset.
	After map[string]pulumi.Resource
}

// operatorCeph runs the ceph CLI in Rook's operator with the admin config
// the operator writes.
func operatorCeph(kubectl string) string {
	return fmt.Sprintf("%s -n %s exec deploy/rook-ceph-operator -- ceph --conf=/var/lib/rook/%s/%s.config",
		kubectl, RookNamespace, RookNamespace, RookNamespace)
}

// osdDrainScript is the delete of a node's -ceph-osd command.
func osdDrainScript(node string, timeoutSeconds int) string {
	return osdDrainScriptWith(cluster.AdminKubectl, operatorCeph(cluster.AdminKubectl), node, timeoutSeconds, 10)
}

// osdDrainScriptWith is osdDrainScript with other kubectl and ceph commands
// and poll interval (tests).
func osdDrainScriptWith(kubectl, ceph, node string, timeoutSeconds, pollSeconds int) string {
	return osdShell(kubectl, ceph, node, timeoutSeconds, pollSeconds) + fmt.Sprintf(`
if ! listed=$(storage_nodes); then
  echo "$node: no CephCluster: no OSD to drain"; exit 0
fi
case " $listed " in *" $node "*)
  echo "$node: still a storage node of the CephCluster (the stack is being destroyed): its OSDs go with the cluster"; exit 0;;
esac
ids=$(osds_on)
if [ -z "$ids" ]; then echo "$node: no OSD on it"; exit 0; fi
osds=
for id in $ids; do osds="$osds osd.$id"; ceph osd out "osd.$id"; done
echo "$node: OSD(s)$osds marked out; waiting for Ceph to move their data (at most %[1]ds)"
wait_ceph "$node: OSD(s)$osds are still not safe to destroy after %[1]ds: Ceph still needs their data (ceph -s). Nothing was purged; the worker stays. Wait and run pulumi up again (simlab:storage.readyTimeoutMinutes bounds the wait), or put them back with ceph osd in." \
  osd safe-to-destroy $osds
purge_osds $ids
echo "$node: OSD(s)$osds drained and purged"`, timeoutSeconds)
}

// osdShell is the start of every script on a node's OSDs: set -eu; k
// (kubectl), ns, node and ceph(); storage_nodes, which prints the nodes the
// CephCluster lists (and fails without a CephCluster); osds_on, the ids of
// the OSDs whose Deployment Rook pinned to $node; purge_osds ID..., which
// scales each down, purges it from Ceph and deletes its Deployment;
// wait_ceph MESSAGE ARG..., which repeats `ceph ARG...` every pollSeconds
// (printing `ceph pg stat`) until it succeeds, and after timeoutSeconds
// prints MESSAGE on stderr and exits 1.
func osdShell(kubectl, ceph, node string, timeoutSeconds, pollSeconds int) string {
	return fmt.Sprintf(`set -eu
k=%[1]s
ns=%[2]s
node=%[3]s
ceph() { %[4]s "$@"; }
storage_nodes() { $k -n "$ns" get cephcluster %[5]s -o jsonpath='{.spec.storage.nodes[*].name}' 2>/dev/null; }
osd_deployments() {
  $k -n "$ns" get deployment -l app=rook-ceph-osd \
    -o jsonpath='{range .items[*]}{.metadata.labels.ceph-osd-id} {.spec.template.spec.nodeSelector.kubernetes\.io/hostname} {.status.readyReplicas}{"\n"}{end}'
}
osds_on() { osd_deployments | awk -v n="$node" '$2 == n {printf "%%s ", $1}'; }
purge_osds() {
  for id in "$@"; do
    $k -n "$ns" scale deployment "rook-ceph-osd-$id" --replicas=0
    ceph osd purge "$id" --yes-i-really-mean-it
    $k -n "$ns" delete deployment "rook-ceph-osd-$id" --ignore-not-found
  done
}
wait_ceph() {
  msg=$1; shift
  deadline=$(( $(date +%%s) + %[6]d ))
  until ceph "$@" >/dev/null 2>&1; do
    if [ "$(date +%%s)" -ge "$deadline" ]; then echo "$msg" >&2; exit 1; fi
    echo "$node: $(ceph pg stat 2>&1 | head -n1)"
    sleep %[7]d
  done
}`, shq(kubectl), RookNamespace, shq(node), ceph, CephClusterName, timeoutSeconds, pollSeconds)
}

// osdSteps registers each storage node's -ceph-osd command (see above).
func (b *builder) osdSteps(cluster pulumi.Resource) error {
	l := b.args.Leaving
	if l == nil || l.Controller == nil {
		return nil
	}
	for _, node := range b.args.StorageNodes {
		deps := []pulumi.Resource{cluster}
		if a, ok := l.After[node]; ok {
			deps = append(deps, a)
		}
		step, err := remote.NewCommand(b.ctx, node+"-ceph-osd", &remote.CommandArgs{
			Connection: l.Controller,
			Create:     pulumi.String("echo " + shq(node+": its Ceph OSDs are drained and purged before it leaves the stack")),
			Delete:     pulumi.String(osdDrainScript(node, b.args.Storage.ReadyTimeout())),
		}, pulumi.Parent(b.comp), pulumi.DependsOn(deps))
		if err != nil {
			return fmt.Errorf("the OSD drain of %s: %w", node, err)
		}
		b.offer(step)
	}
	return nil
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }
