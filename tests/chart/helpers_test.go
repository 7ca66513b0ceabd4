package chart_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"

	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/infra/workloads"
	"github.com/simlab/simlab/tests/localcluster"
	"github.com/simlab/simlab/tests/standin"
)

var (
	shared     *localcluster.Cluster
	sharedErr  error
	sharedOnce sync.Once
)

func TestMain(m *testing.M) {
	// Nothing here may read a developer's real SSH key or Helm configuration.
	home, err := os.MkdirTemp("", "simlab-chart-test-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("HOME", home)
	for _, v := range []string{"HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"} {
		os.Setenv(v, filepath.Join(home, strings.ToLower(v)))
	}
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the local control plane: %v\n", err)
			code = 1
		}
	}
	os.RemoveAll(home)
	os.Exit(code)
}

// cluster returns the package's local control plane, started on first use
// (3 simulated nodes, metrics API ready) and stopped by TestMain. The live
// tests share it; each uses its own namespace.
func cluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	localcluster.RequireBinaries(t)
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared, sharedErr = localcluster.Start(ctx, localcluster.Options{Nodes: 3, WaitForMetrics: true})
	})
	if sharedErr != nil {
		t.Fatalf("starting the local control plane: %v", sharedErr)
	}
	return shared
}

// stacks lists the committed stacks by name.
func stacks(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "stacks", "Pulumi.*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("expected the committed stacks, found %v (%v)", files, err)
	}
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml"))
	}
	return out
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := workloads.ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(dir))
}

func loadStack(t *testing.T, name string) *config.Loaded {
	t.Helper()
	l, err := config.LoadStackFile(filepath.Join(repoRoot(t), "stacks", "Pulumi."+name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// release is a chart the program installs, as registered.
type release struct {
	Chart, Name, Namespace string
	Values                 map[string]any
}

// program is what the Pulumi program registers for a stack under the mock
// engine: the charts it installs and the plain Kubernetes objects.
type program struct {
	Releases []release
	// Objects are the inputs of every kubernetes:<group>/<version>:<Kind> resource.
	Objects []map[string]any
	// Other are kubernetes:* resources that are neither (e.g. remote charts).
	Other []string
}

// runProgram runs infra.Deploy for cfg under Pulumi's mock engine. A libvirt
// or metal stack runs as if in existing mode: the chart's values come from the
// storage and workloads layers alone. The charts and manifests come from a
// stand-in mirror (tests/standin).
func runProgram(t *testing.T, stack string, cfg *config.Loaded) program {
	t.Helper()
	if cfg.Provider != config.ProviderExisting {
		c := *cfg
		c.Provider = config.ProviderExisting
		c.Existing = &config.Existing{Kubeconfig: "/nonexistent/kubeconfig"}
		if c.SSHPrivateKey == "" {
			// The stack's key seeds the SFTP host key; the file is not on this machine.
			c.SSHPrivateKey = "stand-in SSH key"
		}
		cfg = &c
	}
	c := *cfg
	c.Artifacts.Dir = standin.MirrorT(t, filepath.Join("..", ".."))
	cfg = &c
	rec, err := pulumimock.Run("simlab", stack, func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, cfg)
		return err
	})
	if err != nil {
		t.Fatalf("stack %s under mocks: %v", stack, err)
	}
	var p program
	for _, r := range rec.Resources() {
		if !strings.HasPrefix(r.Type, "kubernetes:") {
			continue
		}
		m := pulumimock.Reveal(resource.NewObjectProperty(r.Inputs)).ObjectValue().Mappable()
		switch {
		case r.Type == "kubernetes:helm.sh/v4:Chart":
			rel := release{Name: r.Name}
			rel.Chart, _ = m["chart"].(string)
			if s, ok := m["name"].(string); ok {
				rel.Name = s
			}
			rel.Namespace, _ = m["namespace"].(string)
			rel.Values, _ = m["values"].(map[string]any)
			p.Releases = append(p.Releases, rel)
		case r.Custom && !strings.HasPrefix(r.Type, "kubernetes:helm.sh/") && !strings.HasPrefix(r.Type, "kubernetes:yaml/"):
			obj := jsonCopy(t, m).(map[string]any)
			md, _ := obj["metadata"].(map[string]any)
			if md == nil {
				md = map[string]any{}
				obj["metadata"] = md
			}
			if md["name"] == nil {
				// The provider would auto-name it from the resource name.
				md["name"] = r.Name
			}
			p.Objects = append(p.Objects, obj)
		default:
			p.Other = append(p.Other, r.Key())
		}
	}
	return p
}

// simulatorRelease returns the program's release of the simulator chart.
func (p program) simulatorRelease(t *testing.T) release {
	t.Helper()
	for _, r := range p.Releases {
		if r.Chart == workloads.ChartPath {
			return r
		}
	}
	t.Fatalf("the program installs no chart from %s (releases: %v)", workloads.ChartPath, p.Releases)
	return release{}
}

func jsonCopy(t *testing.T, v any) any {
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

// helm runs the pinned helm binary with args and returns stdout; the error
// carries stderr.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := localcluster.RequireBinaries(t).Helm
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// valuesFile writes values as JSON (valid YAML) for `helm -f`.
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	b, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "values.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// renderErr renders the chart with values as release name in namespace.
func renderErr(t *testing.T, name, namespace string, values map[string]any, extra ...string) ([]map[string]any, error) {
	t.Helper()
	dir, err := workloads.ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"template", name, dir, "--namespace", namespace, "-f", valuesFile(t, values)}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		return nil, err
	}
	return parseManifests(t, out), nil
}

func render(t *testing.T, name, namespace string, values map[string]any) []map[string]any {
	t.Helper()
	objs, err := renderErr(t, name, namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func parseManifests(t *testing.T, s string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(s))
	var out []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered manifest is not YAML: %v", err)
		}
		if doc != nil {
			out = append(out, jsonCopy(t, doc).(map[string]any))
		}
	}
	return out
}

// manifest joins objects into one YAML stream (JSON documents) for kubectl.
func manifest(t *testing.T, objs []map[string]any) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, o := range objs {
		j, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(j)
		b.WriteString("\n")
	}
	return b.Bytes()
}

// get walks a decoded object along keys (map keys or list indexes as ints).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string { s, _ := get(v, path...).(string); return s }

// num returns a number as int (-1 when absent).
func num(v any, path ...any) int {
	if f, ok := get(v, path...).(float64); ok {
		return int(f)
	}
	return -1
}

// byKind indexes objects by "Kind/name".
func byKind(objs []map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range objs {
		out[str(o, "kind")+"/"+str(o, "metadata", "name")] = o
	}
	return out
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// with returns a deep copy of values with one dotted key set.
func with(t *testing.T, values map[string]any, key string, v any) map[string]any {
	t.Helper()
	out := jsonCopy(t, values).(map[string]any)
	parts := strings.Split(key, ".")
	m := out
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = jsonCopy(t, v)
	return out
}
