package workloads_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/infra/workloads"
)

func localStack(t *testing.T) *config.Loaded {
	t.Helper()
	l, err := config.LoadStackFile(filepath.Join("..", "..", "stacks", "Pulumi.local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// jsonRoundTrip normalises a value the way the engine sees it (numbers as float64).
func jsonRoundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestValuesFollowConfig(t *testing.T) {
	cfg := localStack(t).Config
	v := workloads.Values(cfg.Simulator, cfg.Versions, "kafka-bootstrap.kafka.svc:9092", "datasets-claim", testDigest)
	got := jsonRoundTrip(t, v).(map[string]any)
	want := jsonRoundTrip(t, map[string]any{
		"image": map[string]any{"repository": cfg.Simulator.Image, "tag": cfg.Versions.Simulator, "digest": testDigest},
		"kafka": map[string]any{"bootstrap": "kafka-bootstrap.kafka.svc:9092", "topicPrefix": "sim", "partitioning": "per-source",
			"keyedPartitions": 32},
		"dataset": map[string]any{"claimName": "datasets-claim", "path": "datasets/default"},
		"sut":     map[string]any{"address": "sut.simulator.svc:9000"},
		"sftp":    map[string]any{"passwordsSecret": "", "hostKeySecret": ""},
		"workers": map[string]any{"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 60, "scaleDownStabilizationSeconds": 300},
		"sources": []any{map[string]any{"type": "pm-counters", "instances": 6, "protocol": "tcp"}},
	})
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", "  ")
		wb, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("values\n%s\nwant\n%s", gb, wb)
	}
}

func TestValuesListEveryTypeInOrder(t *testing.T) {
	sim := config.Default().Simulator
	sim.Sources = []config.SourceType{
		{Type: "b", Instances: 3, Protocol: "sftp"}, {Type: "a", Instances: 1, Protocol: "tcp"},
	}
	v := workloads.Values(sim, config.DefaultVersions(), "k:9092", "c", "")
	src := v["sources"].([]any)
	if len(src) != 2 || src[0].(map[string]any)["type"] != "b" || src[1].(map[string]any)["protocol"] != "tcp" {
		t.Fatalf("sources = %v", src)
	}
}

func TestChartDirFindsTheRepositoryChart(t *testing.T) {
	dir, err := workloads.ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("chart file %s: %v", f, err)
		}
	}
}

// The chart's appVersion (its default image tag) must be the pinned
// simulator version: versions.go is the one place versions live.
func TestChartAppVersionIsThePinnedSimulatorVersion(t *testing.T) {
	dir, err := workloads.ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `yaml:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	if want := config.DefaultVersions().Simulator; chart.AppVersion != want {
		t.Errorf("charts/simulator/Chart.yaml appVersion %q, want %q (infra/config/versions.go)", chart.AppVersion, want)
	}
}

func TestChartDirFailsOutsideTheProject(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := workloads.ChartDir(); err == nil || !strings.Contains(err.Error(), "Pulumi.yaml") {
		t.Fatalf("want an error naming Pulumi.yaml, got %v", err)
	}
}

// testDigest stands for the digest of a built simulator image.
const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestMockLayerRegistersTheLocalChart runs the layer under Pulumi's mock
// engine: the local chart with exactly Values in the simulator's namespace,
// on the given provider, waiting for the layer's dependencies (the storage
// layer, which creates that namespace), and nothing else.
func TestMockLayerRegistersTheLocalChart(t *testing.T) {
	cfg := localStack(t).Config
	rec, err := pulumimock.Run("simlab", "local", func(ctx *pulumi.Context) error {
		prov, err := kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{})
		if err != nil {
			return err
		}
		upstream, err := kubernetes.NewProvider(ctx, "storage-stand-in", &kubernetes.ProviderArgs{})
		if err != nil {
			return err
		}
		_, err = workloads.New(ctx, "workloads", &workloads.Args{
			Provider: prov, Simulator: cfg.Simulator, Versions: cfg.Versions,
			KafkaBootstrap: pulumi.String("kafka:9092"),
			DatasetClaim:   pulumi.String("simulator-datasets").ToStringOutput(),
			ImageDigest:    testDigest,
		}, pulumi.DependsOn([]pulumi.Resource{upstream}))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var children []pulumimock.Resource
	for _, r := range rec.Resources() {
		if strings.Contains(r.Parent, "simlab:workloads:Workloads") {
			children = append(children, r)
		}
	}
	if len(children) != 1 || children[0].Type != "kubernetes:helm.sh/v4:Chart" {
		t.Fatalf("want exactly the chart under the layer, got %v", children)
	}
	chart := children[0]
	if got := chart.Inputs["chart"].StringValue(); got != workloads.ChartPath {
		t.Errorf("chart %q, want the local path %q", got, workloads.ChartPath)
	}
	if got := chart.Inputs["namespace"].StringValue(); got != cfg.Simulator.Namespace {
		t.Errorf("chart namespace %q, want %q", got, cfg.Simulator.Namespace)
	}
	if got := chart.Inputs["name"].StringValue(); got != workloads.ReleaseName {
		t.Errorf("release name %q", got)
	}
	got := jsonRoundTrip(t, chart.Inputs["values"].ObjectValue().Mappable())
	want := jsonRoundTrip(t, workloads.Values(cfg.Simulator, cfg.Versions, "kafka:9092", "simulator-datasets", testDigest))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("chart values %v\nwant %v", got, want)
	}
	if !strings.Contains(chart.Provider, "::k8s::") {
		t.Errorf("the chart must use the given provider, got %q", chart.Provider)
	}
	waits := false
	for _, d := range chart.Dependencies {
		waits = waits || strings.HasSuffix(d, "::storage-stand-in")
	}
	if !waits {
		t.Errorf("the chart must wait for the layer's dependencies, deps %v", chart.Dependencies)
	}
}

func TestMockLayerRejectsMissingStorageOutputs(t *testing.T) {
	cfg := localStack(t).Config
	_, err := pulumimock.Run("simlab", "local", func(ctx *pulumi.Context) error {
		_, err := workloads.New(ctx, "workloads", &workloads.Args{Simulator: cfg.Simulator, Versions: cfg.Versions})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "KafkaBootstrap and DatasetClaim") {
		t.Fatalf("want an error naming the missing inputs, got %v", err)
	}
}
