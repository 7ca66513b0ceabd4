// Package workloads owns what runs on the lab: the network simulator,
// installed from the repository's own chart (charts/simulator) with one
// worker Deployment and HPA per data-source type, into the simulator's
// namespace (created by the storage layer together with the dataset claim).
//
// The chart's values are a pure function of the stack config (Values), so
// tests render the chart with exactly what the program installs.
package workloads

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	helmv4 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v4"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/infra/config"
)

// ChartPath is the simulator chart's directory relative to the project root
// (the directory holding Pulumi.yaml, where Pulumi runs the program and its
// provider plugins). The Chart resource gets this relative path, so the state
// is the same on every machine.
const ChartPath = "./charts/simulator"

// ReleaseName is the Helm release name the chart is rendered with (config owns it); with it the
// chart names its objects simulator-controller and simulator-worker-<type>.
const ReleaseName = config.SimulatorRelease

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
	// ImageDigest (sha256:...) pins the simulator image: the digest of the
	// image `simlab image build` wrote into the artifact mirror.
	ImageDigest string
	// SSHPrivateKey (a secret; nil when the stack has none) seeds the SFTP
	// host key when simlab:simulator.sftp.hostKey is empty.
	SSHPrivateKey pulumi.StringInput
}

// Workloads is the workloads layer.
type Workloads struct {
	pulumi.ResourceState

	// Namespace is the simulator's namespace.
	Namespace pulumi.StringOutput
	// ControllerURL is the controller's in-cluster base URL.
	ControllerURL pulumi.StringOutput
}

// New registers the workloads layer: the chart, rendered by the Kubernetes
// provider from ChartPath with Values into config.Simulator.Namespace. The
// namespace is the storage layer's (the dataset claim lives in it and storage
// comes first); the chart waits for whatever the layer depends on.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Workloads, error) {
	if args == nil {
		return nil, fmt.Errorf("workloads: args are required")
	}
	if args.KafkaBootstrap == nil || args.DatasetClaim == nil {
		return nil, fmt.Errorf("workloads: KafkaBootstrap and DatasetClaim are required (from the storage layer)")
	}
	if _, err := ChartDir(); err != nil {
		return nil, fmt.Errorf("workloads: %w", err)
	}
	comp := &Workloads{}
	if err := ctx.RegisterComponentResource("simlab:workloads:Workloads", name, comp, opts...); err != nil {
		return nil, err
	}
	// Children do not inherit the component's DependsOn; hand it to the
	// chart so nothing is applied before the storage layer is up (it also
	// creates the simulator's namespace, where the dataset claim lives).
	given, err := pulumi.NewResourceOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("workloads: reading options: %w", err)
	}
	child := []pulumi.ResourceOption{pulumi.Parent(comp)}
	if args.Provider != nil {
		child = append(child, pulumi.Provider(args.Provider))
	}
	sim := args.Simulator

	values := pulumi.All(args.KafkaBootstrap, args.DatasetClaim).ApplyT(func(xs []any) map[string]any {
		return Values(sim, args.Versions, xs[0].(string), xs[1].(string), args.ImageDigest)
	}).(pulumi.MapOutput)

	secrets, err := sftpSecrets(ctx, name, sim, args.SSHPrivateKey, child)
	if err != nil {
		return nil, err
	}
	chartOpts := append(child, pulumi.DependsOn(given.DependsOn))
	if len(secrets) > 0 {
		chartOpts = append(chartOpts, pulumi.DependsOn(secrets))
	}
	_, err = helmv4.NewChart(ctx, name+"-simulator", &helmv4.ChartArgs{
		Chart:     pulumi.String(ChartPath),
		Name:      pulumi.String(ReleaseName),
		Namespace: pulumi.String(sim.Namespace),
		Values:    values,
	}, chartOpts...)
	if err != nil {
		return nil, fmt.Errorf("simulator chart %s: %w", ChartPath, err)
	}

	comp.Namespace = pulumi.String(sim.Namespace).ToStringOutput()
	comp.ControllerURL = pulumi.Sprintf("http://%s.%s.svc:%d", config.ControllerService, comp.Namespace, config.ControllerPort)
	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{
		"namespace": comp.Namespace, "controllerURL": comp.ControllerURL,
	}); err != nil {
		return nil, err
	}
	return comp, nil
}

// Values returns the chart values for a stack's simulator config, the pinned
// versions, the storage layer's Kafka bootstrap address and dataset claim,
// and the image's digest ("" runs the tag). Keys the config does not decide
// keep the chart's defaults (values.yaml).
func Values(sim config.Simulator, versions config.Versions, kafkaBootstrap, datasetClaim, imageDigest string) map[string]any {
	sources := make([]any, 0, len(sim.Sources))
	for _, s := range sim.Sources {
		sources = append(sources, map[string]any{
			"type": s.Type, "instances": s.Instances, "protocol": s.Protocol,
		})
	}
	return map[string]any{
		"image": map[string]any{
			"repository": sim.Image,
			"tag":        versions.Simulator,
			"digest":     imageDigest,
		},
		// The topics' names and layout are the contract's, which the
		// storage layer sized the topics with.
		"kafka": map[string]any{
			"bootstrap":       kafkaBootstrap,
			"topicPrefix":     contract.DefaultTopicPrefix,
			"partitioning":    contract.DefaultPartitioning,
			"keyedPartitions": contract.DefaultKeyedPartitions,
		},
		"dataset": map[string]any{
			"claimName": datasetClaim,
			// The config names the dataset by its absolute path in the share;
			// the chart mounts the share's root and wants it relative.
			"path": strings.TrimPrefix(sim.Dataset.Path, "/"),
		},
		"sut": map[string]any{
			"address": sim.SUT.Address,
		},
		"sftp": sftpValues(sim),
		"workers": map[string]any{
			"minReplicas":                    sim.MinWorkers,
			"maxReplicas":                    sim.MaxWorkers,
			"targetCPUUtilizationPercentage": sim.TargetCPUPercent,
			"scaleDownStabilizationSeconds":  sim.ScaleDownSeconds,
		},
		"sources": sources,
	}
}

// ChartDir returns the absolute directory of the simulator chart: ChartPath
// under the project root, the nearest directory at or above the working
// directory that holds Pulumi.yaml.
func ChartDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the project root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "Pulumi.yaml")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the project root: no Pulumi.yaml at or above the working directory")
		}
		dir = parent
	}
	chart := filepath.Join(dir, filepath.FromSlash(ChartPath))
	if _, err := os.Stat(filepath.Join(chart, "Chart.yaml")); err != nil {
		return "", fmt.Errorf("the simulator chart: %w", err)
	}
	return chart, nil
}
