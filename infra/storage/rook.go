package storage

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	storagev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/storage/v1"
	yamlv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/yaml/v2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
)

// Names of the Ceph objects.
const (
	// CephClusterName is the CephCluster's name; Rook's CSI uses its
	// namespace as clusterID.
	CephClusterName = "rook-ceph"
	// CephPoolName is the replicated RBD pool behind BlockStorageClass.
	CephPoolName = "replicapool"
	// BlockStorageClass is the default StorageClass on Ceph RBD.
	BlockStorageClass = "ceph-block"
	// CleanupConfirmation is the value of spec.cleanupPolicy.confirmation
	// that makes Rook wipe hosts and disks when the CephCluster is deleted.
	CleanupConfirmation = "yes-really-destroy-data"
)

// cephOut is what Kafka and NFS need from Ceph.
type cephOut struct {
	// className is the block StorageClass, "" when Ceph is disabled.
	className string
	// class is the StorageClass resource; volumes on it depend on it, so
	// they are deleted before the pool and the CephCluster.
	class pulumi.Resource
}

// rook registers namespace -> CRDs -> operator -> CephCluster -> pools ->
// StorageClass, each depending on the one before.
func (b *builder) rook(given []pulumi.Resource) (cephOut, error) {
	a := b.args
	if !a.Storage.Ceph.Enabled {
		return cephOut{}, nil
	}
	v := a.Versions
	ns, err := b.namespace(RookNamespace, "ceph", given...)
	if err != nil {
		return cephOut{}, err
	}
	// The CRDs are a resource of their own (the chart installs none:
	// crds.enabled=false), so the graph deletes them after the operator and
	// before the namespace.
	crds, err := yamlv2.NewConfigFile(b.ctx, b.name+"-rook-crds", &yamlv2.ConfigFileArgs{
		File: pulumi.String(a.Mirrored.RookCRDs),
	}, b.opts(ns)...)
	if err != nil {
		return cephOut{}, fmt.Errorf("rook CRDs: %w", err)
	}
	operator, err := b.chart(chartSpec{
		resource: b.name + "-rook-operator", release: "rook-ceph", namespace: RookNamespace,
		chart: a.Mirrored.RookChart, version: v.Rook, skipCrds: true,
		values: pulumi.Map{
			"crds": pulumi.Map{"enabled": pulumi.Bool(false)},
			// Rook deploys the Ceph CSI driver itself (rook-ceph.rbd.csi.ceph.com)
			// instead of through the ceph-csi-operator subchart, whose CRDs
			// would come with the release and outlive its order here.
			"csi": pulumi.Map{"rookUseCsiOperator": pulumi.Bool(false)},
			"image": pulumi.Map{
				"tag": pulumi.String(v.Rook),
			},
		},
	}, ns, crds)
	if err != nil {
		return cephOut{}, fmt.Errorf("rook operator: %w", err)
	}

	// The sizing guard comes before the CephCluster and its pools, so a
	// refused shrink stops `pulumi up` before Rook sees it.
	policies, err := b.shrinkPolicies(ns, crds)
	if err != nil {
		return cephOut{}, err
	}
	clusterDeps := policies
	g, err := b.shrinkGuard()
	if err != nil {
		return cephOut{}, err
	}
	if g != nil {
		clusterDeps = append(clusterDeps, g)
	}
	cluster, err := apiextensions.NewCustomResource(b.ctx, b.name+"-ceph-cluster", &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("ceph.rook.io/v1"),
		Kind:       pulumi.String("CephCluster"),
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(CephClusterName), Namespace: pulumi.String(RookNamespace), Labels: labels("ceph"),
			Annotations: b.shrinkAnnotations(b.readiness(CephReady(a.Storage.Ceph)))},
		OtherFields: kubernetes.UntypedArgs{
			"spec": CephClusterSpec(b.size, v.Ceph, a.StorageNodes, a.CephDisk),
		},
	}, b.after(operator, clusterDeps...)...)
	if err != nil {
		return cephOut{}, fmt.Errorf("CephCluster: %w", err)
	}
	if err := b.osdSteps(cluster); err != nil {
		return cephOut{}, err
	}

	pools := []pulumi.Resource{}
	for _, p := range []struct{ resource, name, poolName string }{
		{"ceph-pool", CephPoolName, ""},
		// Ceph's own .mgr pool, sized like the others so a 1-node lab is healthy.
		{"ceph-pool-mgr", "builtin-mgr", ".mgr"},
	} {
		spec := map[string]any{
			"failureDomain": b.size.FailureDomain,
			"replicated": map[string]any{
				"size":                   b.size.PoolSize,
				"requireSafeReplicaSize": b.size.RequireSafeReplicaSize,
			},
		}
		if p.poolName != "" {
			spec["name"] = p.poolName
		}
		pool, err := apiextensions.NewCustomResource(b.ctx, b.name+"-"+p.resource, &apiextensions.CustomResourceArgs{
			ApiVersion: pulumi.String("ceph.rook.io/v1"),
			Kind:       pulumi.String("CephBlockPool"),
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(p.name), Namespace: pulumi.String(RookNamespace), Labels: labels("ceph"),
				Annotations: b.shrinkAnnotations(nil)},
			OtherFields: kubernetes.UntypedArgs{"spec": spec},
		}, b.opts(cluster)...)
		if err != nil {
			return cephOut{}, fmt.Errorf("CephBlockPool %s: %w", p.name, err)
		}
		pools = append(pools, pool)
	}

	// Rook's operator creates these CSI secrets in the cluster's namespace.
	provName, nodeName := pulumi.String("rook-csi-rbd-provisioner"), pulumi.String("rook-csi-rbd-node")
	provNS, nodeNS := pulumi.String(RookNamespace), pulumi.String(RookNamespace)
	sc, err := storagev1.NewStorageClass(b.ctx, b.name+"-ceph-block", &storagev1.StorageClassArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name:   pulumi.String(BlockStorageClass),
			Labels: labels("ceph"),
			Annotations: pulumi.StringMap{
				"storageclass.kubernetes.io/is-default-class": pulumi.String("true"),
			},
		},
		Provisioner: pulumi.String(RookNamespace + ".rbd.csi.ceph.com"),
		Parameters: pulumi.StringMap{
			"clusterID":     pulumi.String(RookNamespace),
			"pool":          pulumi.String(CephPoolName),
			"imageFormat":   pulumi.String("2"),
			"imageFeatures": pulumi.String("layering"),
			"csi.storage.k8s.io/provisioner-secret-name":            provName,
			"csi.storage.k8s.io/provisioner-secret-namespace":       provNS,
			"csi.storage.k8s.io/controller-expand-secret-name":      provName,
			"csi.storage.k8s.io/controller-expand-secret-namespace": provNS,
			"csi.storage.k8s.io/node-stage-secret-name":             nodeName,
			"csi.storage.k8s.io/node-stage-secret-namespace":        nodeNS,
			"csi.storage.k8s.io/fstype":                             pulumi.String("ext4"),
		},
		ReclaimPolicy:        pulumi.String("Delete"),
		AllowVolumeExpansion: pulumi.Bool(true),
		VolumeBindingMode:    pulumi.String("Immediate"),
	}, b.opts(pools...)...)
	if err != nil {
		return cephOut{}, fmt.Errorf("StorageClass %s: %w", BlockStorageClass, err)
	}
	b.offer(sc)
	return cephOut{className: BlockStorageClass, class: sc}, nil
}

// shrinkGuard registers the guard over what the worker count decides for
// Ceph (Sizing): none of it may go down without simlab:storage.ceph.allowShrink.
// It is a local command, parented to the layer but not managed by its
// Kubernetes provider. Without one (Args.ShrinkGuard false: existing mode)
// the program still checks the change against the previous deployment's
// record (guard.Book: at preview too) and returns no resource.
func (b *builder) shrinkGuard() (pulumi.Resource, error) {
	s := b.size
	from := " (from simlab:workers.count)"
	args := &guard.Args{
		Subject: "Ceph",
		Harm: "shrink Ceph: fewer copies of every object or fewer monitors " +
			"(with size-1 pools a removed worker's data has no other copy)",
		Ack:   "simlab:storage.ceph.allowShrink",
		Acked: b.args.Storage.Ceph.AllowShrink,
		Safely: "pulumi up drains each removed worker's OSDs before the worker goes; with size-1 pools " +
			"every object then has one copy",
		// Fewer OSD nodes alone is no harm: a leaving worker's OSDs are
		// drained before it goes (osd.go).
		Values: []guard.Value{
			{Name: "pool size" + from, Value: fmt.Sprint(s.PoolSize), Rule: guard.OnDecrease},
			{Name: "failure domain" + from, Value: s.FailureDomain, Rule: guard.OnDecrease, Order: []string{"osd", "host"}},
			{Name: "monitors" + from, Value: fmt.Sprint(s.Mons), Rule: guard.OnDecrease},
		},
		Book: b.args.Guards,
	}
	name := b.name + "-ceph-guard"
	if !b.args.ShrinkGuard {
		return nil, b.args.Guards.Check(name, args)
	}
	g, err := guard.New(b.ctx, name, args, pulumi.Parent(b.comp))
	if err != nil {
		return nil, fmt.Errorf("Ceph sizing guard: %w", err)
	}
	return g, nil
}

// CephClusterSpec is the CephCluster's spec: the Ceph image at cephVersion,
// mons and managers from sizing, OSDs only on disk of the storage nodes
// (useAllDevices false). Without node names (existing mode) every node's
// disk matching the device's name is used. The cleanup policy says how to
// wipe disks but carries no confirmation: Rook stops managing a cluster whose
// confirmation is set, so it is set only right before destroy (STORAGE.md).
func CephClusterSpec(s Sizing, cephVersion string, nodes []string, disk string) map[string]any {
	storage := map[string]any{"useAllDevices": false}
	dev := deviceName(disk)
	if len(nodes) == 0 {
		storage["useAllNodes"] = true
		if strings.HasPrefix(dev, "/") {
			storage["devicePathFilter"] = "^" + regexp.QuoteMeta(dev) + "$"
		} else {
			storage["deviceFilter"] = "^" + regexp.QuoteMeta(dev) + "$"
		}
	} else {
		storage["useAllNodes"] = false
		var list []any
		for _, n := range nodes {
			list = append(list, map[string]any{"name": n, "devices": []any{map[string]any{"name": dev}}})
		}
		storage["nodes"] = list
	}
	spec := map[string]any{
		"cephVersion":     map[string]any{"image": config.Versions{Ceph: cephVersion}.CephImage()},
		"dataDirHostPath": "/var/lib/rook",
		"mon":             map[string]any{"count": s.Mons, "allowMultiplePerNode": false},
		"mgr":             map[string]any{"count": s.Mgrs, "allowMultiplePerNode": false},
		"dashboard":       map[string]any{"enabled": false},
		"crashCollector":  map[string]any{"disable": true},
		"storage":         storage,
		"cleanupPolicy": map[string]any{
			"sanitizeDisks":             map[string]any{"method": "quick", "dataSource": "zero", "iteration": 1},
			"allowUninstallWithVolumes": false,
		},
		"disruptionManagement": map[string]any{"managePodBudgets": true},
	}
	if s.PoolSize == 1 {
		spec["cephConfig"] = map[string]any{"global": map[string]any{
			"osd_pool_default_size":          "1",
			"mon_warn_on_pool_no_redundancy": "false",
		}}
	}
	return spec
}

// deviceName is how Rook names a device: the kernel name for /dev/<name>,
// the full path for udev links such as /dev/disk/by-id/....
func deviceName(disk string) string {
	if path.Dir(disk) == "/dev" {
		return path.Base(disk)
	}
	return disk
}
