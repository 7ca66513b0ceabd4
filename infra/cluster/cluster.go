// Package cluster owns Kubernetes on the nodes: kubeadm init on the
// controller, workers joined with a bootstrap token, Flannel and
// metrics-server, and the admin kubeconfig as a secret output.
//
// Everything runs over SSH with pulumi-command. The bootstrap token is
// derived from the secret SSH key (an HMAC), so it is the same on every `up`
// and never stored in plain text; it reaches kubeadm in config files on
// stdin, never as an argument (`ps`). kubeadm init skips
// itself when /etc/kubernetes/admin.conf exists, join when kubelet.conf
// exists, and no trigger changes between two `up`s, so a second `up` on a
// healthy cluster runs nothing. Removing a worker from config drains it,
// deletes its Node and runs `kubeadm reset` on it; destroy resets every node.
// A bumped simlab:versions.kubernetes upgrades the nodes in place, one at a
// time (upgrade.go).
//
// Each remote step is a Phase (phase.go) built in its own file — init,
// join (and its token), admit (and a worker's drain), upgrade; reset is the
// undo of init and join — with its script, its "already done?" check, its
// update and its undo. A worker's last step, settle, waits for what it
// holds (Ceph's OSDs) to be whole after it joined, and hands it off before
// its machine goes: a replacement rolls one worker at a time on it. A
// worker's drained step (libvirt) drains it before its machine restarts in
// place (a resize), and its settle step's update brings it back: a resize
// rolls one worker at a time on those.
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
	// Settle is the storage layer's part of each worker's settle phase
	// (settle.go): what a worker holds, made whole after it joined and
	// handed off before it goes; paused and resumed around a restart in
	// place (drained.go).
	Settle Settle
	// MachineSize is the workers' machine size (config.Pool.Size) where the
	// stack sizes them (libvirt), "" elsewhere: each worker then has a
	// drained step (drained.go), and its settle step records the size on
	// its Node and brings it back from a restart in place.
	MachineSize string
	// Resizing are the workers whose machines this `up` resizes in place,
	// in order: each one's drained step waits for the previous one's settle
	// step, so one worker at a time is drained, restarted and brought back.
	Resizing []string
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
	// Settled is each worker's settle command, by node name (settle.go):
	// created after its admission once what it holds is whole again
	// (the next worker's replacement waits for it), deleted before.
	Settled map[string]pulumi.Resource
	// Drained is each worker's drained command, by node name (drained.go):
	// what a worker's restart in place (its domain's update) waits for.
	// Empty when Args.MachineSize is.
	Drained map[string]pulumi.Resource
	// Ready are the resources that make the cluster usable: Flannel,
	// metrics-server, every node admitted (joined, serving certificate
	// approved), every worker settled and every node's upgrade step. The layers above depend on Ready, not on the component (the
	// Go SDK expands a component into the children registered so far, and
	// children register asynchronously), so destroy removes them first.
	Ready []pulumi.Resource
}

// AdminKubectl is kubectl on the controller, as root with the admin
// kubeconfig kubeadm init wrote: what every step the controller runs for the
// cluster (admit, drain, upgrade, a leaving worker's OSD drain) calls.
const AdminKubectl = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf"

// kubectl is AdminKubectl, the name this package's scripts use.
const kubectl = AdminKubectl

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
	comp.Init, err = initPhase().Command(ctx, ctrl.Name+"-kubeadm-init", Step{
		Connection: ctrl.Connection, Stdin: initConfig, Triggers: pulumi.Array{ctrl.InstanceID},
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
	admit, err := admitPhase(ctrl.Name, false).Command(ctx, ctrl.Name+"-admit", Step{
		Connection: ctrl.Connection, Triggers: pulumi.Array{comp.Init.ID()},
	}, parent, pulumi.DependsOn([]pulumi.Resource{fetch}))
	if err != nil {
		return nil, fmt.Errorf("admitting %s: %w", ctrl.Name, err)
	}
	comp.Ready = append(comp.Ready, admit)
	admitted := map[string]pulumi.Resource{ctrl.Name: admit}
	comp.Settled, comp.Drained = map[string]pulumi.Resource{}, map[string]pulumi.Resource{}
	resizing := map[string]bool{}
	for _, w := range args.Resizing {
		resizing[w] = true
	}
	prevResized := ""

	for _, w := range workers {
		join, wadmit, err := joinWorker(ctx, comp, args, ctrl, w, token, caHash, fetch)
		if err != nil {
			return nil, err
		}
		comp.Joins = append(comp.Joins, join)
		admitted[w.Name] = wadmit
		settleDeps := []pulumi.Resource{wadmit}
		if args.MachineSize != "" {
			// Keyed on the size: a new size replaces it, and its create
			// drains the worker before its domain restarts it. Resized
			// workers go one at a time: after the previous one is back.
			deps := []pulumi.Resource{admit}
			if resizing[w.Name] && prevResized != "" {
				deps = append(deps, comp.Settled[prevResized])
			}
			drained, err := drainedPhase(w.Name, args.MachineSize, args.Settle).Command(ctx, w.Name+"-drained", Step{
				Connection: ctrl.Connection, Triggers: pulumi.Array{pulumi.String(args.MachineSize)},
			}, parent, pulumi.DependsOn(deps))
			if err != nil {
				return nil, fmt.Errorf("the drained step of %s: %w", w.Name, err)
			}
			comp.Drained[w.Name] = drained
			settleDeps = append(settleDeps, drained)
		}
		// Replaced with its admission (a new machine), so deleted before
		// it: the hand-off comes before the drain.
		settled, err := settlePhase(w.Name, args.MachineSize, args.Settle).Command(ctx, w.Name+"-settled", Step{
			Connection: ctrl.Connection, Triggers: pulumi.Array{wadmit.ID()},
		}, parent, pulumi.DependsOn(settleDeps))
		if err != nil {
			return nil, fmt.Errorf("the settle step of %s: %w", w.Name, err)
		}
		comp.Settled[w.Name] = settled
		comp.Ready = append(comp.Ready, settled)
		if resizing[w.Name] {
			prevResized = w.Name
		}
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

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }
