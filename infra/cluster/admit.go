package cluster

import "fmt"

// The admit phase: the controller approves the node's kubelet serving
// certificate request (serverTLSBootstrap) and waits for it; on an input
// change that is no new join it only checks the Node is there; a worker's
// undo drains and deletes its Node (before the join's undo resets it).

// admitPhase admits node; a worker's undo drains it.
func admitPhase(node string, worker bool) Phase {
	p := Phase{Run: approveScript(node), Update: admittedScript(node)}
	if worker {
		p.Undo = drainScript(node)
	}
	return p
}

// approveScript approves the node's pending kubelet serving certificate
// request (serverTLSBootstrap) and waits until one is approved, polling with
// a deadline. Only requests by system:node:<node> for the kubelet-serving
// signer are approved, and only those made since the Node object was
// created: a worker removed and joined again leaves its old, approved
// request behind, which must not count for the new kubelet.
func approveScript(node string) string { return approveScriptWith(kubectl, node) }

// approveScriptWith is approveScript with another kubectl command (tests).
func approveScriptWith(kubectl, node string) string {
	return fmt.Sprintf(`set -u
k=%q
user=%s
for i in $(seq 1 90); do
  since=$($k get node %s -o jsonpath='{.metadata.creationTimestamp}' 2>/dev/null || true)
  $k get csr --field-selector spec.signerName=kubernetes.io/kubelet-serving --no-headers \
    -o custom-columns=NAME:.metadata.name,USER:.spec.username,COND:.status.conditions[*].type,CREATED:.metadata.creationTimestamp 2>/dev/null >/tmp/simlab-csr.$$ || true
  awk -v u="$user" -v s="$since" '$2 == u && $3 == "<none>" && $4 >= s {print $1}' /tmp/simlab-csr.$$ | xargs -r $k certificate approve >/dev/null
  if awk -v u="$user" -v s="$since" '$2 == u && $3 ~ /Approved/ && $4 >= s {f=1} END {exit !f}' /tmp/simlab-csr.$$; then rm -f /tmp/simlab-csr.$$; exit 0; fi
  sleep 2
done
rm -f /tmp/simlab-csr.$$
echo "no kubelet serving certificate request from $user since its Node was created, within 180s (is its kubelet running?)" >&2
exit 1`, kubectl, shq("system:node:"+node), shq(node))
}

// admittedScript is an admit's update: the node was admitted when the
// command was created (a new machine or a new join replaces the command), so
// a changed input that is no new join — a rotated SSH key in the connection,
// a new script version — only checks that the Node is still there, instead
// of waiting for a serving certificate request that will not come again.
func admittedScript(node string) string {
	return fmt.Sprintf(`%s get node %s -o name >/dev/null || { echo "node %s is not in the cluster any more: replace it (pulumi up --replace with its -kubeadm-join URN)" >&2; exit 1; }
echo "%s: admitted when it joined; nothing to approve again"`, kubectl, shq(node), node, node)
}

// drainScript drains and deletes a worker's Node; it never fails.
func drainScript(node string) string { return drainScriptWith(kubectl, node) }

// drainScriptWith is drainScript with another kubectl command (tests).
func drainScriptWith(kubectl, node string) string {
	return fmt.Sprintf(`k=%q
if $k get node %[2]s >/dev/null 2>&1; then
  $k drain %[2]s --ignore-daemonsets --delete-emptydir-data --force --timeout=120s || echo "drain %[2]s incomplete; deleting the node anyway" >&2
  $k delete node %[2]s --wait=false || true
fi`, kubectl, node)
}
