// Package nodes owns the machines of a stack: Fedora CoreOS nodes booted from
// their Ignition, on a libvirt hypervisor (libvirt.go) or on listed bare metal
// (metal.go). It exports, per node, its name, role, address, an instance ID
// that changes when the machine is recreated, and an SSH connection for the
// cluster layer. Every command runs through pulumi-command: over SSH on the
// hypervisor or the node, or locally for files the artifact server serves
// and for each libvirt node's guard (infra/guard), which refuses a change
// that would replace the machine unless acknowledged (docs/DAY2.md).
package nodes

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/remote"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/ignition"
	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
)

// Renderer returns a node's Ignition config (JSON).
type Renderer func(node config.Node) ([]byte, error)

// Args are the typed inputs of the nodes layer.
type Args struct {
	// Cluster names the cluster; node names derive from it.
	Cluster config.Cluster
	// Provider is libvirt or metal.
	Provider string
	// Nodes are the machines to boot, controllers first.
	Nodes []config.Node
	// Controllers and Workers size the machines.
	Controllers config.Pool
	Workers     config.Pool
	// Libvirt or Metal describes where machines come from.
	Libvirt *config.Libvirt
	Metal   *config.Metal
	// SSH is how nodes are reached; SSHPrivateKey is a secret.
	SSH           config.SSH
	SSHPrivateKey pulumi.StringInput
	// Artifacts locates the artifact server; Versions pins what it serves.
	Artifacts config.Artifacts
	Versions  config.Versions
	// Ignition holds user snippets merged into each node's Ignition.
	Ignition config.Ignition
	// Manifest is the artifact mirror's manifest (base image, hashes); when
	// nil it is read from Artifacts.Dir.
	Manifest *artifacts.Manifest
	// Render produces each node's Ignition; when nil the ignition package
	// renders it from these Args and Manifest (the artifact server, started
	// with the same stack, serves the same bytes).
	Render Renderer
	// Roll, when set, replaces libvirt workers one at a time (roll.go).
	Roll *Roll
	// Guards checks each libvirt node's guard against the previous
	// deployment's record at program time (guard.Book); nil checks nothing.
	Guards *guard.Book
}

// Node is one machine. Its children (disks, domain, PXE entry, SSH wait)
// belong to it, so adding a worker adds exactly one Node and its children.
type Node struct {
	pulumi.ResourceState

	// Name is the node's hostname.
	Name string
	// Role is controller or worker.
	Role string
	// Address is the node's IP once known (static from config or from DHCP).
	Address pulumi.StringOutput
	// InstanceID changes when the machine is recreated (libvirt domain UUID,
	// metal MAC); the cluster layer re-runs init or join when it changes.
	InstanceID pulumi.StringOutput
	// Connection reaches the node over SSH once it answers (a secret: it holds the key).
	Connection remote.ConnectionOutput
	// Ready is the node's last resource: it answers SSH, and it depends on
	// every other resource of the node. Depend on Ready, not on the Node: the
	// Go SDK expands a dependency on a component into the children
	// registered so far, and children register asynchronously.
	Ready []pulumi.Resource
}

// Nodes is the nodes layer.
type Nodes struct {
	pulumi.ResourceState

	// Nodes are the machines, controllers first.
	Nodes []*Node
	// Ready holds every node's Ready resources (see Node.Ready).
	Ready []pulumi.Resource
	// KubernetesBinaries are this stack's kubeadm, kubelet and kubectl as
	// the nodes download them (nil when Args.Render was given): the cluster
	// layer's upgrade installs them on running nodes.
	KubernetesBinaries []ignition.Download
}

// SSH connection retry budget while a node boots: DialErrorLimit attempts of
// up to PerDialTimeout seconds each (~30 minutes for a PXE install).
const (
	dialErrorLimit = 180
	perDialTimeout = 10
)

// New registers the nodes layer.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Nodes, error) {
	if args == nil {
		return nil, fmt.Errorf("nodes: args are required")
	}
	if args.SSHPrivateKey == nil {
		return nil, fmt.Errorf("nodes: Args.SSHPrivateKey is required")
	}
	manifest := args.Manifest
	if manifest == nil {
		dir := args.Artifacts.Dir
		if dir == "" {
			dir = ".artifacts"
		}
		m, err := artifacts.LoadManifest(dir)
		if err != nil {
			return nil, fmt.Errorf("nodes: %w", err)
		}
		manifest = m
	}
	// identity is what of a node's Ignition needs a new machine to change
	// (ignition.Renderer.Identity: all but the Kubernetes release, which the
	// cluster layer upgrades in place).
	render, identity := args.Render, args.Render
	comp := &Nodes{}
	if render == nil {
		r, err := ignition.NewRenderer(args.stackConfig(), manifest)
		if err != nil {
			return nil, fmt.Errorf("nodes: %w", err)
		}
		render, identity = r.Render, r.Identity
		comp.KubernetesBinaries = r.KubernetesBinaries()
	}
	var p provider
	switch args.Provider {
	case config.ProviderLibvirt:
		if args.Libvirt == nil {
			return nil, fmt.Errorf("nodes: simlab:libvirt must be set for provider libvirt")
		}
		img, err := manifest.Get(artifacts.FCOSQemu)
		if err != nil {
			return nil, fmt.Errorf("nodes: libvirt base image: %w", err)
		}
		p = &libvirtProvider{args: args, image: img}
	case config.ProviderMetal:
		if args.Metal == nil {
			return nil, fmt.Errorf("nodes: simlab:metal must be set for provider metal")
		}
		p = &metalProvider{args: args}
	default:
		return nil, fmt.Errorf("nodes: provider %q has no nodes (want libvirt or metal)", args.Provider)
	}

	if err := ctx.RegisterComponentResource("simlab:nodes:Nodes", name, comp, opts...); err != nil {
		return nil, err
	}
	if err := p.shared(ctx, comp); err != nil {
		return nil, err
	}
	names := pulumi.StringArray{}
	addrs := pulumi.StringMap{}
	for _, n := range args.Nodes {
		ign, err := render(n)
		if err != nil {
			return nil, fmt.Errorf("rendering Ignition for %s: %w", n.Name, err)
		}
		// Rendered only where a provider uses it (libvirt nodes whose
		// Ignition change means a new machine).
		id := func() (string, error) {
			out, err := identity(n)
			if err != nil {
				return "", fmt.Errorf("rendering Ignition for %s: %w", n.Name, err)
			}
			return string(out), nil
		}
		node := &Node{Name: n.Name, Role: n.Role}
		if err := ctx.RegisterComponentResource("simlab:nodes:Node", n.Name, node, pulumi.Parent(comp)); err != nil {
			return nil, fmt.Errorf("registering node %s: %w", n.Name, err)
		}
		if err := p.node(ctx, node, n, string(ign), id); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := ctx.RegisterResourceOutputs(node, pulumi.Map{
			"name": pulumi.String(n.Name), "role": pulumi.String(n.Role),
			"address": node.Address, "instanceID": node.InstanceID,
		}); err != nil {
			return nil, err
		}
		comp.Nodes = append(comp.Nodes, node)
		comp.Ready = append(comp.Ready, node.Ready...)
		names = append(names, pulumi.String(n.Name))
		addrs[n.Name] = node.Address
	}
	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{"names": names, "addresses": addrs}); err != nil {
		return nil, err
	}
	return comp, nil
}

// stackConfig is the part of the stack config the Ignition renderer reads.
func (a *Args) stackConfig() *config.Config {
	return &config.Config{Cluster: a.Cluster, Provider: a.Provider, Controllers: a.Controllers, Workers: a.Workers,
		Libvirt: a.Libvirt, Metal: a.Metal, SSH: a.SSH, Artifacts: a.Artifacts, Versions: a.Versions, Ignition: a.Ignition}
}

// provider is how one kind of machine is brought up.
type provider interface {
	// shared registers resources all nodes use (e.g. the base image).
	shared(ctx *pulumi.Context, parent *Nodes) error
	// node registers one node's children and fills its outputs; identity
	// renders the Ignition's part whose change needs a new machine
	// (ignition.Renderer.Identity).
	node(ctx *pulumi.Context, node *Node, n config.Node, ignition string, identity func() (string, error)) error
}

// waitForSSH registers a command that succeeds once the node answers SSH,
// and sets the node's Connection. It prints the node's machine ID.
func waitForSSH(ctx *pulumi.Context, node *Node, args *Args, host pulumi.StringOutput, proxy remote.ProxyConnectionPtrInput,
	triggers pulumi.ArrayInput, deps []pulumi.Resource) error {
	conn := remote.ConnectionArgs{
		Host:           host,
		User:           pulumi.String(args.SSH.User),
		PrivateKey:     args.SSHPrivateKey,
		DialErrorLimit: pulumi.Int(dialErrorLimit),
		PerDialTimeout: pulumi.Int(perDialTimeout),
		Proxy:          proxy,
	}
	wait, err := remote.NewCommand(ctx, node.Name+"-ssh", &remote.CommandArgs{
		Connection: conn,
		// Ignition has run once sshd accepts our key; wait for the boot to settle.
		Create:   pulumi.String("systemctl is-system-running --wait >/dev/null || true; cat /etc/machine-id"),
		Triggers: triggers,
	}, pulumi.Parent(node), pulumi.DependsOn(deps))
	if err != nil {
		return fmt.Errorf("waiting for SSH: %w", err)
	}
	node.Ready = []pulumi.Resource{wait}
	// The connection is handed out only after SSH answered.
	node.Connection = remote.ConnectionArgs{
		Host: pulumi.All(wait.Stdout, host).ApplyT(func(v []any) string { return v[1].(string) }).(pulumi.StringOutput),
		User: pulumi.String(args.SSH.User), PrivateKey: args.SSHPrivateKey,
		DialErrorLimit: pulumi.Int(30), PerDialTimeout: pulumi.Int(perDialTimeout), Proxy: proxy,
	}.ToConnectionOutput()
	return nil
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }
