// Package storage owns the cluster's storage services: Rook-Ceph block
// storage, Strimzi's KRaft Kafka with the simulator's topics, and the NFS
// share holding datasets, with a destroy order that never hangs.
package storage

import (
	"fmt"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
)

// Args are the typed inputs of the storage layer.
type Args struct {
	// Provider is the Kubernetes provider of the cluster.
	Provider *kubernetes.Provider
	// Storage toggles and sizes Ceph, Kafka and NFS.
	Storage config.Storage
	// Workers is the number of workers (Ceph and Kafka sizing).
	Workers int
	// Sources are the simulator's data-source types (one topic each).
	Sources []config.SourceType
	// Versions pins charts and images.
	Versions config.Versions
}

// Storage is the storage layer.
type Storage struct {
	pulumi.ResourceState

	// KafkaBootstrap is the in-cluster bootstrap address of Kafka.
	KafkaBootstrap pulumi.StringOutput
	// DatasetClaim is the name of the ReadWriteMany dataset PVC.
	DatasetClaim pulumi.StringOutput
}

// New registers the storage layer.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Storage, error) {
	if args == nil {
		return nil, fmt.Errorf("storage: args are required")
	}
	comp := &Storage{}
	if err := ctx.RegisterComponentResource("simlab:storage:Storage", name, comp, opts...); err != nil {
		return nil, err
	}
	comp.KafkaBootstrap = pulumi.String("simlab-kafka-bootstrap.kafka.svc:9092").ToStringOutput()
	comp.DatasetClaim = pulumi.String("simulator-datasets").ToStringOutput()
	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{
		"kafkaBootstrap": comp.KafkaBootstrap, "datasetClaim": comp.DatasetClaim,
	}); err != nil {
		return nil, err
	}
	return comp, nil
}
