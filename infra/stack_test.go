package infra_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/ignition"
	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/tests/standin"
)

const fakePrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nTESTONLY-not-a-real-key-0123456789\n-----END OPENSSH PRIVATE KEY-----\n"

func loadStack(t *testing.T, name string) *config.Loaded {
	t.Helper()
	l, err := config.LoadStackFile(filepath.Join("..", "stacks", "Pulumi."+name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// As `pulumi up` would after `pulumi config set --secret simlab:sshPrivateKey`
	// and `simlab artifacts mirror` (here: a stand-in mirror with the
	// ignition test manifest's node artifacts).
	if l.Provider != config.ProviderExisting {
		l.SSHPrivateKey = fakePrivateKey
	}
	l.Artifacts.Dir = standin.MirrorT(t, "..")
	return l
}

func deployMock(t *testing.T, stack string, cfg *config.Loaded) *pulumimock.Recorder {
	t.Helper()
	rec, err := pulumimock.Run("simlab", stack, func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, cfg)
		return err
	}, withCommandOutputs)
	if err != nil {
		t.Fatalf("stack %s did not run to completion under mocks: %v", stack, err)
	}
	return rec
}

func TestMockEveryCommittedStackRunsToCompletion(t *testing.T) {
	files, _ := filepath.Glob("../stacks/Pulumi.*.yaml")
	if len(files) < 3 {
		t.Fatalf("expected the committed stacks, found %v", files)
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml")
		t.Run(name, func(t *testing.T) {
			cfg := loadStack(t, name)
			rec := deployMock(t, name, cfg)
			if len(rec.Resources()) == 0 {
				t.Fatal("no resources registered")
			}
		})
	}
}

func TestMockGraphHasLayersAndNodes(t *testing.T) {
	cases := map[string]struct {
		layers []string
		absent []string
		nodes  []string
	}{
		"dev": {
			layers: []string{"simlab:nodes:Nodes", "simlab:cluster:Cluster", "simlab:storage:Storage", "simlab:workloads:Workloads", "pulumi:providers:kubernetes"},
			nodes:  []string{"dev-controller-1", "dev-worker-1", "dev-worker-2"},
		},
		"lab": {
			layers: []string{"simlab:nodes:Nodes", "simlab:cluster:Cluster", "simlab:storage:Storage", "simlab:workloads:Workloads"},
			nodes:  []string{"lab-controller-1", "lab-worker-1", "lab-worker-2", "lab-worker-3", "lab-worker-4", "lab-worker-5", "lab-worker-6"},
		},
		"local": {
			layers: []string{"simlab:storage:Storage", "simlab:workloads:Workloads", "pulumi:providers:kubernetes"},
			absent: []string{"simlab:nodes:Nodes", "simlab:cluster:Cluster", "simlab:nodes:Node"},
		},
	}
	for stack, want := range cases {
		t.Run(stack, func(t *testing.T) {
			rec := deployMock(t, stack, loadStack(t, stack))
			for _, typ := range want.layers {
				if len(rec.OfType(typ)) != 1 {
					t.Errorf("want exactly one %s, got %d", typ, len(rec.OfType(typ)))
				}
			}
			for _, typ := range want.absent {
				if n := len(rec.OfType(typ)); n != 0 {
					t.Errorf("%s must be skipped in existing mode, got %d", typ, n)
				}
			}
			var got []string
			for _, n := range rec.OfType("simlab:nodes:Node") {
				got = append(got, n.Name)
				if !strings.Contains(n.Parent, "simlab:nodes:Nodes") {
					t.Errorf("node %s must be parented to the nodes layer, parent %q", n.Name, n.Parent)
				}
			}
			if strings.Join(got, ",") != strings.Join(want.nodes, ",") {
				t.Errorf("nodes %v, want %v", got, want.nodes)
			}
		})
	}
}

// descendants returns the custom resources whose parent chain contains layerType.
func descendants(rec *pulumimock.Recorder, layerType string) []pulumimock.Resource {
	var out []pulumimock.Resource
	for _, r := range rec.Resources() {
		if r.Custom && strings.Contains(r.Parent, layerType) {
			out = append(out, r)
		}
	}
	return out
}

// urnKey turns a URN into a recorded resource's key (type::name).
func urnKey(urn string) string {
	parts := strings.Split(urn, "::")
	if len(parts) < 2 {
		return urn
	}
	chain := parts[len(parts)-2]
	typ := chain[strings.LastIndex(chain, "$")+1:]
	return typ + "::" + parts[len(parts)-1]
}

// reachable returns every resource key reachable from r through dependencies.
func reachable(rec *pulumimock.Recorder, r pulumimock.Resource) map[string]bool {
	byKey := map[string]pulumimock.Resource{}
	for _, x := range rec.Resources() {
		byKey[x.Key()] = x
	}
	seen := map[string]bool{}
	var walk func(x pulumimock.Resource)
	walk = func(x pulumimock.Resource) {
		for _, d := range x.Dependencies {
			k := urnKey(d)
			if !seen[k] {
				seen[k] = true
				walk(byKey[k])
			}
		}
	}
	walk(r)
	return seen
}

// A layer depends on the one below it when every custom resource of the
// lower layer is reachable through its dependencies, so destroy removes it
// first: the storage and workloads components depend on the layer below as
// a whole; the cluster layer's steps each on the nodes they run on (a
// worker's settle step must not wait for the next worker: the roll), so
// the union of its children's dependencies reaches every node's resources.
func TestMockLayersDependDownward(t *testing.T) {
	for _, stack := range []string{"dev", "local"} {
		rec := deployMock(t, stack, loadStack(t, stack))
		check := func(layer, on string) {
			comps := rec.OfType(layer)
			if len(comps) != 1 {
				t.Fatalf("%s: want one %s", stack, layer)
			}
			deps := reachable(rec, comps[0])
			if layer == "simlab:cluster:Cluster" {
				for _, child := range descendants(rec, layer) {
					for k := range reachable(rec, child) {
						deps[k] = true
					}
				}
			}
			for _, up := range descendants(rec, on) {
				// A provider is ordered by the engine through the provider
				// reference of every resource it manages, not by DependsOn.
				if strings.HasPrefix(up.Type, "pulumi:providers:") {
					continue
				}
				if !deps[up.Key()] {
					t.Errorf("%s: %s must depend on %s (part of %s)", stack, layer, up.Key(), on)
				}
			}
		}
		if stack != "local" {
			check("simlab:cluster:Cluster", "simlab:nodes:Nodes")
			check("simlab:storage:Storage", "simlab:cluster:Cluster")
			for _, d := range rec.OfType("simlab:nodes:Nodes")[0].Dependencies {
				t.Errorf("the nodes layer must not depend on anything, depends on %s", d)
			}
		}
		check("simlab:workloads:Workloads", "simlab:storage:Storage")
	}
}

// Scaling workers up adds exactly the new workers' resources and resizes
// Ceph; every other resource, existing workers and storage included, keeps
// its inputs (pulumimock.Diff compares them all).
func TestMockScalingWorkersChangesOnlyWorkerResources(t *testing.T) {
	small := loadStack(t, "dev")
	large := loadStack(t, "dev")
	large.Workers.Count = 50
	large.Artifacts.Dir = small.Artifacts.Dir // one mirror, as in one project
	a := runForPlan(t, small)
	b := runForPlan(t, large)
	plan := pulumimock.Diff(a, b)

	var want []string
	for i := 3; i <= 50; i++ {
		w := fmt.Sprintf("dev-worker-%d", i)
		want = append(want, nodeResources(w)...)
		want = append(want, joinResources(w)...)
		want = append(want, drainedStep(w)...)
		want = append(want, upgradeStep(w)...)
		want = append(want, cephOSD(w)...)
	}
	if got, exp := plan.Names(pulumimock.OpCreate), sortedUnique(want); strings.Join(got, " ") != strings.Join(exp, " ") {
		t.Errorf("created %d resources %v,\nwant the %d of the new workers", len(got), got, len(exp))
	}
	// The storage layer sizes Ceph from the worker count on purpose (and
	// its guard records the new sizing).
	if got := plan.Names(pulumimock.OpUpdate); strings.Join(got, " ") != "storage-ceph-cluster storage-ceph-guard storage-ceph-pool storage-ceph-pool-mgr" {
		t.Errorf("updated %v, want only the CephCluster, its pools and its guard", got)
	}
	if got := append(plan.Names(pulumimock.OpReplace), plan.Names(pulumimock.OpDelete)...); len(got) > 0 {
		t.Errorf("scaling workers up replaced or deleted %v", got)
	}
	if n := len(b.OfType("simlab:nodes:Node")) - len(a.OfType("simlab:nodes:Node")); n != 48 {
		t.Errorf("want 48 more nodes, got %d", n)
	}
}

func TestMockPrivateKeyNeverInPlainText(t *testing.T) {
	for _, stack := range []string{"dev", "lab"} {
		rec := deployMock(t, stack, loadStack(t, stack))
		if hits := rec.FindPlain("TESTONLY-not-a-real-key"); len(hits) > 0 {
			t.Errorf("%s: private key in plain-text inputs at %v", stack, hits)
		}
	}
}

func TestMockExistingModeUsesKubeconfigPath(t *testing.T) {
	cfg := loadStack(t, "local")
	cfg.Existing.Kubeconfig = "/tmp/simlab-test/kubeconfig"
	cfg.Existing.Context = "kind-lab"
	rec := deployMock(t, "local", cfg)
	p, ok := rec.Find("pulumi:providers:kubernetes", "k8s")
	if !ok {
		t.Fatal("no kubernetes provider")
	}
	if got := p.Inputs["kubeconfig"]; !got.IsString() || got.StringValue() != "/tmp/simlab-test/kubeconfig" {
		t.Errorf("provider kubeconfig = %v, want the configured path", got)
	}
	if got := p.Inputs["context"]; !got.IsString() || got.StringValue() != "kind-lab" {
		t.Errorf("provider context = %v", got)
	}
}

// pulumiConfigFromStack turns a stack file into the engine's PULUMI_CONFIG map.
func pulumiConfigFromStack(t *testing.T, name string) map[string]string {
	t.Helper()
	l := loadStack(t, name)
	raw, err := json.Marshal(l.Config)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range top {
		var s string
		if json.Unmarshal(v, &s) == nil {
			out["simlab:"+k] = s
		} else {
			out["simlab:"+k] = string(v)
		}
	}
	return out
}

func TestMockBuildReadsEngineConfig(t *testing.T) {
	cfg := pulumiConfigFromStack(t, "dev")
	buf, _ := json.Marshal(cfg)
	t.Setenv("PULUMI_CONFIG", string(buf))
	t.Setenv("PULUMI_CONFIG_SECRET_KEYS", `["simlab:sshPrivateKey"]`)
	rec, err := pulumimock.Run("simlab", "dev", infra.Build, withCommandOutputs)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if n := len(rec.OfType("simlab:nodes:Node")); n != 3 {
		t.Fatalf("want 3 nodes from the engine's config, got %d", n)
	}
}

func TestMockBuildRejectsUnknownKeyNamingIt(t *testing.T) {
	cfg := pulumiConfigFromStack(t, "dev")
	cfg["simlab:wrokers"] = `{"count":3}`
	buf, _ := json.Marshal(cfg)
	t.Setenv("PULUMI_CONFIG", string(buf))
	_, err := pulumimock.Run("simlab", "dev", infra.Build)
	if err == nil || !strings.Contains(err.Error(), `simlab:wrokers: unknown key; did you mean "workers"?`) {
		t.Fatalf("want the typo named, got %v", err)
	}
}

// withCommandOutputs makes mocked commands print what the real ones would
// (a kubeconfig, DHCP leases, ...).
var withCommandOutputs = pulumimock.WithState(pulumimock.CommandOutputs)

func TestMain(m *testing.M) {
	// Tests must not pick up a developer's real key through ssh.privateKeyPath.
	os.Setenv("HOME", os.TempDir())
	os.Exit(m.Run())
}

func TestMockMissingKeyFileIsNamed(t *testing.T) {
	cfg := loadStack(t, "dev")
	cfg.SSHPrivateKey = ""
	cfg.SSH.PrivateKeyPath = filepath.Join(t.TempDir(), "absent_ed25519")
	_, err := pulumimock.Run("simlab", "dev", func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, cfg)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "simlab:ssh.privateKeyPath") || !strings.Contains(err.Error(), "absent_ed25519") {
		t.Fatalf("want the missing key file named with its key, got %v", err)
	}
}

// TestMockChartsAndManifestsComeFromTheMirror: every chart and manifest the
// program applies is a local file of the stack's artifact mirror, never a URL.
func TestMockChartsAndManifestsComeFromTheMirror(t *testing.T) {
	for _, name := range []string{"dev", "lab", "local"} {
		t.Run(name, func(t *testing.T) {
			cfg := loadStack(t, name)
			dir := cfg.Artifacts.Dir
			rec := deployMock(t, name, cfg)
			n := 0
			for _, r := range rec.Resources() {
				var key string
				switch r.Type {
				case "kubernetes:helm.sh/v4:Chart":
					if r.Name == "workloads-simulator" {
						continue // the repo's own chart (charts/simulator)
					}
					key = "chart"
				case "kubernetes:yaml/v2:ConfigFile":
					key = "file"
				default:
					continue
				}
				v := r.Inputs[resource.PropertyKey(key)]
				if !v.IsString() || !strings.HasPrefix(v.StringValue(), dir+string(filepath.Separator)) {
					t.Errorf("%s %s: %s is %v, want a file under the mirror %s", r.Type, r.Name, key, v, dir)
				}
				n++
			}
			if n == 0 {
				t.Fatal("no chart or manifest registered")
			}
		})
	}
}

func TestMockMirrorProblemsAreNamedBeforeAnythingRegisters(t *testing.T) {
	cfg := loadStack(t, "local")
	m, err := artifacts.LoadManifest(cfg.Artifacts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	delete(m.Artifacts, artifacts.ChartCSIDriverNFS)
	if err := m.Write(cfg.Artifacts.Dir); err != nil {
		t.Fatal(err)
	}
	cfg.Versions.Strimzi = "0.49.0" // the mirror was made for 0.48.0
	var registered int
	_, err = pulumimock.Run("simlab", "local", func(ctx *pulumi.Context) error {
		st, err := infra.Deploy(ctx, cfg)
		if st != nil {
			registered++
		}
		return err
	})
	if err == nil {
		t.Fatal("a stack whose mirror lacks its charts deployed")
	}
	for _, want := range []string{artifacts.ChartCSIDriverNFS, "strimzi-kafka-operator-0.48.0.tgz", "0.49.0", "simlab artifacts mirror"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	if registered != 0 {
		t.Error("the stack registered resources before refusing")
	}
}

// TestMockSimulatorRunsTheMirroredImageByDigest: the chart gets the digest of
// the image in the mirror, and a mirror without it is refused by name.
func TestMockSimulatorRunsTheMirroredImageByDigest(t *testing.T) {
	cfg := loadStack(t, "local")
	rec := deployMock(t, "local", cfg)
	var charts []pulumimock.Resource
	for _, c := range rec.OfType("kubernetes:helm.sh/v4:Chart") {
		if c.Name == "workloads-simulator" {
			charts = append(charts, c)
		}
	}
	if len(charts) != 1 {
		t.Fatalf("want the simulator chart, got %d", len(charts))
	}
	img := charts[0].Inputs["values"].ObjectValue()["image"].ObjectValue()
	if got := img["digest"].StringValue(); got != standin.ImageDigest {
		t.Errorf("chart image digest %q, want the mirror's %s", got, standin.ImageDigest)
	}
	if err := os.RemoveAll(filepath.Join(cfg.Artifacts.Dir, artifacts.ImagesDir)); err != nil {
		t.Fatal(err)
	}
	_, err := pulumimock.Run("simlab", "local", func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, cfg)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "ghcr.io/simlab/simulator:") || !strings.Contains(err.Error(), "simlab image build") {
		t.Fatalf("want the missing image named with the command that builds it: %v", err)
	}
}

// TestMockServedIgnitionIsWhatUpRenders: `simlab artifacts serve` and
// `simlab artifacts ignition` render a node from config.Nodes() and the
// mirror's manifest; `pulumi up` hands each libvirt domain its Ignition
// through the node's -ignition command. For static-IP libvirt nodes (whose
// NetworkManager keyfile names the NIC's MAC) the two must be byte for byte
// the same, so one owner computes the MAC (config.LibvirtMAC).
func TestMockServedIgnitionIsWhatUpRenders(t *testing.T) {
	cfg := loadStack(t, "dev")
	worker := cfg.NodesByRole(config.RoleWorker)[0].Name
	cfg.Libvirt.Addresses = map[string]string{worker: "192.168.122.50"}
	cfg.Libvirt.Gateway, cfg.Libvirt.Nameservers = "192.168.122.1", []string{"192.168.122.1"}
	m, err := artifacts.LoadManifest(cfg.Artifacts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := deployMock(t, "dev", cfg)
	for _, n := range cfg.Nodes() {
		served, err := ignition.RenderNode(&cfg.Config, n, m)
		if err != nil {
			t.Fatal(err)
		}
		cmd, ok := rec.Find("command:remote:Command", n.Name+"-ignition")
		if !ok {
			t.Fatalf("no %s-ignition command", n.Name)
		}
		if up := pulumimock.String(cmd.Inputs, "stdin"); up != string(served) {
			t.Errorf("%s: the Ignition `pulumi up` gives the domain differs from what the artifact server serves", n.Name)
		}
	}
}

// TestMockPreviousDeploymentDecidesTheAdoption: the program reads its own
// previous deployment through a StackReference to the stack itself, and
// reads (adopts) the storage Releases only when that deployment had them: a
// stack deployed before the storageCharts output, or one that recorded
// Releases. A stack never deployed, or one with Charts, reads none.
func TestMockPreviousDeploymentDecidesTheAdoption(t *testing.T) {
	cfg := loadStack(t, "local")
	obj := func(m map[string]any) resource.PropertyMap { return resource.NewPropertyMapFromMap(m) }
	for _, tc := range []struct {
		name    string
		outputs resource.PropertyMap
		reads   []string
	}{
		{"never deployed", nil, nil},
		{"deployed before storageCharts", obj(map[string]any{"provider": "existing"}), []string{"kafka/strimzi", "simlab-nfs/csi-driver-nfs"}},
		{"Releases recorded", obj(map[string]any{"provider": "existing", "storageCharts": map[string]any{"kind": "helm.sh/v3:Release", "releases": []any{"kafka/strimzi"}}}), []string{"kafka/strimzi"}},
		{"Charts recorded", obj(map[string]any{"provider": "existing", "storageCharts": map[string]any{"kind": "helm.sh/v4:Chart", "releases": []any{}}}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var refName string
			rec, err := pulumimock.Run("simlab", "local", func(ctx *pulumi.Context) error {
				_, err := infra.Deploy(ctx, cfg)
				return err
			}, pulumimock.WithState(func(args pulumi.MockResourceArgs) resource.PropertyMap {
				if args.TypeToken != "pulumi:pulumi:StackReference" {
					return nil
				}
				refName = args.Inputs["name"].StringValue()
				if tc.outputs == nil {
					return nil
				}
				return resource.PropertyMap{"outputs": resource.NewObjectProperty(tc.outputs)}
			}))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(refName, "/simlab/local") {
				t.Errorf("the StackReference reads %q, want the stack itself (.../simlab/local)", refName)
			}
			var reads []string
			for _, r := range rec.OfType("kubernetes:helm.sh/v3:Release") {
				if r.ReadID == "" {
					t.Errorf("Release %s registered, want only reads", r.Name)
				}
				reads = append(reads, r.ReadID)
			}
			sort.Strings(reads)
			if strings.Join(reads, " ") != strings.Join(tc.reads, " ") {
				t.Errorf("Releases read %v, want %v", reads, tc.reads)
			}
		})
	}
}
