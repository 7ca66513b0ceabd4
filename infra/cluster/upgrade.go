package cluster

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/ignition"
	"github.com/simlab/simlab/infra/nodes"
)

// The upgrade phase: simlab:versions.kubernetes bumped (and the artifact
// mirror made for it) moves the running cluster to the new release in
// place, as kubeadm's upgrade procedure does — the controller first
// (`kubeadm upgrade apply`, then its kubelet), then each worker in turn
// (`kubeadm upgrade node`, drained, its kubelet, uncordoned). Nodes keep
// their machines: the nodes layer leaves the Kubernetes release out of a
// node's identity (ignition.Renderer.Identity).
//
// Each node's step is one command whose create and update are the same
// script; it checks first whether the node already runs the release (so a
// fresh cluster, a rotated key or a second `up` runs nothing) and refuses,
// before changing anything, a downgrade or a step of more than one minor
// release. There is no undo: a release is never moved back (kubeadm has no
// downgrade).
//
// With SIMLAB_UPGRADE_DRY_RUN=1 in its environment the script checks and
// changes nothing: it downloads and verifies the binaries into a scratch
// file and runs kubeadm's own dry runs (`kubeadm upgrade plan`, `apply
// --dry-run`, `upgrade node --dry-run`, `drain --dry-run=server`) even when
// the node is at the release; the rehearsal runs it so against real nodes.

// upgradeEnv names the dry-run switch of the upgrade scripts.
const upgradeEnv = "SIMLAB_UPGRADE_DRY_RUN"

// upgradePreamble is what both upgrade scripts start with: the target, the
// version checks and the verified download of a binary.
func upgradePreamble(version string, bins []ignition.Download) string {
	var b strings.Builder
	fmt.Fprintf(&b, `set -eu
want=%s
dry=${%s:-}
# cluster_version: the control plane's release, as kubeadm recorded it.
cluster_version() { $k -n kube-system get configmap kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' | sed -n 's/^kubernetesVersion: *//p'; }
minor() { echo "$1" | sed -n 's/^v[0-9]*\.\([0-9]*\)\..*/\1/p'; }
# step_ok FROM: refuses a downgrade or more than one minor release at once.
step_ok() {
  [ "$1" = "$want" ] && return 0
  if [ "$(printf '%%s\n%%s\n' "$1" "$want" | sort -V | head -n1)" = "$want" ]; then
    echo "simlab:versions.kubernetes: $want is older than the cluster's $1: Kubernetes is never downgraded in place (kubeadm cannot); set it back to $1" >&2
    return 1
  fi
  if [ $(( $(minor "$want") - $(minor "$1") )) -gt 1 ]; then
    echo "simlab:versions.kubernetes: $1 -> $want skips a minor release: kubeadm upgrades one minor at a time; set v1.$(( $(minor "$1") + 1 )).x first, pulumi up, then $want (re-make the artifact mirror for each)" >&2
    return 1
  fi
}
# meta NAME: where the artifact server serves NAME of $want (url), its
# sha512 (sum) and where the node keeps it (dest).
meta() {
  case $1 in
`, shq(version), upgradeEnv)
	for _, d := range bins {
		fmt.Fprintf(&b, "  %s) url=%s; sum=%s; dest=%s;;\n", d.Name, shq(d.URL), shq(strings.TrimPrefix(d.Hash, "sha512-")), shq(d.Path))
	}
	b.WriteString(`  *) echo "upgrade: no artifact $1" >&2; exit 1;;
  esac
}
# fetch NAME: downloads NAME, checks its sha512, and prints the path of the
# verified scratch copy next to where it goes.
fetch() {
  meta "$1"
  tmp=$(sudo mktemp "$dest.upgrade.XXXXXX")
  if ! sudo curl -fsSL --retry 3 -o "$tmp" "$url" || ! echo "$sum  $tmp" | sudo sha512sum -c --quiet - >/dev/null; then
    sudo rm -f "$tmp"
    echo "upgrade to $want: $url did not download or does not match its sha512 (is the artifact server serving the mirror made for $want?)" >&2
    exit 1
  fi
  sudo chmod 0755 "$tmp"
  echo "$tmp"
}
# install NAME: puts the verified NAME in place (a rename: a running
# program keeps its old file), or, in a dry run, only verifies it.
install() {
  meta "$1"
  f=$(fetch "$1")
  if [ -n "$dry" ]; then sudo rm -f "$f"; echo "dry run: $1 $want verified, not installed"; return; fi
  sudo mv -f "$f" "$dest"
}
# kubelet_dry: the node's drain and kubelet step as dry runs (the drain server-side, the
# downloads verified, nothing installed).
kubelet_dry() {
  $k drain "$node" --ignore-daemonsets --delete-emptydir-data --dry-run=server
  install kubelet; install kubectl
}
# kubelet_upgrade: drain the node, install the new kubelet and kubectl, restart the kubelet,
# wait until it reports $want and the node is Ready (at most 5 minutes), uncordon.
kubelet_upgrade() {
  $k drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout=10m
  install kubelet; install kubectl
  sudo systemctl daemon-reload
  sudo systemctl restart kubelet
  for i in $(seq 1 150); do
    [ "$($k get node "$node" -o jsonpath='{.status.nodeInfo.kubeletVersion}' 2>/dev/null)" = "$want" ] &&
      $k wait --for=condition=Ready node/"$node" --timeout=2s >/dev/null 2>&1 && break
    [ "$i" = 150 ] && { echo "$node: its kubelet did not come back Ready at $want within 300s (journalctl -u kubelet on $node)" >&2; exit 1; }
    sleep 2
  done
  $k uncordon "$node"
  echo "$node: at $want"
}
`)
	return b.String()
}

// upgradeControllerPhase upgrades the control plane on the controller to
// version, then the controller's kubelet and kubectl.
func upgradeControllerPhase(kubectl, node, version string, bins []ignition.Download) Phase {
	p := Phase{
		Prepare: "k=" + shq(kubectl) + "\nnode=" + shq(node) + "\n" + upgradePreamble(version, bins) + `have=$(cluster_version)
[ -n "$have" ] || { echo "upgrade: cannot read the cluster's Kubernetes version (configmap kube-system/kubeadm-config)" >&2; exit 1; }
step_ok "$have"
kubelet_at=$($k get node "$node" -o jsonpath='{.status.nodeInfo.kubeletVersion}')`,
		Done:    `[ "$have" = "$want" ] && [ "$kubelet_at" = "$want" ] && [ -z "$dry" ]`,
		Skipped: "$node: control plane and kubelet at $want: nothing to upgrade",
		Run: `if [ -n "$dry" ]; then
  f=$(fetch kubeadm)
  sudo "$f" upgrade plan "$want"
  sudo "$f" upgrade apply "$want" --dry-run --yes >/dev/null
  sudo rm -f "$f"
  echo "dry run: kubeadm upgrade apply $want --dry-run passed"
  kubelet_dry
  exit 0
fi
if [ "$have" != "$want" ]; then
  echo "$node: upgrading the control plane $have -> $want"
  install kubeadm
  sudo kubeadm upgrade plan "$want"
  sudo kubeadm upgrade apply "$want" --yes
fi
kubelet_upgrade`,
	}
	// The same script on an update (the release changed); no undo.
	p.Update = p.Script()
	return p
}

// upgradeWorkerPhase upgrades one worker to version once the control plane
// runs it: `kubeadm upgrade node`, then drained, the new kubelet and
// kubectl, and uncordoned. It runs on the worker and reads the admin
// kubeconfig from stdin (a scratch file only its user reads, removed on
// exit): a kubelet's own credentials may not drain its node. kubectlBin is
// the kubectl program to run.
func upgradeWorkerPhase(kubectlBin, node, version string, bins []ignition.Download) Phase {
	p := Phase{
		Prepare: `kc=$(mktemp); chmod 0600 "$kc"; trap 'rm -f "$kc"' EXIT; cat > "$kc"
k="` + kubectlBin + ` --kubeconfig $kc"
node=` + shq(node) + "\n" + upgradePreamble(version, bins) + `cp=$(cluster_version)
step_ok "$cp"
if [ "$cp" != "$want" ]; then
  echo "$node: the control plane runs $cp, not $want: the controller's upgrade comes first (its -kubeadm-upgrade command)" >&2; exit 1
fi
kubelet_at=$($k get node "$node" -o jsonpath='{.status.nodeInfo.kubeletVersion}')`,
		Done:    `[ "$kubelet_at" = "$want" ] && [ -z "$dry" ]`,
		Skipped: "$node: kubelet at $want: nothing to upgrade",
		Run: `if [ -n "$dry" ]; then
  f=$(fetch kubeadm)
  sudo "$f" upgrade node --dry-run >/dev/null
  sudo rm -f "$f"
  echo "dry run: kubeadm upgrade node --dry-run passed"
  kubelet_dry
  exit 0
fi
echo "$node: upgrading $kubelet_at -> $want"
install kubeadm
sudo kubeadm upgrade node
kubelet_upgrade`,
	}
	p.Update = p.Script()
	return p
}

// upgrade registers the upgrade phase: the controller's step after it is
// admitted, then each worker's after the previous one's, so one node at a
// time is drained. It returns the steps (the cluster is Ready after them).
func upgrade(ctx *pulumi.Context, comp *Cluster, args *Args, ctrl *nodes.Node, workers []*nodes.Node,
	admitted map[string]pulumi.Resource) ([]pulumi.Resource, error) {
	if len(args.Binaries) == 0 {
		return nil, nil
	}
	parent := pulumi.Parent(comp)
	prev, err := upgradeControllerPhase(kubectl, ctrl.Name, args.Versions.Kubernetes, args.Binaries).
		Command(ctx, ctrl.Name+"-kubeadm-upgrade", Step{Connection: ctrl.Connection},
			parent, pulumi.DependsOn([]pulumi.Resource{admitted[ctrl.Name]}))
	if err != nil {
		return nil, fmt.Errorf("the upgrade step of %s: %w", ctrl.Name, err)
	}
	steps := []pulumi.Resource{prev}
	for _, w := range workers {
		step, err := upgradeWorkerPhase(ignition.BinDir+"/kubectl", w.Name, args.Versions.Kubernetes, args.Binaries).
			Command(ctx, w.Name+"-kubeadm-upgrade", Step{Connection: w.Connection, Stdin: comp.Kubeconfig},
				parent, pulumi.DependsOn([]pulumi.Resource{admitted[w.Name], prev}))
		if err != nil {
			return nil, fmt.Errorf("the upgrade step of %s: %w", w.Name, err)
		}
		steps = append(steps, step)
		prev = step
	}
	return steps, nil
}
