// Package cluster owns Kubernetes on the nodes: kubeadm init on the
// controller, workers joined with a bootstrap token, Flannel and
// metrics-server, and the admin kubeconfig as a secret output.
//
// Everything runs over SSH with pulumi-command. The bootstrap token is
// derived from the secret SSH key (an HMAC), so it is the same on every `up`
// and never stored in plain text; kubeadm init skips
// itself when /etc/kubernetes/admin.conf exists, join when kubelet.conf
// exists, and no trigger changes between two `up`s, so a second `up` on a
// healthy cluster runs nothing. Removing a worker from config drains it,
// deletes its Node and runs `kubeadm reset` on it; destroy resets every node.
// A bumped simlab:versions.kubernetes upgrades the nodes in place, one at a
// time (upgrade.go).
package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/remote"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/ignition"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/nodes"
)

// Args are the typed inputs of the cluster layer.
type Args struct {
	// Cluster names the cluster and its networks.
	Cluster config.Cluster
	// Nodes are the booted machines from the nodes layer; each carries its
	// own SSH connection.
	Nodes []*nodes.Node
	// SSHPrivateKey (secret) seeds the bootstrap token; the SSH connections
	// come with the nodes.
	SSHPrivateKey pulumi.StringInput
	// Versions pins Kubernetes, Flannel and metrics-server.
	Versions config.Versions
	// MetricsServerManifest is the local file of metrics-server's release
	// manifest from the artifact mirror (artifacts.ManifestMetricsServer).
	MetricsServerManifest string
	// Binaries are kubeadm, kubelet and kubectl of Versions.Kubernetes as
	// the nodes download them (nodes.Nodes.KubernetesBinaries); the upgrade
	// phase (upgrade.go) installs them on running nodes. None: no upgrade
	// phase.
	Binaries []ignition.Download
}

// Cluster is the cluster layer.
type Cluster struct {
	pulumi.ResourceState

	// Kubeconfig is the admin kubeconfig (a secret).
	Kubeconfig pulumi.StringOutput
	// Provider is a Kubernetes provider built from Kubeconfig; the layers
	// above deploy through it.
	Provider *kubernetes.Provider
	// Init is the kubeadm init command; Joins are the workers' join commands.
	Init  *remote.Command
	Joins []*remote.Command
	// Controller reaches the controller (the admin kubeconfig is there).
	Controller remote.ConnectionOutput
	// Admitted is each node's admit command, by node name: the node is in
	// the cluster with a serving certificate; what must happen before a
	// node leaves depends on it (Pulumi deletes it first).
	Admitted map[string]pulumi.Resource
	// Ready are the resources that make the cluster usable: Flannel,
	// metrics-server and every node admitted (joined, serving certificate
	// approved). The layers above depend on Ready, not on the component (the
	// Go SDK expands a component into the children registered so far, and
	// children register asynchronously), so destroy removes them first.
	Ready []pulumi.Resource
}

// kubectl on the controller, as root with the admin kubeconfig.
const kubectl = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf"

// New registers the cluster layer.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Cluster, error) {
	if args == nil {
		return nil, fmt.Errorf("cluster: args are required")
	}
	if args.SSHPrivateKey == nil {
		return nil, fmt.Errorf("cluster: Args.SSHPrivateKey is required (it seeds the bootstrap token)")
	}
	if args.MetricsServerManifest == "" {
		return nil, fmt.Errorf("cluster: Args.MetricsServerManifest is required (metrics-server's manifest from the artifact mirror)")
	}
	var ctrl *nodes.Node
	var workers []*nodes.Node
	for _, n := range args.Nodes {
		switch {
		case n.Role == config.RoleController && ctrl == nil:
			ctrl = n
		case n.Role == config.RoleController:
			return nil, fmt.Errorf("cluster: more than one controller (%s, %s): only one is supported", ctrl.Name, n.Name)
		default:
			workers = append(workers, n)
		}
	}
	if ctrl == nil {
		return nil, fmt.Errorf("cluster: no controller among %d nodes", len(args.Nodes))
	}
	comp := &Cluster{}
	if err := ctx.RegisterComponentResource("simlab:cluster:Cluster", name, comp, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(comp)
	cname := args.Cluster.Name

	// The bootstrap token, derived from the secret SSH key: stable across
	// `up`s without state, secret, and telling nothing about the key.
	token := pulumi.ToSecret(args.SSHPrivateKey.ToStringOutput().ApplyT(func(key string) (string, error) {
		if strings.TrimSpace(key) == "" {
			// An empty seed would give a token anyone could compute.
			return "", fmt.Errorf("cluster: the SSH private key is empty (set simlab:sshPrivateKey or ssh.privateKeyPath): " +
				"it reaches the nodes and seeds the bootstrap token")
		}
		return DeriveToken(key, cname), nil
	})).(pulumi.StringOutput)

	// kubeadm init on the controller, skipped when the cluster exists.
	initConfig := pulumi.ToSecret(pulumi.All(token, ctrl.Address).ApplyT(func(v []any) (string, error) {
		out, err := RenderInit(InitParams{Cluster: args.Cluster, KubernetesVersion: args.Versions.Kubernetes,
			NodeName: ctrl.Name, AdvertiseAddress: v[1].(string), Token: v[0].(string)})
		return string(out), err
	})).(pulumi.StringOutput)
	var err error
	comp.Init, err = remote.NewCommand(ctx, ctrl.Name+"-kubeadm-init", &remote.CommandArgs{
		Connection: ctrl.Connection,
		Stdin:      initConfig,
		Create: pulumi.String(writeConfig("init.yaml") + `
if sudo test -f /etc/kubernetes/admin.conf; then echo "kubeadm init: cluster exists, skipped"; exit 0; fi
sudo kubeadm init --config ` + ConfigDir + `/init.yaml --skip-token-print`),
		Delete:   pulumi.String(resetScript),
		Triggers: pulumi.Array{ctrl.InstanceID},
	}, parent, pulumi.DependsOn(ctrl.Ready))
	if err != nil {
		return nil, fmt.Errorf("kubeadm init on %s: %w", ctrl.Name, err)
	}

	// The admin kubeconfig and, from its CA, the discovery hash.
	fetch, err := remote.NewCommand(ctx, ctrl.Name+"-admin-kubeconfig", &remote.CommandArgs{
		Connection: ctrl.Connection,
		Create:     pulumi.String("sudo cat /etc/kubernetes/admin.conf"),
		Logging:    remote.LoggingStderr,
		Triggers:   pulumi.Array{comp.Init.ID()},
	}, parent, pulumi.DependsOn([]pulumi.Resource{comp.Init}), pulumi.AdditionalSecretOutputs([]string{"stdout"}))
	if err != nil {
		return nil, fmt.Errorf("fetching the admin kubeconfig: %w", err)
	}
	comp.Kubeconfig = pulumi.ToSecret(fetch.Stdout).(pulumi.StringOutput)
	caHash := pulumi.ToSecret(comp.Kubeconfig.ApplyT(CACertHashFromKubeconfig)).(pulumi.StringOutput)

	// The controller's kubelet asks for a serving certificate too.
	admit, err := remote.NewCommand(ctx, ctrl.Name+"-admit", &remote.CommandArgs{
		Connection: ctrl.Connection,
		Create:     pulumi.String(approveScript(ctrl.Name)),
		Update:     pulumi.String(admittedScript(ctrl.Name)),
		Triggers:   pulumi.Array{comp.Init.ID()},
	}, parent, pulumi.DependsOn([]pulumi.Resource{fetch}))
	if err != nil {
		return nil, fmt.Errorf("admitting %s: %w", ctrl.Name, err)
	}
	comp.Ready = append(comp.Ready, admit)
	admitted := map[string]pulumi.Resource{ctrl.Name: admit}

	for _, w := range workers {
		join, wadmit, err := joinWorker(ctx, comp, args, ctrl, w, token, caHash, fetch)
		if err != nil {
			return nil, err
		}
		comp.Joins = append(comp.Joins, join)
		admitted[w.Name] = wadmit
	}
	comp.Controller, comp.Admitted = ctrl.Connection, admitted
	// simlab:versions.kubernetes bumped: the nodes move to it in place.
	steps, err := upgrade(ctx, comp, args, ctrl, workers, admitted)
	if err != nil {
		return nil, err
	}
	comp.Ready = append(comp.Ready, steps...)

	comp.Provider, err = kubernetes.NewProvider(ctx, name, &kubernetes.ProviderArgs{
		Kubeconfig:            comp.Kubeconfig,
		EnableServerSideApply: pulumi.BoolPtr(true),
	}, parent, pulumi.DependsOn([]pulumi.Resource{fetch}))
	if err != nil {
		return nil, fmt.Errorf("kubernetes provider: %w", err)
	}
	k8s := []pulumi.ResourceOption{parent, pulumi.Provider(comp.Provider), pulumi.DependsOn([]pulumi.Resource{comp.Init})}
	cni, err := flannel(ctx, args.Cluster, args.Versions, k8s...)
	if err != nil {
		return nil, fmt.Errorf("flannel: %w", err)
	}
	metrics, err := metricsServer(ctx, args.MetricsServerManifest, k8s...)
	if err != nil {
		return nil, fmt.Errorf("metrics-server: %w", err)
	}
	comp.Ready = append(comp.Ready, cni, metrics)

	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{"kubeconfig": comp.Kubeconfig}); err != nil {
		return nil, err
	}
	return comp, nil
}

// DeriveToken derives a kubeadm bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})
// from a secret seed with HMAC-SHA256, per cluster name.
func DeriveToken(seed, cluster string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	mac := hmac.New(sha256.New, []byte(seed))
	mac.Write([]byte("simlab kubeadm bootstrap token/" + cluster))
	sum := mac.Sum(nil)
	b := make([]byte, 0, 23)
	for i := 0; i < 22; i++ {
		if i == 6 {
			b = append(b, '.')
		}
		b = append(b, alphabet[int(sum[i])%len(alphabet)])
	}
	return string(b)
}

// joinWorker refreshes the bootstrap token on the controller, joins the
// worker, then approves its kubelet serving certificate. Deleting the
// resources drains and deletes the Node first, then resets the worker.
func joinWorker(ctx *pulumi.Context, comp *Cluster, args *Args, ctrl, w *nodes.Node,
	token, caHash pulumi.StringOutput, fetch *remote.Command) (*remote.Command, pulumi.Resource, error) {
	parent := pulumi.Parent(comp)
	// Tokens expire (24h); a worker added days later gets the same token
	// refreshed for an hour.
	refresh, err := remote.NewCommand(ctx, w.Name+"-join-token", &remote.CommandArgs{
		Connection: ctrl.Connection,
		Stdin:      token,
		Create:     pulumi.String(tokenScript(w.Name)),
		Triggers:   pulumi.Array{w.InstanceID, comp.Init.ID()},
	}, parent, pulumi.DependsOn([]pulumi.Resource{fetch}))
	if err != nil {
		return nil, nil, fmt.Errorf("refreshing the join token for %s: %w", w.Name, err)
	}

	joinConfig := pulumi.ToSecret(pulumi.All(token, caHash, ctrl.Address).ApplyT(func(v []any) (string, error) {
		out, err := RenderJoin(JoinParams{NodeName: w.Name, ControllerAddress: v[2].(string),
			Token: v[0].(string), CACertHash: v[1].(string)})
		return string(out), err
	})).(pulumi.StringOutput)
	join, err := remote.NewCommand(ctx, w.Name+"-kubeadm-join", &remote.CommandArgs{
		Connection: w.Connection,
		Stdin:      joinConfig,
		Create: pulumi.String(writeConfig("join.yaml") + `
if sudo test -f /etc/kubernetes/kubelet.conf; then echo "kubeadm join: already joined, skipped"; exit 0; fi
sudo kubeadm join --config ` + ConfigDir + `/join.yaml`),
		Delete:   pulumi.String(resetScript),
		Triggers: pulumi.Array{w.InstanceID, comp.Init.ID()},
	}, parent, pulumi.DependsOn(append([]pulumi.Resource{comp.Init, refresh}, w.Ready...)))
	if err != nil {
		return nil, nil, fmt.Errorf("joining %s: %w", w.Name, err)
	}

	// Created after the join, so deleted before it: drain and delete the
	// Node while the worker still runs, then the join's delete resets it.
	admit, err := remote.NewCommand(ctx, w.Name+"-admit", &remote.CommandArgs{
		Connection: ctrl.Connection,
		Create:     pulumi.String(approveScript(w.Name)),
		Update:     pulumi.String(admittedScript(w.Name)),
		Delete:     pulumi.String(drainScript(w.Name)),
		Triggers:   pulumi.Array{join.ID()},
	}, parent, pulumi.DependsOn([]pulumi.Resource{join}))
	if err != nil {
		return nil, nil, fmt.Errorf("admitting %s: %w", w.Name, err)
	}
	comp.Ready = append(comp.Ready, admit)
	return join, admit, nil
}

// tokenScript (re)creates the bootstrap token read from stdin with a fresh
// one-hour TTL, using the controller's admin.conf.
func tokenScript(node string) string { return tokenScriptWith("sudo kubeadm", "", node) }

// tokenScriptWith is tokenScript with another kubeadm command and extra
// flags such as --kubeconfig (tests).
func tokenScriptWith(kubeadm, flags, node string) string {
	return fmt.Sprintf(`set -eu
tok=$(cat)
create() { %[1]s token create "$tok" --ttl 1h --description %[3]s %[2]s >/dev/null; }
create 2>/dev/null || { %[1]s token delete "${tok%%%%.*}" %[2]s >/dev/null 2>&1 || true; create; }`,
		kubeadm, flags, shq("simlab: join "+node))
}

// writeConfig stores stdin (a kubeadm config) as root-only ConfigDir/file.
func writeConfig(file string) string {
	return fmt.Sprintf(`set -eu
sudo install -d -m 0700 %[1]s
sudo sh -c 'umask 077; cat > %[1]s/%[2]s'`, ConfigDir, file)
}

// resetScript undoes init or join on a node; it never fails, so destroy
// never hangs on a node that is already gone or half set up. It empties
// /etc/cni/net.d but keeps the directory: containerd watches it, and a
// directory deleted and made again is not seen, so a node joined again would
// stay NotReady ("cni plugin not initialized") until containerd restarts
// (found by the rehearsal, docs/REHEARSAL.md).
const resetScript = `sudo kubeadm reset -f --cri-socket ` + CRISocket + ` || true
sudo rm -rf ` + ConfigDir + ` /var/lib/cni /run/flannel || true
sudo find /etc/cni/net.d -mindepth 1 -delete 2>/dev/null || true
sudo ip link delete cni0 2>/dev/null || true
sudo ip link delete flannel.1 2>/dev/null || true`

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

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }
