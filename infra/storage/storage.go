// Package storage owns the cluster's storage services: Rook-Ceph block
// storage, Strimzi's KRaft Kafka with the simulator's topics, and the NFS
// share holding datasets, with a destroy order that never hangs.
//
// The files split the layer by service: rook.go (CRDs, operator, CephCluster,
// block pool and StorageClass), kafka.go (CRDs, Strimzi operator, Kafka,
// KafkaNodePool, KafkaTopics), nfs.go (csi-driver-nfs, the optional
// in-cluster NFS server, the dataset volume) and sizing.go (pure functions
// deciding mons, pool sizes and topic replication from the node count).
// order.go documents how the dependency graph encodes the destroy order.
package storage

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
)

// Namespaces of the storage services.
const (
	// RookNamespace holds the Rook operator and the CephCluster.
	RookNamespace = "rook-ceph"
	// KafkaNamespace holds the Strimzi operator and the Kafka cluster.
	KafkaNamespace = "kafka"
	// NFSNamespace holds csi-driver-nfs and the in-cluster NFS server.
	NFSNamespace = "simlab-nfs"
)

// DefaultCephDisk is the workers' Ceph data disk on libvirt (the second virtio disk).
const DefaultCephDisk = "/dev/vdb"

// Args are the typed inputs of the storage layer.
type Args struct {
	// Provider is the Kubernetes provider of the cluster.
	Provider *kubernetes.Provider
	// Storage toggles and sizes Ceph, Kafka and NFS.
	Storage config.Storage
	// Workers is the number of workers (Ceph and Kafka sizing) when
	// StorageNodes is empty.
	Workers int
	// Sources are the simulator's data-source types (one topic each).
	Sources []config.SourceType
	// Versions pins charts and images.
	Versions config.Versions
	// StorageNodes names the nodes whose data disk Ceph uses (the workers).
	// Empty (existing mode): every node that has CephDisk, sized by Workers.
	StorageNodes []string
	// CephDisk is the workers' dedicated data disk: config.Metal.CephDisk on
	// metal, /dev/vdb on libvirt. Empty means DefaultCephDisk.
	CephDisk string
	// Mirrored are the charts and CRD manifests the layer applies, as local
	// files of the artifact mirror (infra resolves and verifies them); the
	// layer never fetches a URL.
	Mirrored Mirrored
	// DatasetNamespace is where the dataset PVC lives, the simulator's
	// namespace (config.Simulator.Namespace). Empty means
	// config.Default().Simulator.Namespace.
	DatasetNamespace string
	// ShrinkGuard registers the Ceph sizing guard (a local command of
	// pulumi-command, see infra/guard): `pulumi up` refuses a smaller pool
	// size, failure domain or monitor count unless
	// Storage.Ceph.AllowShrink. ArgsFor sets it on libvirt and metal, where
	// the stack runs pulumi-command anyway; existing mode has none.
	ShrinkGuard bool
	// Guards checks the guards' changes against the previous deployment's
	// records at program time (preview included), in every mode, and
	// collects this run's records (guard.Book); nil checks nothing.
	Guards *guard.Book
	// Leaving drains a worker's OSDs before it leaves the stack (osd.go);
	// nil (existing mode) drains nothing.
	Leaving *OSDLeaving
	// Prior is how the stack's previous deployment installed the charts
	// (its ChartsOutput): Releases it had are adopted by the Charts
	// (charts.go). The zero value is a stack never deployed.
	Prior PriorCharts
}

// Mirrored are local paths of the deploy artifacts the storage layer applies
// (artifacts.ChartRook, ...). Each is required when its service is enabled.
type Mirrored struct {
	// RookChart and RookCRDs: the rook-ceph chart (.tgz) and Rook's CRDs.
	RookChart, RookCRDs string
	// StrimziChart and StrimziCRDs: the strimzi-kafka-operator chart and
	// Strimzi's CRDs.
	StrimziChart, StrimziCRDs string
	// CSIDriverNFSChart is the csi-driver-nfs chart.
	CSIDriverNFSChart string
}

// check names every source an enabled service lacks.
func (s Mirrored) check(st config.Storage) error {
	var missing []string
	need := func(on bool, v, what string) {
		if on && v == "" {
			missing = append(missing, what)
		}
	}
	need(st.Ceph.Enabled, s.RookChart, "RookChart")
	need(st.Ceph.Enabled, s.RookCRDs, "RookCRDs")
	need(st.Kafka.Enabled, s.StrimziChart, "StrimziChart")
	need(st.Kafka.Enabled, s.StrimziCRDs, "StrimziCRDs")
	need(st.NFS.Enabled, s.CSIDriverNFSChart, "CSIDriverNFSChart")
	if len(missing) > 0 {
		return fmt.Errorf("storage: Mirrored.%s required (local files from the artifact mirror)", strings.Join(missing, ", Mirrored."))
	}
	return nil
}

// ArgsFor derives the storage layer's Args from a stack's config.
func ArgsFor(c *config.Config, provider *kubernetes.Provider) *Args {
	a := &Args{
		Provider: provider, Storage: c.Storage, Workers: c.Workers.Count,
		Sources: c.Simulator.Sources, Versions: c.Versions,
		DatasetNamespace: c.Simulator.Namespace, CephDisk: DefaultCephDisk,
		ShrinkGuard: c.Provider == config.ProviderLibvirt || c.Provider == config.ProviderMetal,
	}
	if c.Provider == config.ProviderMetal && c.Metal != nil && c.Metal.CephDisk != "" {
		a.CephDisk = c.Metal.CephDisk
	}
	for _, n := range c.NodesByRole(config.RoleWorker) {
		a.StorageNodes = append(a.StorageNodes, n.Name)
	}
	return a
}

// Storage is the storage layer.
type Storage struct {
	pulumi.ResourceState

	// KafkaBootstrap is the in-cluster bootstrap address of Kafka.
	KafkaBootstrap pulumi.StringOutput
	// DatasetClaim is the name of the ReadWriteMany dataset PVC.
	DatasetClaim pulumi.StringOutput
	// BlockStorageClass is the Ceph block StorageClass ("" without Ceph).
	BlockStorageClass pulumi.StringOutput
	// Ready are the resources consumers use: topics, Kafka, the dataset claim,
	// the NFS server and the StorageClasses. Each depends on its operator and
	// CRDs, so depending on Ready orders a consumer before all of the layer on
	// destroy. Depend on Ready rather than on the component: the Go SDK
	// expands a dependency on a component into the children registered so far,
	// and children register asynchronously.
	Ready []pulumi.Resource
	// Charts is ChartsOutput's value: {kind, releases}. Export it as the
	// stack output ChartsOutput, so the next `up` reads it back (Args.Prior).
	Charts pulumi.MapOutput
}

// builder carries what every service file needs while registering children.
type builder struct {
	ctx   *pulumi.Context
	name  string
	args  *Args
	comp  *Storage
	size  Sizing
	child []pulumi.ResourceOption
	// ready collects what consumers use (see Storage.Ready).
	ready []pulumi.Resource
	// releases are the IDs of the helm.sh/v3 Releases registered (Charts).
	releases pulumi.StringArray
}

// offer records resources the layer's consumers use.
func (b *builder) offer(rs ...pulumi.Resource) { b.ready = append(b.ready, rs...) }

// opts returns the child options plus DependsOn deps (nil entries skipped).
func (b *builder) opts(deps ...pulumi.Resource) []pulumi.ResourceOption {
	var ds []pulumi.Resource
	for _, d := range deps {
		if d != nil {
			ds = append(ds, d)
		}
	}
	out := append([]pulumi.ResourceOption{}, b.child...)
	if len(ds) > 0 {
		out = append(out, pulumi.DependsOn(ds))
	}
	return out
}

// readiness are the annotations that make `pulumi up` wait for a custom
// resource until its operator reports it ready (the Kubernetes provider's
// pulumi.com/waitFor: a condition or a JSONPath value), for at most the
// stack's storage.readyTimeoutMinutes; a timeout fails the up naming the
// resource, and nothing that depends on it is created.
func (b *builder) readiness(waitFor string) pulumi.StringMap {
	return pulumi.StringMap{
		"pulumi.com/waitFor":        pulumi.String(waitFor),
		"pulumi.com/timeoutSeconds": pulumi.String(strconv.Itoa(b.args.Storage.ReadyTimeout())),
	}
}

// KafkaReady is what `pulumi up` waits for on the Kafka cluster: Strimzi's
// Ready condition, which it sets once every node pool's brokers run.
const KafkaReady = "condition=Ready"

// CephReady is what `pulumi up` waits for on the CephCluster: Ceph's health
// at HEALTH_OK, or with readyHealth HEALTH_WARN Rook's phase Ready.
func CephReady(c config.Ceph) string {
	if c.ReadyHealth == config.CephHealthWarn {
		return "jsonpath={.status.phase}=Ready"
	}
	return "jsonpath={.status.ceph.health}=" + config.CephHealthOK
}

// labels are put on every object the layer creates.
func labels(component string) pulumi.StringMap {
	return pulumi.StringMap{
		"app.kubernetes.io/part-of":    pulumi.String("simlab"),
		"app.kubernetes.io/managed-by": pulumi.String("pulumi"),
		"app.kubernetes.io/component":  pulumi.String(component),
	}
}

func (b *builder) namespace(ns, component string, deps ...pulumi.Resource) (*corev1.Namespace, error) {
	r, err := corev1.NewNamespace(b.ctx, b.name+"-ns-"+ns, &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(ns), Labels: labels(component)},
	}, b.opts(deps...)...)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	return r, nil
}

// New registers the storage layer. See order.go for the dependency graph
// that makes `pulumi destroy` delete custom resources before their
// operators, operators before their CRDs, and namespaces last.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Storage, error) {
	if args == nil {
		return nil, fmt.Errorf("storage: args are required")
	}
	a := *args
	if a.CephDisk == "" {
		a.CephDisk = DefaultCephDisk
	}
	if a.DatasetNamespace == "" {
		a.DatasetNamespace = config.Default().Simulator.Namespace
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	comp := &Storage{}
	if err := ctx.RegisterComponentResource("simlab:storage:Storage", name, comp, opts...); err != nil {
		return nil, err
	}
	// Children do not inherit the component's DependsOn; the namespaces (the
	// roots of every chain below) take it.
	given, err := pulumi.NewResourceOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("storage: reading options: %w", err)
	}
	b := &builder{ctx: ctx, name: name, args: &a, comp: comp, size: SizeFor(a.storageNodeCount(), a.Storage.Kafka.Replicas)}
	b.child = []pulumi.ResourceOption{pulumi.Parent(comp)}
	if a.Provider != nil {
		b.child = append(b.child, pulumi.Provider(a.Provider))
	}

	ceph, err := b.rook(given.DependsOn)
	if err != nil {
		return nil, fmt.Errorf("storage: ceph: %w", err)
	}
	kafka, err := b.kafka(given.DependsOn, ceph)
	if err != nil {
		return nil, fmt.Errorf("storage: kafka: %w", err)
	}
	claim, err := b.nfs(given.DependsOn, ceph)
	if err != nil {
		return nil, fmt.Errorf("storage: nfs: %w", err)
	}

	comp.Ready = b.ready
	kind := ChartsAsCharts
	if a.Storage.HelmReleases {
		kind = ChartsAsReleases
	}
	releases := b.releases
	if releases == nil {
		releases = pulumi.StringArray{}
	}
	comp.Charts = pulumi.Map{"kind": pulumi.String(kind), "releases": releases}.ToMapOutput()
	comp.KafkaBootstrap = pulumi.String(kafka.bootstrap).ToStringOutput()
	comp.DatasetClaim = pulumi.String(claim).ToStringOutput()
	comp.BlockStorageClass = pulumi.String(ceph.className).ToStringOutput()
	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{
		"kafkaBootstrap": comp.KafkaBootstrap, "datasetClaim": comp.DatasetClaim,
		"blockStorageClass": comp.BlockStorageClass,
	}); err != nil {
		return nil, err
	}
	return comp, nil
}

// storageNodeCount is the number of nodes holding OSDs.
func (a *Args) storageNodeCount() int {
	if len(a.StorageNodes) > 0 {
		return len(a.StorageNodes)
	}
	return a.Workers
}

// validate repeats the config checks the layer relies on, naming the config
// key, so a hand-built Args fails as clearly as a stack file.
func (a *Args) validate() error {
	s := a.Storage
	switch {
	case s.Ceph.Enabled && a.storageNodeCount() < 1:
		return fmt.Errorf("storage: simlab:storage.ceph.enabled needs at least one storage node (simlab:workers.count is %d)", a.Workers)
	case s.Kafka.Enabled && s.Kafka.Replicas < 1:
		return fmt.Errorf("storage: simlab:storage.kafka.replicas must be >= 1, got %d", s.Kafka.Replicas)
	case s.Kafka.Enabled && s.Kafka.StorageGiB < 1:
		return fmt.Errorf("storage: simlab:storage.kafka.storageGiB must be >= 1, got %d", s.Kafka.StorageGiB)
	case s.NFS.Enabled && s.NFS.SizeGiB < 1:
		return fmt.Errorf("storage: simlab:storage.nfs.sizeGiB must be >= 1, got %d", s.NFS.SizeGiB)
	case s.NFS.Enabled && s.NFS.Server == "" && !s.Ceph.Enabled:
		return fmt.Errorf("storage: simlab:storage.nfs.server must be set when simlab:storage.ceph.enabled is false (the in-cluster NFS server needs a Ceph volume)")
	}
	for _, src := range a.Sources {
		if src.Instances < 1 {
			return fmt.Errorf("storage: simlab:simulator.sources[%s].instances must be >= 1 (one partition per source), got %d", src.Type, src.Instances)
		}
	}
	if s.HelmReleases && a.Prior.Kind == ChartsAsCharts {
		return fmt.Errorf("storage: simlab:storage.helmReleases: true is refused: this stack's charts are helm.sh/v4 Charts, whose objects helm cannot adopt (helm install fails on objects it did not make); remove the key, or destroy the stack and deploy it again with it (docs/DAY2.md)")
	}
	return a.Mirrored.check(s)
}
