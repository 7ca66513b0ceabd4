// Package cluster owns Kubernetes on the nodes: kubeadm init on the
// controller, workers joined with a bootstrap token, Flannel and
// metrics-server, and the admin kubeconfig as a secret output.
package cluster

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/nodes"
)

// Args are the typed inputs of the cluster layer.
type Args struct {
	// Cluster names the cluster and its networks.
	Cluster config.Cluster
	// Nodes are the booted machines from the nodes layer.
	Nodes []*nodes.Node
	// SSH and SSHPrivateKey (secret) reach the nodes.
	SSH           config.SSH
	SSHPrivateKey pulumi.StringInput
	// Versions pins Kubernetes, Flannel and metrics-server.
	Versions config.Versions
}

// Cluster is the cluster layer.
type Cluster struct {
	pulumi.ResourceState

	// Kubeconfig is the admin kubeconfig (a secret).
	Kubeconfig pulumi.StringOutput
}

// New registers the cluster layer.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Cluster, error) {
	if args == nil {
		return nil, fmt.Errorf("cluster: args are required")
	}
	comp := &Cluster{}
	if err := ctx.RegisterComponentResource("simlab:cluster:Cluster", name, comp, opts...); err != nil {
		return nil, err
	}
	comp.Kubeconfig = pulumi.ToSecret(pulumi.String("")).(pulumi.StringOutput)
	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{"kubeconfig": comp.Kubeconfig}); err != nil {
		return nil, err
	}
	return comp, nil
}
