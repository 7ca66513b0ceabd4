// Package nodes owns the machines of a stack: Fedora CoreOS nodes booted from
// their Ignition, on a libvirt hypervisor or on listed bare metal. It exports,
// per node, its name, role and address for the cluster layer.
package nodes

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
)

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
	// Ignition holds user snippets.
	Ignition config.Ignition
}

// Node is one machine. Its children (disks, domain, PXE entry) belong to it,
// so adding a worker adds exactly one Node and its children.
type Node struct {
	pulumi.ResourceState

	// Name is the node's hostname.
	Name string
	// Role is controller or worker.
	Role string
	// Address is the node's IP once known.
	Address pulumi.StringOutput
}

// Nodes is the nodes layer.
type Nodes struct {
	pulumi.ResourceState

	// Nodes are the machines, controllers first.
	Nodes []*Node
}

// New registers the nodes layer.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Nodes, error) {
	if args == nil {
		return nil, fmt.Errorf("nodes: args are required")
	}
	comp := &Nodes{}
	if err := ctx.RegisterComponentResource("simlab:nodes:Nodes", name, comp, opts...); err != nil {
		return nil, err
	}
	names := pulumi.StringArray{}
	for _, n := range args.Nodes {
		node := &Node{Name: n.Name, Role: n.Role}
		if err := ctx.RegisterComponentResource("simlab:nodes:Node", n.Name, node, pulumi.Parent(comp)); err != nil {
			return nil, fmt.Errorf("registering node %s: %w", n.Name, err)
		}
		node.Address = pulumi.String(n.IP).ToStringOutput()
		if err := ctx.RegisterResourceOutputs(node, pulumi.Map{
			"name": pulumi.String(n.Name), "role": pulumi.String(n.Role), "address": node.Address,
		}); err != nil {
			return nil, err
		}
		comp.Nodes = append(comp.Nodes, node)
		names = append(names, pulumi.String(n.Name))
	}
	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{"names": names}); err != nil {
		return nil, err
	}
	return comp, nil
}
