package storage_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/infra/storage"
	simstate "github.com/simlab/simlab/simulator/state"
	"github.com/simlab/simlab/tests/standin"
)

const (
	tCephCluster = "kubernetes:ceph.rook.io/v1:CephCluster"
	tBlockPool   = "kubernetes:ceph.rook.io/v1:CephBlockPool"
	tKafka       = "kubernetes:kafka.strimzi.io/v1beta2:Kafka"
	tNodePool    = "kubernetes:kafka.strimzi.io/v1beta2:KafkaNodePool"
	tTopic       = "kubernetes:kafka.strimzi.io/v1beta2:KafkaTopic"
	tChart       = "kubernetes:helm.sh/v4:Chart"
	tRelease     = "kubernetes:helm.sh/v3:Release"
	tConfigFile  = "kubernetes:yaml/v2:ConfigFile"
	tNamespace   = "kubernetes:core/v1:Namespace"
	tStorageCls  = "kubernetes:storage.k8s.io/v1:StorageClass"
	tPVC         = "kubernetes:core/v1:PersistentVolumeClaim"
	tPV          = "kubernetes:core/v1:PersistentVolume"
)

func TestMockCephSizingFollowsWorkers(t *testing.T) {
	cases := []struct {
		workers, mons, size int
		safe                bool
		domain              string
	}{
		{1, 1, 1, false, "osd"},
		{3, 3, 3, true, "host"},
		{10, 3, 3, true, "host"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d workers", c.workers), func(t *testing.T) {
			a := baseArgs(c.workers)
			res := run(t, a)
			cl := one(t, res.rec, tCephCluster)
			if got := get(t, cl, "spec.mon.count"); got != float64(c.mons) {
				t.Errorf("mon.count = %v, want %d", got, c.mons)
			}
			pools := res.rec.OfType(tBlockPool)
			if len(pools) != 2 {
				t.Fatalf("want the RBD pool and the .mgr pool, got %d pools", len(pools))
			}
			for _, p := range pools {
				if got := get(t, p, "spec.replicated.size"); got != float64(c.size) {
					t.Errorf("%s: replicated.size = %v, want %d", objName(p), got, c.size)
				}
				if got := get(t, p, "spec.replicated.requireSafeReplicaSize"); got != c.safe {
					t.Errorf("%s: requireSafeReplicaSize = %v, want %v", objName(p), got, c.safe)
				}
				if got := get(t, p, "spec.failureDomain"); got != c.domain {
					t.Errorf("%s: failureDomain = %v, want %s", objName(p), got, c.domain)
				}
			}
			_, lowRedundancy := get(t, cl, "spec").(map[string]any)["cephConfig"]
			if lowRedundancy != (c.size == 1) {
				t.Errorf("cephConfig (size-1 defaults) present = %v, want %v", lowRedundancy, c.size == 1)
			}
			// OSDs only on the workers' data disk.
			if get(t, cl, "spec.storage.useAllDevices") != false || get(t, cl, "spec.storage.useAllNodes") != false {
				t.Errorf("storage must list devices per node: %v", get(t, cl, "spec.storage"))
			}
			nodes := get(t, cl, "spec.storage.nodes").([]any)
			if len(nodes) != c.workers {
				t.Fatalf("%d storage nodes, want %d", len(nodes), c.workers)
			}
			for i, n := range nodes {
				want := map[string]any{"name": fmt.Sprintf("simlab-worker-%d", i+1), "devices": []any{map[string]any{"name": "vdb"}}}
				if !reflect.DeepEqual(n, want) {
					t.Errorf("storage node %d = %v, want %v", i, n, want)
				}
			}
			// The cleanup policy is prepared but never confirmed at up.
			cp := get(t, cl, "spec.cleanupPolicy").(map[string]any)
			if _, ok := cp["confirmation"]; ok {
				t.Errorf("cleanupPolicy.confirmation must not be set by the program (Rook stops managing the cluster): %v", cp)
			}
			sc := named(t, res.rec, tStorageCls, storage.BlockStorageClass)
			if get(t, sc, "metadata.annotations").(map[string]any)["storageclass.kubernetes.io/is-default-class"] != "true" {
				t.Errorf("%s must be the default StorageClass", storage.BlockStorageClass)
			}
			if res.blockClass != storage.BlockStorageClass {
				t.Errorf("BlockStorageClass output %q", res.blockClass)
			}
		})
	}
}

func TestSizingKafkaReplication(t *testing.T) {
	for _, c := range []struct{ replicas, rf, isr int }{{1, 1, 1}, {2, 2, 1}, {3, 3, 2}, {5, 3, 2}} {
		s := storage.SizeFor(3, c.replicas)
		if s.TopicReplicas != c.rf || s.MinInSync != c.isr || s.KafkaReplicas != c.replicas {
			t.Errorf("replicas %d: got rf %d isr %d pool %d, want rf %d isr %d", c.replicas, s.TopicReplicas, s.MinInSync, s.KafkaReplicas, c.rf, c.isr)
		}
	}
}

func TestMockCephDiskPerProvider(t *testing.T) {
	for _, stack := range []struct{ name, disk string }{{"dev", "vdb"}, {"lab", "sdb"}} {
		t.Run(stack.name, func(t *testing.T) {
			l, err := config.LoadStackFile(filepath.Join("..", "..", "stacks", "Pulumi."+stack.name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			a := withMirrored(storage.ArgsFor(&l.Config, nil))
			if len(a.StorageNodes) != l.Workers.Count {
				t.Fatalf("storage nodes %v, want the %d workers", a.StorageNodes, l.Workers.Count)
			}
			res := run(t, a)
			cl := one(t, res.rec, tCephCluster)
			for _, n := range get(t, cl, "spec.storage.nodes").([]any) {
				node := n.(map[string]any)
				if !strings.Contains(node["name"].(string), "-worker-") {
					t.Errorf("OSDs on a non-worker node %v", node["name"])
				}
				if dev := node["devices"].([]any)[0].(map[string]any)["name"]; dev != stack.disk {
					t.Errorf("%s: device %v, want %s", node["name"], dev, stack.disk)
				}
			}
		})
	}
	// Existing mode: no node names, a filter on the disk's kernel name.
	a := baseArgs(2)
	a.StorageNodes = nil
	cl := one(t, run(t, a).rec, tCephCluster)
	if get(t, cl, "spec.storage.useAllNodes") != true || get(t, cl, "spec.storage.deviceFilter") != "^vdb$" || get(t, cl, "spec.storage.useAllDevices") != false {
		t.Errorf("without node names want useAllNodes with deviceFilter ^vdb$, got %v", get(t, cl, "spec.storage"))
	}
}

// TestMockDestroyOrder checks the dependency chains Pulumi walks backwards on
// destroy: custom resources before operators, operators before CRDs, CRDs
// before namespaces; Kafka and the NFS server's volume before Ceph.
func TestMockDestroyOrder(t *testing.T) {
	for _, inCluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("in-cluster NFS %v", inCluster), func(t *testing.T) {
			a := baseArgs(3)
			if !inCluster {
				a.Storage.NFS.Server, a.Storage.NFS.Path = "nfs.example.internal", "/exports/datasets"
			}
			rec := run(t, a).rec
			g := newGraph(rec)
			k := func(typ, name string) string { return named(t, rec, typ, name).Key() }
			ns := func(n string) string { return k(tNamespace, n) }
			rel := func(n string) string { return k(tChart, n) }
			crds := func(n string) string { return "kubernetes:yaml/v2:ConfigFile::storage-" + n + "-crds" }
			must := func(from, to string) {
				t.Helper()
				if !g.reaches(from, to) {
					t.Errorf("%s must depend on %s (deps %v)", from, to, g.deps[from])
				}
			}
			mustNot := func(from, to string) {
				t.Helper()
				if g.reaches(from, to) {
					t.Errorf("%s must not depend on %s", from, to)
				}
			}
			for _, topic := range rec.OfType(tTopic) {
				must(topic.Key(), k(tKafka, storage.KafkaClusterName))
			}
			if n := len(rec.OfType(tTopic)); n != len(a.Sources)+2 {
				t.Errorf("%d KafkaTopics, want one per source type, the state topic and the reports topic", n)
			}
			chains := [][]string{
				{k(tKafka, storage.KafkaClusterName), k(tNodePool, storage.KafkaNodePoolName), rel("strimzi"), crds("strimzi"), ns(storage.KafkaNamespace)},
				{k(tBlockPool, storage.CephPoolName), k(tCephCluster, storage.CephClusterName), rel("rook-ceph"), crds("rook"), ns(storage.RookNamespace)},
				{k(tBlockPool, "builtin-mgr"), k(tCephCluster, storage.CephClusterName)},
				{k(tStorageCls, storage.BlockStorageClass), k(tBlockPool, storage.CephPoolName)},
				{k(tNodePool, storage.KafkaNodePoolName), k(tStorageCls, storage.BlockStorageClass)},
				{k(tPVC, storage.DatasetClaim), k(tPV, "simulator-datasets"), k(tStorageCls, storage.NFSStorageClass), rel("csi-driver-nfs"), ns(storage.NFSNamespace)},
				{k(tPVC, storage.DatasetClaim), ns("simulator")},
			}
			if inCluster {
				chains = append(chains, []string{k(tStorageCls, storage.NFSStorageClass), k(tPVC, storage.NFSServerName), k(tStorageCls, storage.BlockStorageClass)})
			}
			for _, c := range chains {
				for i := 0; i+1 < len(c); i++ {
					must(c[i], c[i+1])
				}
			}
			// Nothing points the other way: operators and CRDs never wait
			// for the resources they serve, namespaces for nothing here.
			for _, r := range rec.Resources() {
				if !r.Custom {
					continue
				}
				for _, op := range []string{rel("strimzi"), rel("rook-ceph"), rel("csi-driver-nfs"), crds("rook"), crds("strimzi")} {
					if r.Type != tConfigFile && r.Type != tNamespace {
						mustNot(op, r.Key())
					}
				}
				if r.Type == tNamespace {
					if len(g.deps[r.Key()]) != 0 {
						t.Errorf("namespace %s depends on %v", r.Key(), g.deps[r.Key()])
					}
				}
			}
		})
	}
}

func TestMockTopicsFollowSources(t *testing.T) {
	a := baseArgs(3)
	a.Storage.Kafka.Replicas = 3
	res := run(t, a)
	state := named(t, res.rec, tTopic, storage.TopicPrefix+"-state")
	cfg := get(t, state, "spec.config").(map[string]any)
	if cfg["max.message.bytes"] != float64(contract.StateTopicMaxMessageBytes) {
		t.Errorf("state topic max.message.bytes %v, want %d", cfg["max.message.bytes"], contract.StateTopicMaxMessageBytes)
	}
	if cfg["cleanup.policy"] != "compact" || get(t, state, "spec.partitions") != float64(1) || get(t, state, "spec.topicName") != storage.StateTopic() || storage.StateTopic() != "sim.state" {
		t.Errorf("state topic: %v", state.Inputs.Mappable()["spec"])
	}
	// The workers' delivery summaries: the name the simulator itself uses,
	// with contract's size and retention.
	reports := named(t, res.rec, tTopic, storage.TopicPrefix+"-reports")
	rcfg := get(t, reports, "spec.config").(map[string]any)
	if get(t, reports, "spec.topicName") != (simstate.Names{Prefix: storage.TopicPrefix}).ReportsTopic() ||
		get(t, reports, "spec.partitions") != float64(contract.ReportsTopicPartitions) ||
		rcfg["max.message.bytes"] != float64(contract.ReportsTopicMaxMessageBytes) ||
		rcfg["retention.ms"] != float64(contract.ReportsTopicRetentionMs) {
		t.Errorf("reports topic: %v", reports.Inputs.Mappable()["spec"])
	}
	for _, src := range a.Sources {
		tp := named(t, res.rec, tTopic, storage.TopicPrefix+"-records-"+src.Type)
		if got := get(t, tp, "spec.partitions"); got != float64(src.Instances) {
			t.Errorf("%s: %v partitions, want one per source (%d)", src.Type, got, src.Instances)
		}
		if got := get(t, tp, "spec.topicName"); got != "sim.records."+src.Type {
			t.Errorf("%s: topicName %v", src.Type, got)
		}
		if got := get(t, tp, "spec.replicas"); got != float64(3) {
			t.Errorf("%s: replicas %v, want 3", src.Type, got)
		}
		if got := get(t, tp, "spec.config").(map[string]any)["max.message.bytes"]; got != float64(contract.RecordTopicMaxMessageBytes) {
			t.Errorf("%s: max.message.bytes %v, want %d (contract.RecordTopicMaxMessageBytes: a record of the largest size fits)", src.Type, got, contract.RecordTopicMaxMessageBytes)
		}
		if get(t, tp, "metadata.labels").(map[string]any)["strimzi.io/cluster"] != storage.KafkaClusterName {
			t.Errorf("%s: missing strimzi.io/cluster label", src.Type)
		}
	}
	kafka := one(t, res.rec, tKafka)
	ann := get(t, kafka, "metadata.annotations").(map[string]any)
	if ann["strimzi.io/kraft"] != "enabled" || ann["strimzi.io/node-pools"] != "enabled" {
		t.Errorf("Kafka annotations %v", ann)
	}
	kcfg := get(t, kafka, "spec.kafka.config").(map[string]any)
	if kcfg["min.insync.replicas"] != float64(2) || kcfg["default.replication.factor"] != float64(3) {
		t.Errorf("Kafka replication config %v, want rf 3 and min.insync 2 for 3 nodes", kcfg)
	}
	pool := one(t, res.rec, tNodePool)
	if get(t, pool, "spec.replicas") != float64(3) || !reflect.DeepEqual(get(t, pool, "spec.roles"), []any{"controller", "broker"}) {
		t.Errorf("node pool spec %v", pool.Inputs.Mappable()["spec"])
	}
	vol := get(t, pool, "spec.storage.volumes.0").(map[string]any)
	if vol["class"] != storage.BlockStorageClass || vol["size"] != "20Gi" || vol["deleteClaim"] != true {
		t.Errorf("node pool volume %v: want class %s, size 20Gi, deleteClaim", vol, storage.BlockStorageClass)
	}
	if res.bootstrap != "simlab-kafka-bootstrap.kafka.svc:9092" {
		t.Errorf("KafkaBootstrap = %q", res.bootstrap)
	}
	// Without Ceph the volumes use the cluster's default StorageClass.
	a.Storage.Ceph.Enabled, a.Storage.NFS.Server, a.Storage.NFS.Path = false, "nfs.example.internal", "/x"
	vol = get(t, one(t, run(t, a).rec, tNodePool), "spec.storage.volumes.0").(map[string]any)
	if _, ok := vol["class"]; ok {
		t.Errorf("without Ceph the node pool must not name a class: %v", vol)
	}
}

// TestChartDefaultsMatch ties the names the chart expects to what this layer
// creates: the topic prefix and the dataset claim.
func TestChartDefaultsMatch(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "charts", "simulator", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"topicPrefix": storage.TopicPrefix, "claimName": storage.DatasetClaim} {
		m := regexp.MustCompile(`(?m)^\s+` + key + `:\s*(\S+)`).FindSubmatch(b)
		if m == nil || string(m[1]) != want {
			t.Errorf("charts/simulator/values.yaml %s = %q, storage layer uses %q", key, m, want)
		}
	}
}

func TestMockDatasetClaim(t *testing.T) {
	for _, c := range []struct{ server, path, wantServer, wantShare string }{
		{"", "", "nfs-server.simlab-nfs.svc", "/"},
		{"nfs.example.internal", "/exports/datasets", "nfs.example.internal", "/exports/datasets"},
	} {
		a := baseArgs(1)
		a.DatasetNamespace = "sim-ns"
		a.Storage.NFS.Server, a.Storage.NFS.Path = c.server, c.path
		res := run(t, a)
		if res.claim != storage.DatasetClaim {
			t.Errorf("DatasetClaim output %q", res.claim)
		}
		pvc := named(t, res.rec, tPVC, storage.DatasetClaim)
		if get(t, pvc, "metadata.namespace") != "sim-ns" || get(t, pvc, "spec.accessModes.0") != "ReadWriteMany" {
			t.Errorf("dataset claim %v", pvc.Inputs.Mappable())
		}
		pv := named(t, res.rec, tPV, "sim-ns-datasets")
		if get(t, pv, "spec.csi.volumeAttributes.server") != c.wantServer || get(t, pv, "spec.csi.volumeAttributes.share") != c.wantShare ||
			get(t, pv, "spec.persistentVolumeReclaimPolicy") != "Retain" || get(t, pv, "spec.claimRef.namespace") != "sim-ns" {
			t.Errorf("dataset volume %v", pv.Inputs.Mappable()["spec"])
		}
		_, hasServer := res.rec.Find("kubernetes:apps/v1:Deployment", "storage-nfs-server")
		if hasServer != (c.server == "") {
			t.Errorf("in-cluster NFS server present = %v with server %q", hasServer, c.server)
		}
	}
}

// TestMockVersionsComeFromConfig gives every version a unique value and finds
// each where it belongs: the chart versions of the releases, the CRD
// manifests, and the images.
func TestMockVersionsComeFromConfig(t *testing.T) {
	check := func(t *testing.T, v config.Versions) {
		a := baseArgs(3)
		a.Storage.NFS.Server = ""
		a.Versions = v
		rec := run(t, a).rec
		for name, want := range map[string]string{"rook-ceph": v.Rook, "strimzi": v.Strimzi, "csi-driver-nfs": v.CSIDriverNFS} {
			if got := get(t, named(t, rec, tChart, name), "version"); got != want {
				t.Errorf("chart %s version %v, want %s", name, got, want)
			}
		}
		if got := get(t, named(t, rec, tChart, "rook-ceph"), "values.csi.rookUseCsiOperator"); got != false {
			t.Errorf("rook chart: csi.rookUseCsiOperator = %v, want false (the StorageClass uses Rook's own CSI driver)", got)
		}
		if got := get(t, named(t, rec, tChart, "rook-ceph"), "values.image.tag"); got != v.Rook {
			t.Errorf("rook image tag %v, want %s", got, v.Rook)
		}
		for _, r := range rec.OfType(tChart) {
			if get(t, r, "version") == "" {
				t.Errorf("chart %s unpinned", r.Name)
			}
		}
		files := map[string]bool{}
		for _, f := range rec.OfType(tConfigFile) {
			files[get(t, f, "file").(string)] = true
		}
		for _, want := range []string{fakeMirrored.RookCRDs, fakeMirrored.StrimziCRDs} {
			if !files[want] {
				t.Errorf("CRD manifest %s not registered (have %v)", want, files)
			}
		}
		if got := get(t, one(t, rec, tCephCluster), "spec.cephVersion.image"); got != "quay.io/ceph/ceph:"+v.Ceph {
			t.Errorf("ceph image %v", got)
		}
		if got := get(t, one(t, rec, tKafka), "spec.kafka.version"); got != v.Kafka {
			t.Errorf("kafka version %v", got)
		}
		d, ok := rec.Find("kubernetes:apps/v1:Deployment", "storage-nfs-server")
		if !ok || get(t, d, "spec.template.spec.containers.0.image") != v.NFSServerImage {
			t.Errorf("NFS server image, want %s", v.NFSServerImage)
		}
	}
	t.Run("defaults", func(t *testing.T) { check(t, config.DefaultVersions()) })
	t.Run("overridden", func(t *testing.T) {
		v := config.DefaultVersions()
		rv := reflect.ValueOf(&v).Elem()
		for i := 0; i < rv.NumField(); i++ {
			rv.Field(i).SetString(fmt.Sprintf("v9.%d.7-test", i))
		}
		check(t, v)
	})
}

// TestNoHardCodedVersions scans the package's non-test Go files for string
// literals that look like versions or image tags: every version must come
// from infra/config/versions.go.
func TestNoHardCodedVersions(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	semver := regexp.MustCompile(`\d+\.\d+\.\d+`)
	tag := regexp.MustCompile(`^[a-z0-9./-]+:[v]?\d[\w.-]*$`)
	scanned := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		fs := token.NewFileSet()
		file, err := parser.ParseFile(fs, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		scanned++
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			if semver.MatchString(s) || tag.MatchString(s) {
				t.Errorf("%s: hard-coded version %q; pin it in infra/config/versions.go", fs.Position(lit.Pos()), s)
			}
			return true
		})
	}
	if scanned < 5 {
		t.Fatalf("scanned %d files; expected the package's sources", scanned)
	}
}

func TestMockDisabledServicesRegisterNothing(t *testing.T) {
	a := baseArgs(2)
	a.Storage.Ceph.Enabled, a.Storage.Kafka.Enabled, a.Storage.NFS.Enabled = false, false, false
	res := run(t, a)
	for _, r := range res.rec.Resources() {
		if r.Custom {
			t.Errorf("nothing enabled, yet %s registered", r.Key())
		}
	}
	if res.bootstrap != "" || res.claim != "" || res.blockClass != "" {
		t.Errorf("outputs %q %q %q, want empty", res.bootstrap, res.claim, res.blockClass)
	}
}

// Your own Kafka and dataset claim: the layer registers nothing for them and
// hands their names on to the workloads layer.
func TestMockOwnKafkaAndClaimPassThrough(t *testing.T) {
	a := baseArgs(2)
	a.Storage.Ceph.Enabled, a.Storage.Kafka.Enabled, a.Storage.NFS.Enabled = false, false, false
	a.Storage.Kafka.Bootstrap, a.Storage.NFS.ExistingClaim = "kafka-0.example:9092,kafka-1.example:9092", "my-datasets"
	res := run(t, a)
	for _, r := range res.rec.Resources() {
		if r.Custom {
			t.Errorf("your own Kafka and claim, yet %s registered", r.Key())
		}
	}
	if res.bootstrap != a.Storage.Kafka.Bootstrap || res.claim != "my-datasets" {
		t.Errorf("outputs bootstrap %q claim %q, want the stack's %q and %q", res.bootstrap, res.claim, a.Storage.Kafka.Bootstrap, "my-datasets")
	}
}

func TestMockBadArgsNameTheKey(t *testing.T) {
	cases := map[string]func(a *storage.Args){
		"simlab:storage.kafka.replicas": func(a *storage.Args) { a.Storage.Kafka.Replicas = 0 },
		"simlab:storage.nfs.server":     func(a *storage.Args) { a.Storage.Ceph.Enabled = false; a.Storage.NFS.Server = "" },
		"simlab:storage.ceph.enabled":   func(a *storage.Args) { a.StorageNodes = nil; a.Workers = 0 },
		"instances must be >= 1":        func(a *storage.Args) { a.Sources[0].Instances = 0 },
	}
	for want, mutate := range cases {
		a := baseArgs(1)
		mutate(a)
		_, err := runErr(a)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error naming %q, got %v", want, err)
		}
	}
	if _, err := runErr(nil); err == nil {
		t.Error("nil args accepted")
	}
}

// TestMockSimulatorGoesFirst runs the whole program (existing mode, the local
// stack) and checks the first step of the destroy order: the workloads layer
// depends on every resource of the storage layer, so the simulator is deleted
// before topics, Kafka, the dataset claim and everything under them.
func TestMockSimulatorGoesFirst(t *testing.T) {
	l, err := config.LoadStackFile(filepath.Join("..", "..", "stacks", "Pulumi.local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l.Artifacts.Dir = standin.MirrorT(t, filepath.Join("..", ".."))
	rec, err := pulumimock.Run("simlab", "local", func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, l)
		return err
	})
	if err != nil {
		t.Fatalf("the local stack under mocks: %v", err)
	}
	g := newGraph(rec)
	wl := one(t, rec, "simlab:workloads:Workloads").Key()
	var storageRes []string
	for _, r := range rec.Resources() {
		if r.Custom && strings.Contains(r.Parent, "simlab:storage:Storage") {
			storageRes = append(storageRes, r.Key())
			if !g.reaches(wl, r.Key()) {
				t.Errorf("the workloads layer must depend on %s", r.Key())
			}
		}
	}
	if len(storageRes) < 10 || len(rec.OfType(tTopic)) == 0 {
		t.Fatalf("expected the storage layer's resources, got %v", storageRes)
	}
}

// `pulumi up` waits for the Kafka cluster and the CephCluster as their
// operators report them ready, for the stack's timeout; the simulator, which
// depends on the layer, is installed after (TestMockSimulatorGoesFirst).
func TestMockUpWaitsForKafkaAndCephReady(t *testing.T) {
	for _, c := range []struct {
		name          string
		health        string
		minutes       int
		ceph, timeout string
	}{
		{"defaults", "", 0, "jsonpath={.status.ceph.health}=HEALTH_OK", "1200"},
		{"a warning accepted, 5 minutes", config.CephHealthWarn, 5, "jsonpath={.status.phase}=Ready", "300"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := baseArgs(3)
			a.Storage.Ceph.ReadyHealth, a.Storage.ReadyTimeoutMinutes = c.health, c.minutes
			rec := run(t, a).rec
			for _, w := range []struct {
				typ, waitFor string
			}{{tKafka, storage.KafkaReady}, {tCephCluster, c.ceph}} {
				an, _ := get(t, one(t, rec, w.typ), "metadata.annotations").(map[string]any)
				if an["pulumi.com/waitFor"] != w.waitFor || an["pulumi.com/timeoutSeconds"] != c.timeout {
					t.Errorf("%s annotations %v, want waitFor %q, timeoutSeconds %s", w.typ, an, w.waitFor, c.timeout)
				}
			}
		})
	}
}
