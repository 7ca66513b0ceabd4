// Package workloads owns what runs on the lab: the network simulator,
// installed from charts/simulator with one worker Deployment and HPA per
// data-source type.
package workloads

import (
	"fmt"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
)

// Args are the typed inputs of the workloads layer.
type Args struct {
	// Provider is the Kubernetes provider of the cluster.
	Provider *kubernetes.Provider
	// Simulator configures the simulator.
	Simulator config.Simulator
	// Versions pins the simulator image.
	Versions config.Versions
	// KafkaBootstrap and DatasetClaim come from the storage layer.
	KafkaBootstrap pulumi.StringInput
	DatasetClaim   pulumi.StringInput
}

// Workloads is the workloads layer.
type Workloads struct {
	pulumi.ResourceState
}

// New registers the workloads layer.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Workloads, error) {
	if args == nil {
		return nil, fmt.Errorf("workloads: args are required")
	}
	comp := &Workloads{}
	if err := ctx.RegisterComponentResource("simlab:workloads:Workloads", name, comp, opts...); err != nil {
		return nil, err
	}
	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{}); err != nil {
		return nil, err
	}
	return comp, nil
}
