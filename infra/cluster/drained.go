package cluster

import "fmt"

// The drained phase: a libvirt worker's machine is resized in place (its
// domain's update sets the new vCPUs and memory and restarts it) when the
// workers' simlab:workers.cpus or memoryMiB change. Before that restart
// the worker is drained, and what it holds paused (Settle.Pausing: its
// Ceph OSDs set noout once Ceph says they can stop); after it, its settle
// step's update (settle.go) waits for it to come back, uncordons it and
// resumes what it holds (Settle.Resumed). The nodes layer's roll makes the
// domain wait for this step and this step for the previous resized
// worker's settle step: one worker at a time.
//
// The step is `<worker>-drained`, on the controller, keyed on the size
// (a trigger), so a new size replaces it and its create drains. What the
// worker's machine is sized at is the Node's annotation SizeAnnotation,
// which the settle step writes once the worker runs at that size: the
// create drains only a Node whose recorded size differs (a worker not yet
// joined, or already at the size, is left alone; a Node with no record,
// one made before sizes were recorded, gets the current size recorded).
// The Node's boot ID before the restart goes to RestartAnnotation, so the
// settle step knows when the machine is back; a drain retried after a
// failure keeps the first record. The drain evicts every pod but the
// DaemonSets' (--force: a pod no controller recreates would die in the
// restart anyway), within 10 minutes.

const (
	// SizeAnnotation on a worker's Node is the config.Pool.Size its
	// machine runs at.
	SizeAnnotation = "simlab.io/size"
	// RestartAnnotation on a worker's Node is its boot ID before a restart
	// the drained phase prepared; the settle step removes it when the
	// worker is back.
	RestartAnnotation = "simlab.io/restart-from-boot"
	// restartSeconds bounds the wait for a worker to come back from its
	// restart, and for the API server to answer.
	restartSeconds = 600
)

// nodeShell is the start of the drained and settle scripts: set -eu; k
// (kubectl), node, size; late MSG, which fails naming the node once
// timeoutSeconds have passed since the script started; get JSONPATH, which
// prints a field of the Node ("" when there is no such Node) and retries
// while the API server does not answer (the controller may be restarting:
// resized in the same `up`); ann NAME, a Node annotation.
func nodeShell(kubectl, node, size string, timeoutSeconds, pollSeconds int) string {
	return fmt.Sprintf(`set -eu
k=%[1]s
node=%[2]s
size=%[3]s
deadline=$(( $(date +%%s) + %[4]d ))
late() {
  if [ "$(date +%%s)" -ge "$deadline" ]; then echo "$node: $1 within %[4]ds" >&2; exit 1; fi
}
get() {
  until v=$($k get node "$node" --ignore-not-found -o jsonpath="$1" 2>/dev/null); do
    late "the API server did not answer ($k get node $node)"
    sleep %[5]d
  done
  printf '%%s' "$v"
}
ann() { get "{.metadata.annotations.$(printf '%%s' "$1" | sed 's/\./\\./g')}"; }`,
		shq(kubectl), shq(node), shq(size), timeoutSeconds, pollSeconds)
}

// drainedPhase is worker node's drained phase for machines of size.
func drainedPhase(node, size string, s Settle) Phase {
	return drainedPhaseWith(kubectl, node, size, s, restartSeconds, 5)
}

// drainedPhaseWith is drainedPhase with another kubectl command, timeout
// and poll interval (tests).
func drainedPhaseWith(kubectl, node, size string, s Settle, timeoutSeconds, pollSeconds int) Phase {
	pausing := ""
	if s.Pausing != nil {
		pausing = "(\n" + s.Pausing(node) + "\n)\n"
	}
	return Phase{
		Prepare: nodeShell(kubectl, node, size, timeoutSeconds, pollSeconds) + fmt.Sprintf(`
if [ -z "$(get '{.metadata.name}')" ]; then echo "$node: not in the cluster yet: nothing to drain"; exit 0; fi
have=$(ann %[1]s)
if [ -z "$have" ]; then
  $k annotate node "$node" %[1]s="$size" --overwrite >/dev/null
  echo "$node: its size recorded as $size (none was): nothing to drain"; exit 0
fi`, SizeAnnotation),
		Done:    `[ "$have" = "$size" ]`,
		Skipped: "$node: already $size: nothing to drain",
		Run: pausing + fmt.Sprintf(`if [ -z "$(ann %[1]s)" ]; then
  $k annotate node "$node" %[1]s="$(get '{.status.nodeInfo.bootID}')" --overwrite >/dev/null
fi
echo "$node: draining it before its machine restarts ($have -> $size)"
$k drain "$node" --ignore-daemonsets --delete-emptydir-data --force --timeout=10m
echo "$node: drained; its machine restarts at $size"`, RestartAnnotation),
		// A changed input that is no new size (a rotated SSH key).
		Update: fmt.Sprintf("echo %s", shq(node+": drained only before a resize; nothing to do")),
	}
}

// settledUpdateWith is a worker's settle step's update: after a restart
// the drained phase prepared (RestartAnnotation), it waits until the Node
// runs a new boot and is Ready, uncordons it, runs resumed (Settle.Resumed,
// "" for none) and records size; otherwise it only records size.
func settledUpdateWith(kubectl, node, size, resumed string, timeoutSeconds, pollSeconds int) string {
	if resumed != "" {
		resumed = "(\n" + resumed + "\n)\n"
	}
	return nodeShell(kubectl, node, size, timeoutSeconds, pollSeconds) + fmt.Sprintf(`
boot=$(ann %[1]s)
if [ -z "$boot" ]; then
  if [ -n "$(get '{.metadata.name}')" ] && [ "$(ann %[2]s)" != "$size" ]; then
    $k annotate node "$node" %[2]s="$size" --overwrite >/dev/null
  fi
  echo "$node: settled when it joined; nothing to wait for again"; exit 0
fi
echo "$node: waiting for it to come back from its restart"
until [ "$(get '{.status.nodeInfo.bootID}')" != "$boot" ] && [ "$(get '{.status.conditions[?(@.type=="Ready")].status}')" = True ]; do
  late "did not come back Ready from its restart (virsh dominfo $node on the hypervisor; journalctl -u kubelet on it): it stays cordoned, the next worker is not restarted; once it is back, run pulumi up again"
  sleep %[3]d
done
$k uncordon "$node"
%[4]s$k annotate node "$node" %[2]s="$size" %[1]s- --overwrite >/dev/null
echo "$node: back at $size"`, RestartAnnotation, SizeAnnotation, pollSeconds, resumed)
}
