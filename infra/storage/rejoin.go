package storage

import (
	"fmt"

	"github.com/simlab/simlab/infra/cluster"
	"github.com/simlab/simlab/infra/config"
)

// A worker replaced in place (simlab:workers.replace: a new machine under
// the same name, one worker at a time) keeps its place in the CephCluster,
// so the -ceph-osd drain above leaves it alone. Its Ceph part is the
// cluster layer's settle phase (cluster.Settle), on the controller:
//
//   - before its machine goes: wait until `ceph osd ok-to-stop` says its
//     OSDs can stop with every placement group still available, then mark
//     them out, purge them and delete their Deployments (its disk is about
//     to be replaced: their data has its other copies elsewhere);
//   - after the new machine joined: wait for the Node Ready, for Rook to
//     bring an OSD up on its new disk and for Ceph to be healthy again
//     (simlab:storage.ceph.readyHealth), each bounded by
//     simlab:storage.readyTimeoutMinutes, before the next worker goes.
//
// Both do nothing without a CephCluster (the first `up`: the cluster layer
// comes first; `pulumi destroy`: the storage layer went first) or for a
// node the CephCluster does not list.

// Settle is the storage layer's part of the cluster's settle phase for
// the stack's storage settings.
func Settle(s config.Storage) cluster.Settle {
	ceph := operatorCeph(cluster.AdminKubectl)
	return cluster.Settle{
		Joined: func(node string) string {
			return osdJoinedScriptWith(cluster.AdminKubectl, ceph, node, s.Ceph.ReadyHealth, s.ReadyTimeout(), 10)
		},
		Leaving: func(node string) string {
			return osdReplacedScriptWith(cluster.AdminKubectl, ceph, node, s.ReadyTimeout(), 10)
		},
		Pausing: func(node string) string {
			return osdPausingScriptWith(cluster.AdminKubectl, ceph, node, s.ReadyTimeout(), 10)
		},
		Resumed: func(node string) string {
			return osdResumedScriptWith(cluster.AdminKubectl, ceph, node, s.Ceph.ReadyHealth, s.ReadyTimeout(), 10)
		},
	}
}

// A worker resized in place (simlab:workers.cpus or memoryMiB: the same
// machine restarted, its disks kept) keeps its OSDs. Around the restart,
// as Ceph's guide to maintenance says:
//
//   - before it is drained: wait until `ceph osd ok-to-stop` says its OSDs
//     can stop with every placement group available, then `ceph osd
//     add-noout` them, so Ceph waits for them instead of copying their
//     data elsewhere;
//   - once it is back and uncordoned: wait for its OSDs up again, `ceph osd
//     rm-noout` them, and wait for Ceph's health
//     (simlab:storage.ceph.readyHealth), each bounded by
//     simlab:storage.readyTimeoutMinutes, before the next worker restarts.

// osdStoppable is the start of a script that stops node's OSDs: osdShell,
// then nothing to do (exit 0, saying so) without a CephCluster (noOSD
// says what is not done) or an OSD on the node; otherwise it waits (at
// most timeoutSeconds) until `ceph osd ok-to-stop` says they can stop with
// every placement group available, saying why (what happens to the
// machine), and fails with refused (what stays, how to do it by hand) when
// Ceph never agrees. The OSDs are then $ids (ids) and $osds (osd.ID ...).
func osdStoppable(kubectl, ceph, node string, timeoutSeconds, pollSeconds int, noOSD, why, refused string) string {
	return osdShell(kubectl, ceph, node, timeoutSeconds, pollSeconds) + fmt.Sprintf(`
if ! listed=$(storage_nodes); then
  echo "$node: no CephCluster: %[2]s"; exit 0
fi
ids=$(osds_on)
if [ -z "$ids" ]; then echo "$node: no OSD on it"; exit 0; fi
osds=
for id in $ids; do osds="$osds osd.$id"; done
echo "$node: %[3]s: waiting until OSD(s)$osds can stop with every placement group available (at most %[1]ds)"
wait_ceph "$node: stopping OSD(s)$osds would leave placement groups without enough copies (ceph osd ok-to-stop, for %[1]ds): %[4]s" \
  osd ok-to-stop $osds`, timeoutSeconds, noOSD, why, refused)
}

// osdPausingScriptWith is Settle's Pausing with other kubectl and ceph
// commands and poll interval (tests).
func osdPausingScriptWith(kubectl, ceph, node string, timeoutSeconds, pollSeconds int) string {
	return osdStoppable(kubectl, ceph, node, timeoutSeconds, pollSeconds, "no OSD to pause", "its machine restarts",
		"nothing was changed and its machine is not restarted. Wait for ceph -s to report HEALTH_OK and run pulumi up again; "+
			"with pools of size 1 (fewer than 3 workers) their data has no other copy while it restarts: resize it by hand then (docs/DAY2.md).") + `
ceph osd add-noout $osds
echo "$node: OSD(s)$osds set noout: Ceph waits for them while the machine restarts"`
}

// osdResumedScriptWith is Settle's Resumed with other kubectl and ceph
// commands and poll interval (tests).
func osdResumedScriptWith(kubectl, ceph, node, health string, timeoutSeconds, pollSeconds int) string {
	return osdWaitScriptWith(kubectl, ceph, node, health, timeoutSeconds, pollSeconds,
		"it stays noout, the next worker is not restarted; once it is back, run pulumi up again",
		`noout=
for id in $(osds_on); do noout="$noout osd.$id"; done
ceph osd rm-noout $noout
echo "$node: OSD(s)$noout up again, noout removed"`)
}

// osdReplacedScriptWith is Settle's Leaving with other kubectl and ceph
// commands and poll interval (tests).
func osdReplacedScriptWith(kubectl, ceph, node string, timeoutSeconds, pollSeconds int) string {
	return osdStoppable(kubectl, ceph, node, timeoutSeconds, pollSeconds, "no OSD to take out", "its machine is being replaced",
		"nothing was changed and its machine is not replaced. Wait for ceph -s to report HEALTH_OK and run pulumi up again; "+
			"with pools of size 1 (fewer than 3 workers) their data has no other copy: to lose it, purge them by hand first (docs/STORAGE.md).") + `
for id in $ids; do ceph osd out "osd.$id"; done
purge_osds $ids
echo "$node: OSD(s)$osds out and purged before its machine is replaced; Ceph copies their data again onto the new machine's disk"`
}

// osdJoinedScriptWith is Settle's Joined with other kubectl and ceph
// commands and poll interval (tests).
func osdJoinedScriptWith(kubectl, ceph, node, health string, timeoutSeconds, pollSeconds int) string {
	return osdWaitScriptWith(kubectl, ceph, node, health, timeoutSeconds, pollSeconds,
		"the next worker is not replaced; once it is, run pulumi up again", "")
}

// osdWaitScriptWith waits for node Ready, an OSD of it up, then runs
// whenUp and waits for Ceph at health, each bounded by timeoutSeconds
// (then it fails, saying what is not ready and then what follows); it
// does nothing without a CephCluster or for a node it does not list.
func osdWaitScriptWith(kubectl, ceph, node, health string, timeoutSeconds, pollSeconds int, then, whenUp string) string {
	accept := "HEALTH_OK"
	if health == config.CephHealthWarn {
		accept = "HEALTH_OK|HEALTH_WARN"
	}
	return osdShell(kubectl, ceph, node, timeoutSeconds, pollSeconds) + fmt.Sprintf(`
if ! listed=$(storage_nodes); then
  echo "$node: no CephCluster yet: nothing to wait for"; exit 0
fi
case " $listed " in *" $node "*) ;; *)
  echo "$node: not a storage node of the CephCluster (yet): nothing to wait for"; exit 0;;
esac
deadline=$(( $(date +%%s) + %[1]d ))
late() {
  if [ "$(date +%%s)" -ge "$deadline" ]; then
    echo "$node: $1 after %[1]ds (simlab:storage.readyTimeoutMinutes): %[4]s" >&2
    exit 1
  fi
}
until [ "$($k get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
  late "the Node is not Ready"
  sleep %[2]d
done
until osd_deployments | awk -v n="$node" '$2 == n && $3 > 0 {f=1} END {exit !f}'; do
  late "no OSD of it is up ($k -n $ns get pods -l app=rook-ceph-osd -o wide; on a new disk Rook's prepare job makes it: -l app=rook-ceph-osd-prepare)"
  echo "$node: waiting for an OSD of it to be up"
  sleep %[2]d
done
%[5]s
until h=$(ceph health 2>&1) && printf '%%s
' "$h" | grep -Eq '^(%[3]s)'; do
  late "Ceph is not healthy (${h:-no answer}; ceph -s)"
  echo "$node: $(ceph pg stat 2>&1 | head -n1)"
  sleep %[2]d
done
echo "$node: its OSD(s) $(osds_on)up and Ceph healthy ($h)"`, timeoutSeconds, pollSeconds, accept, then, whenUp)
}
