// Package infra builds a simlab stack: it loads the typed configuration and
// wires the layers so data flows strictly downward:
//
//	config -> nodes -> cluster -> storage -> workloads
//
// In existing mode (simlab:provider: existing) nodes and cluster are skipped
// and the Kubernetes provider comes from the given kubeconfig.
package infra

import (
	"fmt"
	"os"
	"strings"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/cluster"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
	"github.com/simlab/simlab/infra/nodes"
	"github.com/simlab/simlab/infra/storage"
	"github.com/simlab/simlab/infra/workloads"
)

// Build is the Pulumi program: it reads the stack's config through the Pulumi
// context (so it works under `pulumi up`, the Automation API and the mock
// engine alike) and deploys the stack.
func Build(ctx *pulumi.Context) error {
	cfg, err := config.FromEngine(ctx)
	if err != nil {
		return err
	}
	_, err = Deploy(ctx, cfg)
	return err
}

// Stack holds the layers of a deployed stack.
type Stack struct {
	Nodes     *nodes.Nodes     // nil in existing mode
	Cluster   *cluster.Cluster // nil in existing mode
	Provider  *kubernetes.Provider
	Storage   *storage.Storage
	Workloads *workloads.Workloads
	// Guards are the guards' records this run made (the stack output
	// guard.Output): what the next `up` checks against.
	Guards map[string]string
	// WorkerSize is the stack output config.WorkerSizeOutput (libvirt): the
	// workers' size, known once every worker's settle step is done.
	WorkerSize pulumi.StringOutput
}

// Deploy registers every layer for a loaded configuration.
func Deploy(ctx *pulumi.Context, cfg *config.Loaded) (*Stack, error) {
	c := cfg.Config
	st := &Stack{}
	// Everything the layers apply comes from the artifact mirror, checked
	// before any resource is registered.
	files, manifest, err := resolveMirrored(&c)
	if err != nil {
		return nil, err
	}
	var imageDigest string
	if c.Simulator.Enabled {
		if imageDigest, err = simulatorImage(&c); err != nil {
			return nil, err
		}
	}
	// What the last `up` recorded: how the charts were installed, the
	// nodes and the workers' size.
	prev, err := readPrevious(ctx)
	if err != nil {
		return nil, err
	}
	// Every guard checks its change against what the last `up` recorded,
	// here, so `pulumi preview` refuses what `up` would.
	guards := guard.NewBook(prev.guards)
	var kubeconfig pulumi.StringInput
	var kubeContext pulumi.StringPtrInput
	var sshKey pulumi.StringInput // nil: the stack has none (an existing cluster may not)

	if c.Provider == config.ProviderExisting {
		path, err := config.ExpandHome(c.Existing.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("simlab:existing.kubeconfig: %w", err)
		}
		// The provider reads the file itself: the kubeconfig never enters state.
		kubeconfig = pulumi.String(path)
		if c.Existing.Context != "" {
			kubeContext = pulumi.StringPtr(c.Existing.Context)
		}
		// Read only when it seeds the SFTP host key: an existing cluster needs no SSH key otherwise.
		if c.Simulator.Enabled && c.Simulator.DerivesSFTPHostKey() {
			if sshKey, err = privateKey(cfg); err != nil {
				return nil, err
			}
		}
	} else {
		key, err := privateKey(cfg)
		if err != nil {
			return nil, err
		}
		sshKey = key
		// An acknowledged replacement of workers, and a resize of their
		// machines, roll one worker at a time: each waits for the previous
		// one's settle step (below).
		var roll *nodes.Roll
		var machineSize string
		running := prev.workers(&c)
		var resizing []string // the running workers, when their size changed
		if prev.resized(&c) {
			resizing = running
		}
		if c.Provider == config.ProviderLibvirt {
			machineSize = c.Workers.Size()
			if c.Workers.Replace || len(running) > 0 {
				roll = nodes.NewRoll(ctx, c.Nodes(), c.Workers.Replace, running)
				defer roll.Abort(fmt.Errorf("the program failed before the workers' roll was ordered"))
			}
		}
		st.Nodes, err = nodes.New(ctx, "nodes", &nodes.Args{
			Cluster: c.Cluster, Provider: c.Provider, Nodes: c.Nodes(),
			Controllers: c.Controllers, Workers: c.Workers,
			Libvirt: c.Libvirt, Metal: c.Metal,
			SSH: c.SSH, SSHPrivateKey: key,
			Artifacts: c.Artifacts, Versions: c.Versions, Ignition: c.Ignition, Manifest: manifest,
			Roll: roll, Guards: guards,
		})
		if err != nil {
			return nil, fmt.Errorf("nodes layer: %w", err)
		}
		// Not DependsOn(st.Nodes.Ready): each of the cluster's steps waits
		// for the nodes it runs on, not for every node (the roll needs a
		// worker's settle step before the next worker's machine).
		st.Cluster, err = cluster.New(ctx, "cluster", &cluster.Args{
			Cluster: c.Cluster, Nodes: st.Nodes.Nodes, SSHPrivateKey: key, Versions: c.Versions,
			MetricsServerManifest: files[artifacts.ManifestMetricsServer],
			Binaries:              st.Nodes.KubernetesBinaries,
			Settle:                storage.Settle(c.Storage),
			MachineSize:           machineSize,
			Resizing:              resizing,
		})
		if err != nil {
			return nil, fmt.Errorf("cluster layer: %w", err)
		}
		if err := roll.Release(st.Cluster.Settled, st.Cluster.Drained); err != nil {
			return nil, err
		}
		kubeconfig = st.Cluster.Kubeconfig
		ctx.Export("kubeconfig", st.Cluster.Kubeconfig)
		if machineSize != "" {
			// Recorded once every worker is settled at it: an `up` that
			// stops half way leaves the old size, so the next one resizes
			// (one at a time) the workers it did not reach.
			var settled []any
			for _, w := range c.NodesByRole(config.RoleWorker) {
				settled = append(settled, st.Cluster.Settled[w.Name].(pulumi.CustomResource).ID())
			}
			size := machineSize
			st.WorkerSize = pulumi.All(settled...).ApplyT(func([]any) string { return size }).(pulumi.StringOutput)
			ctx.Export(config.WorkerSizeOutput, st.WorkerSize)
		}
	}

	if st.Cluster != nil && st.Cluster.Provider != nil {
		// The cluster layer already deploys Flannel and metrics-server through
		// a provider built from its kubeconfig: the layers above share it.
		st.Provider = st.Cluster.Provider
	} else {
		st.Provider, err = kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{
			Kubeconfig:            kubeconfig,
			Context:               kubeContext,
			EnableServerSideApply: pulumi.BoolPtr(true),
		})
		if err != nil {
			return nil, fmt.Errorf("kubernetes provider: %w", err)
		}
	}

	// Storage waits for a usable cluster (pod network, metrics, joined
	// workers) and is destroyed before it.
	var onCluster []pulumi.ResourceOption
	if st.Cluster != nil {
		onCluster = append(onCluster, pulumi.DependsOn(st.Cluster.Ready))
	}
	sargs := storage.ArgsFor(&c, st.Provider)
	sargs.Mirrored = files.storage()
	sargs.Prior = prev.charts
	sargs.Guards = guards
	if st.Cluster != nil {
		sargs.Leaving = &storage.OSDLeaving{Controller: st.Cluster.Controller, After: st.Cluster.Settled}
	}
	st.Storage, err = storage.New(ctx, "storage", sargs, onCluster...)
	if err != nil {
		return nil, fmt.Errorf("storage layer: %w", err)
	}

	if c.Simulator.Enabled {
		st.Workloads, err = workloads.New(ctx, "workloads", &workloads.Args{
			Provider: st.Provider, Simulator: c.Simulator, Versions: c.Versions,
			KafkaBootstrap: st.Storage.KafkaBootstrap, DatasetClaim: st.Storage.DatasetClaim,
			ImageDigest: imageDigest, SSHPrivateKey: sshKey,
		}, pulumi.DependsOn(st.Storage.Ready))
		if err != nil {
			return nil, fmt.Errorf("workloads layer: %w", err)
		}
	}

	names := pulumi.StringArray{}
	for _, n := range c.Nodes() {
		names = append(names, pulumi.String(n.Name))
	}
	ctx.Export("provider", pulumi.String(c.Provider))
	ctx.Export(storage.ChartsOutput, st.Storage.Charts)
	ctx.Export("nodes", names)
	st.Guards = guards.Records()
	ctx.Export(guard.Output, pulumi.ToStringMap(st.Guards))
	return st, nil
}

// privateKey returns the SSH private key as a secret: the secret config value
// if set, otherwise the contents of ssh.privateKeyPath read at run time.
func privateKey(cfg *config.Loaded) (pulumi.StringInput, error) {
	if cfg.SSHPrivateKey != "" {
		return pulumi.ToSecret(pulumi.String(cfg.SSHPrivateKey)).(pulumi.StringOutput), nil
	}
	path, err := config.ExpandHome(cfg.SSH.PrivateKeyPath)
	if err != nil {
		return nil, fmt.Errorf("simlab:ssh.privateKeyPath: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("simlab:ssh.privateKeyPath: %s does not exist: create the key pair or set the key "+
				"as a secret (pulumi config set --secret simlab:sshPrivateKey < KEYFILE)", path)
		}
		return nil, fmt.Errorf("simlab:ssh.privateKeyPath: reading %s: %w", path, err)
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil, fmt.Errorf("simlab:ssh.privateKeyPath: %s is empty", path)
	}
	return pulumi.ToSecret(pulumi.String(string(data))).(pulumi.StringOutput), nil
}
