package engine_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
	"github.com/simlab/simlab/infra/storage"
	"github.com/simlab/simlab/tests/engine"
	"github.com/simlab/simlab/tests/localcluster"
	"github.com/simlab/simlab/tests/standin"
)

// tools returns the engine's binaries; without them the test fails, naming
// the target that builds them (make test builds them first).
func tools(t *testing.T, root string) engine.Tools {
	t.Helper()
	tl, err := engine.FindTools(root)
	if err != nil {
		t.Fatalf("engine tools: %v", err)
	}
	return tl
}

// TestProviderIsTheSDKsRelease: the provider the tests run is the release a
// user's engine downloads for the SDK in go.mod, so no run warns about an
// unexpected provider version.
func TestProviderIsTheSDKsRelease(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	sdk, err := localcluster.ModuleVersion(filepath.Join(root, "go.mod"), "github.com/pulumi/pulumi-kubernetes/sdk/v4")
	if err != nil {
		t.Fatal(err)
	}
	tl, _ := engine.FindTools(root)
	if sdk == "" || sdk != tl.ProviderVersion {
		t.Fatalf("go.mod requires pulumi-kubernetes sdk/v4 %q but tests/tools/pulumi-kubernetes builds the provider %q: "+
			"a user's engine would download a provider the tests never ran", sdk, tl.ProviderVersion)
	}
}

// kube reads an object from the local control plane; ok is false on 404.
func kube(ctx context.Context, t *testing.T, c *localcluster.Cluster, path string, out any) bool {
	t.Helper()
	err := c.Get(ctx, path, out)
	if err == nil {
		return true
	}
	var ae *localcluster.APIError
	if errors.As(err, &ae) && ae.Code == 404 {
		return false
	}
	t.Fatalf("GET %s: %v", path, err)
	return false
}

// obj is the part of any object the test reads.
type obj struct {
	Metadata struct {
		Name        string
		Annotations map[string]string
	}
	Spec   map[string]any
	Status map[string]any
}

// TestEngineLocalStack runs the program through the real Pulumi engine and
// the real Kubernetes provider against the local control plane, for the
// committed local stack: preview, up, a no-op up, a config change, Ceph
// turned on, destroy.
// The upstream charts and CRD manifests are stand-ins (tests/standin): what
// they leave unproven is that the upstream charts take our values; no
// operator runs (kwok nodes run no containers).
func TestEngineLocalStack(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tl := tools(t, root)
	c := localcluster.StartT(t, localcluster.Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// Strimzi's and Rook's status, as their operators would report it a few
	// seconds after each object appears (a stand-in: no operator runs here).
	ready := &localcluster.Readiness{Delay: 3 * time.Second}
	go ready.Run(ctx, c)

	mirror := standin.MirrorT(t, root)
	var progress strings.Builder
	lab, err := engine.Open(ctx, engine.Options{
		Root: root, Tools: tl, Dir: t.TempDir(), Stack: "enginetest", From: "local",
		Passphrase: "engine-test-passphrase",
	})
	if err != nil {
		t.Fatal(err)
	}
	const secretValue = "ENGINE-TEST-SECRET-7f3a9c"
	if err := lab.SetConfig(ctx, map[string]string{
		"simlab:existing.kubeconfig": c.Kubeconfig,
		"simlab:artifacts.dir":       mirror,
	}); err != nil {
		t.Fatal(err)
	}
	// A secret the stack holds (unused in existing mode): it must never reach
	// the state in plain text.
	if err := lab.SetSecret(ctx, "simlab:sshPrivateKey", secretValue); err != nil {
		t.Fatal(err)
	}
	times := map[string]time.Duration{}
	timed := func(name string, f func() error) {
		t.Helper()
		start := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v\n--- engine output ---\n%s", name, err, progress.String())
		}
		times[name] = time.Since(start)
	}

	// preview lists what up creates.
	var preview map[apitype.OpType]int
	pSteps := engine.NewSteps()
	timed("preview", func() error {
		r, err := lab.Stack.Preview(ctx, optpreview.EventStreams(pSteps.Channel()), optpreview.ProgressStreams(&progress))
		preview = r.ChangeSummary
		return err
	})
	if preview[apitype.OpCreate] == 0 {
		t.Fatalf("preview creates nothing: %v", preview)
	}

	// up runs `pulumi up` as step name and returns what it did.
	up := func(name string) *engine.Steps {
		t.Helper()
		steps := engine.NewSteps()
		timed(name, func() error {
			_, err := lab.Stack.Up(ctx, optup.EventStreams(steps.Channel()), optup.ProgressStreams(&progress))
			return err
		})
		return steps
	}
	upSteps := up("up")
	created := upSteps.Of(apitype.OpCreate)
	if want := pSteps.Of(apitype.OpCreate); strings.Join(created, "\n") != strings.Join(want, "\n") {
		t.Errorf("up created\n  %s\nbut preview listed\n  %s", strings.Join(created, "\n  "), strings.Join(want, "\n  "))
	}
	// Awaiting a Deployment warns until it is available (kwok makes it so);
	// a provider that is not the version the SDK asks for warns as well, and
	// that must never happen.
	for _, w := range upSteps.Warnings() {
		if strings.Contains(strings.ToLower(w), "version") {
			t.Errorf("engine warning during up: %s", w)
		}
	}
	t.Logf("up created %d resources", len(created))

	// What `simlab plan` and the day-2 tests give the mock engine as a
	// stack's previous deployment (infra.RecordedOutputs) is what an `up`
	// records: the next `up` reads these back (infra/prior.go).
	t.Run("the stack records the outputs the next up reads back", func(t *testing.T) {
		cfg, err := config.LoadStackFile(filepath.Join(root, "stacks", "Pulumi.local.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		outs, err := lab.Stack.Outputs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		norm := func(v any) string {
			b, _ := json.Marshal(v)
			if s := string(b); s != "null" {
				return s
			}
			return "[]"
		}
		for key, want := range infra.RecordedOutputs(&cfg.Config) {
			got, ok := outs[key]
			if !ok {
				t.Errorf("the stack has no output %s", key)
				continue
			}
			if norm(got.Value) != norm(want) {
				t.Errorf("output %s is %s, infra.RecordedOutputs says %s", key, norm(got.Value), norm(want))
			}
		}
	})

	t.Run("objects exist with the config's values", func(t *testing.T) {
		for _, ns := range []string{storage.KafkaNamespace, storage.NFSNamespace, "simulator"} {
			if !kube(ctx, t, c, "/api/v1/namespaces/"+ns, &obj{}) {
				t.Errorf("namespace %s missing", ns)
			}
		}
		var pvc obj
		if !kube(ctx, t, c, "/api/v1/namespaces/simulator/persistentvolumeclaims/"+storage.DatasetClaim, &pvc) {
			t.Fatalf("dataset claim %s missing", storage.DatasetClaim)
		}
		if pvc.Status["phase"] != "Bound" {
			t.Errorf("dataset claim is %v, want Bound", pvc.Status["phase"])
		}
		for _, d := range []string{"simulator-controller", "simulator-worker-pm-counters"} {
			var dep obj
			if !kube(ctx, t, c, "/apis/apps/v1/namespaces/simulator/deployments/"+d, &dep) {
				t.Errorf("Deployment %s missing", d)
				continue
			}
			if !available(dep) {
				t.Errorf("Deployment %s not Available: %v", d, dep.Status)
			}
			var pod struct {
				Spec struct {
					Template struct {
						Spec struct{ Containers []struct{ Image string } }
					}
				}
			}
			kube(ctx, t, c, "/apis/apps/v1/namespaces/simulator/deployments/"+d, &pod)
			if cs := pod.Spec.Template.Spec.Containers; len(cs) == 0 || !strings.HasSuffix(cs[0].Image, "@"+standin.ImageDigest) {
				t.Errorf("Deployment %s runs %v, want the mirrored image by digest %s", d, cs, standin.ImageDigest)
			}
			for _, kind := range []string{"/api/v1/namespaces/simulator/services/", "/apis/policy/v1/namespaces/simulator/poddisruptionbudgets/"} {
				if !kube(ctx, t, c, kind+d, &obj{}) {
					t.Errorf("%s%s missing", kind, d)
				}
			}
		}
		var hpa obj
		if !kube(ctx, t, c, "/apis/autoscaling/v2/namespaces/simulator/horizontalpodautoscalers/simulator-worker-pm-counters", &hpa) {
			t.Fatal("HPA simulator-worker-pm-counters missing")
		}
		if hpa.Spec["minReplicas"] != float64(1) || hpa.Spec["maxReplicas"] != float64(3) {
			t.Errorf("HPA min %v max %v, want 1 and 3 (stacks/Pulumi.local.yaml)", hpa.Spec["minReplicas"], hpa.Spec["maxReplicas"])
		}
		var topic obj
		if !kube(ctx, t, c, "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkatopics/sim-records-pm-counters", &topic) {
			t.Fatal("KafkaTopic sim-records-pm-counters missing")
		}
		if topic.Spec["partitions"] != float64(6) {
			t.Errorf("topic partitions %v, want 6 (one per instance)", topic.Spec["partitions"])
		}
		if !kube(ctx, t, c, "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkas/"+storage.KafkaClusterName, &obj{}) {
			t.Error("Kafka CR missing")
		}
		// `up` waited for Kafka to be Ready (pulumi.com/waitFor) before it
		// installed the simulator, which needs it.
		kafkaReady, ok := ready.ReadyAt("/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkas/" + storage.KafkaClusterName)
		var ctl struct {
			Metadata struct {
				CreationTimestamp time.Time `json:"creationTimestamp"`
			} `json:"metadata"`
		}
		kube(ctx, t, c, "/apis/apps/v1/namespaces/simulator/deployments/simulator-controller", &ctl)
		if !ok || ctl.Metadata.CreationTimestamp.Before(kafkaReady.Truncate(time.Second)) {
			t.Errorf("the simulator controller was created at %s, before Kafka was Ready (%v, %s)", ctl.Metadata.CreationTimestamp, ok, kafkaReady)
		}
		for _, op := range standin.Operators {
			if op.Chart == "rook-ceph" {
				continue // Ceph is off in the local stack
			}
			var dep obj
			if !kube(ctx, t, c, "/apis/apps/v1/namespaces/"+op.Namespace+"/deployments/"+op.Deployment, &dep) {
				t.Errorf("%s (stand-in %s chart) missing", op.Deployment, op.Chart)
			}
		}
		mirroredImagesOnly(ctx, t, c, root, mirror)
	})

	t.Run("no secret in the state in plain text", func(t *testing.T) {
		dep, err := lab.Stack.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		state := string(dep.Deployment)
		kc, err := os.ReadFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		needles := map[string]string{"simlab:sshPrivateKey": secretValue}
		if key := kubeconfigField(string(kc), "client-key-data"); key != "" {
			needles["the admin client key"] = key
			if raw, err := base64.StdEncoding.DecodeString(key); err == nil {
				if lines := strings.Split(string(raw), "\n"); len(lines) > 2 {
					needles["the admin client key (decoded)"] = lines[1]
				}
			}
		}
		for what, s := range needles {
			if strings.Contains(state, s) {
				t.Errorf("%s is in the state in plain text", what)
			}
		}
	})

	// The program reads its own previous deployment (infra/prior.go) at
	// every up: that read is all a no-op up does besides same.
	noop := up("second up")
	for op, n := range noop.Ops() {
		if op != apitype.OpSame && (op != apitype.OpRead || strings.Join(noop.Of(op), " ") != "pulumi:pulumi:StackReference::previous-deployment") {
			t.Errorf("a second up with no change did %d %s: %v", n, op, noop.Of(op))
		}
	}

	// A config change: more workers allowed, and a second source type.
	if err := lab.SetConfig(ctx, map[string]string{
		"simlab:simulator.maxWorkers":           "5",
		"simlab:simulator.sources[1].type":      "alarm-logs",
		"simlab:simulator.sources[1].instances": "2",
		"simlab:simulator.sources[1].protocol":  "tcp",
	}); err != nil {
		t.Fatal(err)
	}
	change := up("change up")
	t.Run("a config change touches exactly what it should", func(t *testing.T) {
		// The chart's objects are named <chart resource>:<namespace>/<name>.
		const chart = "workloads-simulator:simulator/"
		noDestruction(t, change)
		wantCreated := []string{
			"kubernetes:apps/v1:Deployment::" + chart + "simulator-worker-alarm-logs",
			"kubernetes:autoscaling/v2:HorizontalPodAutoscaler::" + chart + "simulator-worker-alarm-logs",
			"kubernetes:core/v1:Service::" + chart + "simulator-worker-alarm-logs",
			"kubernetes:kafka.strimzi.io/v1beta2:KafkaTopic::storage-topic-sim-records-alarm-logs",
			"kubernetes:policy/v1:PodDisruptionBudget::" + chart + "simulator-worker-alarm-logs",
		}
		if got := change.Of(apitype.OpCreate); strings.Join(got, "\n") != strings.Join(wantCreated, "\n") {
			t.Errorf("created\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(wantCreated, "\n  "))
		}
		updated := change.Of(apitype.OpUpdate)
		hpa := "kubernetes:autoscaling/v2:HorizontalPodAutoscaler::" + chart + "simulator-worker-pm-counters"
		if !contains(updated, hpa) {
			t.Errorf("the pm-counters HPA was not updated; updated: %v", updated)
		}
		for _, u := range updated {
			if strings.Contains(u, "KafkaTopic") || strings.Contains(u, "Namespace") || strings.Contains(u, "PersistentVolume") {
				t.Errorf("updated %s, which the change does not concern", u)
			}
		}
		var h obj
		if !kube(ctx, t, c, "/apis/autoscaling/v2/namespaces/simulator/horizontalpodautoscalers/simulator-worker-pm-counters", &h) ||
			h.Spec["maxReplicas"] != float64(5) {
			t.Errorf("HPA maxReplicas %v, want 5", h.Spec["maxReplicas"])
		}
		var d obj
		if !kube(ctx, t, c, "/apis/apps/v1/namespaces/simulator/deployments/simulator-worker-alarm-logs", &d) || !available(d) {
			t.Errorf("the new type's workers are not Available: %v", d.Status)
		}
	})

	// Turning Ceph on applies Rook's CRs for real (against the stand-in CRD
	// schemas): the operator chart, the CephCluster, the pools and the
	// default StorageClass, and moves Kafka's volumes onto it.
	if err := lab.SetConfig(ctx, map[string]string{"simlab:storage.ceph.enabled": "true"}); err != nil {
		t.Fatal(err)
	}
	ceph := up("ceph up")
	t.Run("enabling Ceph adds Rook and touches only Kafka's pool", func(t *testing.T) {
		noDestruction(t, ceph)
		got := strings.Join(ceph.Of(apitype.OpCreate), "\n")
		for _, want := range []string{
			"kubernetes:core/v1:Namespace::storage-ns-rook-ceph",
			"kubernetes:helm.sh/v4:Chart::storage-rook-operator",
			"kubernetes:apps/v1:Deployment::storage-rook-operator:rook-ceph/rook-ceph-operator",
			"kubernetes:ceph.rook.io/v1:CephCluster::storage-ceph-cluster",
			"kubernetes:ceph.rook.io/v1:CephBlockPool::storage-ceph-pool",
			"kubernetes:storage.k8s.io/v1:StorageClass::storage-ceph-block",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("not created: %s (created:\n  %s)", want, strings.ReplaceAll(got, "\n", "\n  "))
			}
		}
		if upd := ceph.Of(apitype.OpUpdate); strings.Join(upd, " ") != "kubernetes:kafka.strimzi.io/v1beta2:KafkaNodePool::storage-kafka-nodepool" {
			t.Errorf("updated %v, want only the KafkaNodePool (its volumes move to Ceph)", upd)
		}
		var cl obj
		clusterPath := "/apis/ceph.rook.io/v1/namespaces/" + storage.RookNamespace + "/cephclusters/" + storage.CephClusterName
		if !kube(ctx, t, c, clusterPath, &cl) {
			t.Fatal("CephCluster missing")
		}
		// The pools went in once the CephCluster reported HEALTH_OK (waitFor).
		healthy, ok := ready.ReadyAt(clusterPath)
		var pool struct {
			Metadata struct {
				CreationTimestamp time.Time `json:"creationTimestamp"`
			} `json:"metadata"`
		}
		kube(ctx, t, c, "/apis/ceph.rook.io/v1/namespaces/"+storage.RookNamespace+"/cephblockpools/"+storage.CephPoolName, &pool)
		if !ok || pool.Metadata.CreationTimestamp.Before(healthy.Truncate(time.Second)) {
			t.Errorf("the Ceph pool was created at %s, before the CephCluster was healthy (%v, %s)", pool.Metadata.CreationTimestamp, ok, healthy)
		}
		var sc struct {
			Metadata    struct{ Annotations map[string]string }
			Provisioner string
		}
		if !kube(ctx, t, c, "/apis/storage.k8s.io/v1/storageclasses/"+storage.BlockStorageClass, &sc) ||
			sc.Metadata.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
			t.Errorf("StorageClass %s missing or not the default: %+v", storage.BlockStorageClass, sc)
		}
	})

	// Ceph's sizing never shrinks silently, in existing mode too: the
	// program refuses it at preview and at up, from the Ceph guard's record
	// in the stack's outputs (guard.Book), and the API server's no-shrink
	// policies (infra/storage/shrink.go) refuse it for a stack without that
	// record and for kubectl, unless simlab:storage.ceph.allowShrink is set.
	poolPath := "/apis/ceph.rook.io/v1/namespaces/" + storage.RookNamespace + "/cephblockpools/" + storage.CephPoolName
	sizing := func() (size, mons float64, domain string) {
		t.Helper()
		var pool, cl obj
		if !kube(ctx, t, c, poolPath, &pool) || !kube(ctx, t, c, "/apis/ceph.rook.io/v1/namespaces/"+storage.RookNamespace+"/cephclusters/"+storage.CephClusterName, &cl) {
			t.Fatal("CephBlockPool or CephCluster missing")
		}
		size, _ = pool.Spec["replicated"].(map[string]any)["size"].(float64)
		mons, _ = cl.Spec["mon"].(map[string]any)["count"].(float64)
		domain, _ = pool.Spec["failureDomain"].(string)
		return size, mons, domain
	}
	if err := lab.SetConfig(ctx, map[string]string{"simlab:workers.count": "3"}); err != nil {
		t.Fatal(err)
	}
	up("ceph grows")
	if size, mons, domain := sizing(); size != 3 || mons != 3 || domain != "host" {
		t.Fatalf("3 workers: pool size %v, %v mons, failure domain %q; want 3, 3, host", size, mons, domain)
	}
	if err := lab.SetConfig(ctx, map[string]string{"simlab:workers.count": "2"}); err != nil {
		t.Fatal(err)
	}
	t.Run("a Ceph shrink is refused at preview and up by the program, naming the key", func(t *testing.T) {
		var out strings.Builder
		_, err := lab.Stack.Preview(ctx, optpreview.ProgressStreams(&out))
		if err == nil {
			t.Fatal("preview of a Ceph shrink (3 -> 2 workers: pool size 3 -> 1) passed without simlab:storage.ceph.allowShrink")
		}
		for _, want := range []string{"simlab:storage.ceph.allowShrink: refusing to change Ceph", "pool size (from simlab:workers.count): 3 -> 1"} {
			if !strings.Contains(out.String()+err.Error(), want) {
				t.Errorf("the preview's refusal does not say %q:\n%s", want, out.String())
			}
		}
		out.Reset()
		if _, err := lab.Stack.Up(ctx, optup.ProgressStreams(&out)); err == nil || !strings.Contains(out.String()+err.Error(), "simlab:storage.ceph.allowShrink: refusing to change Ceph") {
			t.Errorf("up of the shrink: %v\n%s", err, out.String())
		}
		if size, mons, domain := sizing(); size != 3 || mons != 3 || domain != "host" {
			t.Errorf("after the refusal: pool size %v, %v mons, failure domain %q; want them unchanged (3, 3, host)", size, mons, domain)
		}
	})
	t.Run("a Ceph shrink is refused by the API server, naming the key", func(t *testing.T) {
		// A stack whose last up kept no guard records (deployed before
		// they were): the program has nothing to check against.
		if !dropOutput(ctx, t, lab, guard.Output) {
			t.Fatalf("the stack has no output %s", guard.Output)
		}
		_, err := lab.Stack.Up(ctx, optup.ProgressStreams(&progress))
		if err == nil {
			t.Fatal("up shrank Ceph (3 -> 2 workers: pool size 3 -> 1) without simlab:storage.ceph.allowShrink")
		}
		// The CephCluster comes first (the pools depend on it): its update
		// is the one refused, and the engine goes no further.
		for _, want := range []string{"refused by the simlab no-shrink policy", "simlab:storage.ceph.allowShrink", "CephCluster rook-ceph: mon.count 3 -> 1"} {
			if !strings.Contains(progress.String(), want) {
				t.Errorf("the refusal does not say %q: %v", want, err)
			}
		}
		if size, mons, domain := sizing(); size != 3 || mons != 3 || domain != "host" {
			t.Errorf("after the refusal: pool size %v, %v mons, failure domain %q; want them unchanged (3, 3, host)", size, mons, domain)
		}
		// A shrink by hand meets the same policies.
		for patch, want := range map[string]string{
			`{"spec":{"replicated":{"size":1}}}`: "CephBlockPool " + storage.CephPoolName + ": replicated.size 3 -> 1",
			`{"spec":{"failureDomain":"osd"}}`:   "CephBlockPool " + storage.CephPoolName + ": failureDomain host -> osd",
		} {
			out, err := c.KubectlContext(ctx, nil, "-n", storage.RookNamespace, "patch", "cephblockpool", storage.CephPoolName, "--type=merge", "-p", patch)
			if err == nil || !strings.Contains(out+err.Error(), want) {
				t.Errorf("kubectl patch %s: %v\n%s\nwant it denied with %q", patch, err, out, want)
			}
		}
		if size, _, domain := sizing(); size != 3 || domain != "host" {
			t.Errorf("after the patches: pool size %v, failure domain %q; want 3, host", size, domain)
		}
	})
	if err := lab.SetConfig(ctx, map[string]string{"simlab:storage.ceph.allowShrink": "true"}); err != nil {
		t.Fatal(err)
	}
	up("ceph shrink acknowledged")
	if size, mons, domain := sizing(); size != 1 || mons != 1 || domain != "osd" {
		t.Errorf("acknowledged: pool size %v, %v mons, failure domain %q; want 1, 1, osd", size, mons, domain)
	}

	// Record what the stack made, then destroy and check nothing is left.
	made := append(append(created, change.Of(apitype.OpCreate)...), ceph.Of(apitype.OpCreate)...)
	dSteps := engine.NewSteps()
	timed("destroy", func() error {
		_, err := lab.Stack.Destroy(ctx, optdestroy.EventStreams(dSteps.Channel()), optdestroy.ProgressStreams(&progress))
		return err
	})
	if n := len(dSteps.Of(apitype.OpDelete)); n != len(made) {
		t.Errorf("destroy deleted %d resources, the stack made %d", n, len(made))
	}
	t.Run("destroy leaves nothing behind", func(t *testing.T) {
		for _, ns := range []string{storage.KafkaNamespace, storage.NFSNamespace, storage.RookNamespace, "simulator"} {
			var n obj
			if kube(ctx, t, c, "/api/v1/namespaces/"+ns, &n) {
				t.Errorf("namespace %s still exists (%v)", ns, n.Status)
			}
		}
		for _, p := range []string{
			"/apis/storage.k8s.io/v1/storageclasses/" + storage.NFSStorageClass,
			"/api/v1/persistentvolumes/simulator-datasets",
			"/apis/storage.k8s.io/v1/csidrivers/" + storage.NFSDriver,
			"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/kafkas.kafka.strimzi.io",
			"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/cephclusters.ceph.rook.io",
			"/apis/storage.k8s.io/v1/storageclasses/" + storage.BlockStorageClass,
		} {
			if kube(ctx, t, c, p, &obj{}) {
				t.Errorf("%s still exists", p)
			}
		}
	})

	var b strings.Builder
	for _, n := range []string{"preview", "up", "second up", "change up", "ceph up", "ceph grows", "ceph shrink acknowledged", "destroy"} {
		fmt.Fprintf(&b, "| %s | %.1f |\n", n, times[n].Seconds())
	}
	t.Logf("engine timings (s), %d resources:\n%s", len(made), b.String())
	if t.Failed() {
		t.Logf("--- engine output ---\n%s", progress.String())
	}
}

// mirroredImagesOnly checks every image a workload in the cluster runs —
// rendered by the helm inside the real provider from the mirrored (stand-in)
// charts, or built by the program — is one `simlab artifacts mirror --stack
// local` copies (the stack's own images, the charts' values, the manifests),
// or the simulator image by the digest `simlab image build` wrote.
func mirroredImagesOnly(ctx context.Context, t *testing.T, c *localcluster.Cluster, root, mirror string) {
	t.Helper()
	l, err := config.LoadStackFile(filepath.Join(root, "stacks", "Pulumi.local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, i := range l.Images() {
		want[i.Ref] = true
	}
	m, err := artifacts.LoadManifest(mirror)
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := artifacts.DeployImages(mirror, m, artifacts.DeployFor(&l.Config))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		want[r.Ref] = true
	}
	var seen []string
	for _, kind := range []string{"deployments", "daemonsets", "statefulsets"} {
		var list struct {
			Items []struct {
				Metadata struct{ Namespace, Name string }
				Spec     struct {
					Template struct {
						Spec struct{ Containers, InitContainers []struct{ Image string } }
					}
				}
			}
		}
		kube(ctx, t, c, "/apis/apps/v1/"+kind, &list)
		for _, it := range list.Items {
			for _, ctr := range append(it.Spec.Template.Spec.Containers, it.Spec.Template.Spec.InitContainers...) {
				seen = append(seen, ctr.Image)
				if strings.HasPrefix(ctr.Image, l.Simulator.Image+":") && strings.HasSuffix(ctr.Image, "@"+standin.ImageDigest) {
					continue
				}
				if !want[ctr.Image] {
					t.Errorf("%s %s/%s runs %s, which the mirror does not copy (it copies %v)", kind, it.Metadata.Namespace, it.Metadata.Name, ctr.Image, want)
				}
			}
		}
	}
	if len(seen) < 3 {
		t.Errorf("only %d images in the cluster's workloads: %v", len(seen), seen)
	}
}

// noDestruction fails the test for every resource an up deleted or replaced.
func noDestruction(t *testing.T, s *engine.Steps) {
	t.Helper()
	for _, op := range []apitype.OpType{apitype.OpDelete, apitype.OpReplace, apitype.OpCreateReplacement, apitype.OpDeleteReplaced} {
		if got := s.Of(op); len(got) > 0 {
			t.Errorf("%s: %v", op, got)
		}
	}
}

func available(o obj) bool {
	conds, _ := o.Status["conditions"].([]any)
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// kubeconfigField returns the first value of a kubeconfig field (YAML or JSON).
func kubeconfigField(kc, field string) string {
	for _, line := range strings.Split(kc, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

// dropOutput rewrites the stack's state without its output key, as a stack
// deployed before the program exported it has; it says whether there was one.
func dropOutput(ctx context.Context, t *testing.T, lab *engine.Lab, key string) bool {
	t.Helper()
	dep, err := lab.Stack.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(dep.Deployment, &d); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range d["resources"].([]any) {
		if m := r.(map[string]any); m["type"] == "pulumi:pulumi:Stack" {
			outs := m["outputs"].(map[string]any)
			_, found = outs[key]
			delete(outs, key)
		}
	}
	if dep.Deployment, err = json.Marshal(d); err != nil {
		t.Fatal(err)
	}
	if err := lab.Stack.Import(ctx, dep); err != nil {
		t.Fatal(err)
	}
	return found
}
