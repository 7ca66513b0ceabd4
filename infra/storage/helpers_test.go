package storage_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/infra/storage"
)

// result is one storage layer run under Pulumi's mock engine.
type result struct {
	rec *pulumimock.Recorder
	// Outputs of the component.
	bootstrap, claim, blockClass string
}

// baseArgs is a libvirt-like stack with n workers and everything enabled.
func baseArgs(n int) *storage.Args {
	c := config.Default()
	c.Workers.Count = n
	c.Simulator.Sources = []config.SourceType{
		{Type: "pm-counters", Instances: 16, Protocol: "tcp"},
		{Type: "alarm-logs", Instances: 8, Protocol: "sftp"},
	}
	// Worker names simlab-worker-1..n (config.Nodes for libvirt).
	return withMirrored(storage.ArgsFor(&c, nil))
}

// withMirrored gives args the mirror's file names (mocks read no file).
func withMirrored(a *storage.Args) *storage.Args {
	a.Mirrored = fakeMirrored
	return a
}

// fakeMirrored are the paths infra would resolve from a mirror.
var fakeMirrored = storage.Mirrored{
	RookChart: "/mirror/charts/rook-ceph.tgz", RookCRDs: "/mirror/manifests/rook-crds.yaml",
	StrimziChart: "/mirror/charts/strimzi-kafka-operator.tgz", StrimziCRDs: "/mirror/manifests/strimzi-crds.yaml",
	CSIDriverNFSChart: "/mirror/charts/csi-driver-nfs.tgz",
}

// runErr registers the storage layer alone under the mock engine.
func runErr(args *storage.Args) (*result, error) {
	res := &result{}
	rec, err := pulumimock.Run("simlab", "test", func(ctx *pulumi.Context) error {
		s, err := storage.New(ctx, "storage", args)
		if err != nil {
			return err
		}
		// An exported output is awaited before the run ends.
		ctx.Export("outputs", pulumi.All(s.KafkaBootstrap, s.DatasetClaim, s.BlockStorageClass).ApplyT(func(xs []any) string {
			res.bootstrap, res.claim, res.blockClass = xs[0].(string), xs[1].(string), xs[2].(string)
			return ""
		}))
		return nil
	})
	res.rec = rec
	return res, err
}

func run(t *testing.T, args *storage.Args) *result {
	t.Helper()
	res, err := runErr(args)
	if err != nil {
		t.Fatalf("the storage layer did not run under mocks: %v", err)
	}
	return res
}

// one returns the only resource of typ, failing otherwise.
func one(t *testing.T, rec *pulumimock.Recorder, typ string) pulumimock.Resource {
	t.Helper()
	rs := rec.OfType(typ)
	if len(rs) != 1 {
		t.Fatalf("want exactly one %s, got %d", typ, len(rs))
	}
	return rs[0]
}

// named returns the resource of typ whose Kubernetes name (metadata.name or,
// for releases, name) is name.
func named(t *testing.T, rec *pulumimock.Recorder, typ, name string) pulumimock.Resource {
	t.Helper()
	var names []string
	for _, r := range rec.OfType(typ) {
		n := objName(r)
		if n == name {
			return r
		}
		names = append(names, n)
	}
	t.Fatalf("no %s named %q (have %v)", typ, name, names)
	return pulumimock.Resource{}
}

func objName(r pulumimock.Resource) string {
	m := r.Inputs.Mappable()
	if md, ok := m["metadata"].(map[string]any); ok {
		if s, ok := md["name"].(string); ok {
			return s
		}
	}
	if s, ok := m["name"].(string); ok {
		return s
	}
	return r.Name
}

// get walks a dotted path (numeric parts index arrays) in a resource's inputs.
func get(t *testing.T, r pulumimock.Resource, path string) any {
	t.Helper()
	var cur any = r.Inputs.Mappable()
	for _, p := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[p]
			if !ok {
				t.Fatalf("%s: no %q in %s (keys %v)", r.Key(), p, path, keys(c))
			}
			cur = v
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(c) {
				t.Fatalf("%s: bad index %q in %s (len %d)", r.Key(), p, path, len(c))
			}
			cur = c[i]
		default:
			t.Fatalf("%s: %s: %q is not an object or array", r.Key(), path, p)
		}
	}
	return cur
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// graph is the recorded dependency graph: resource key -> keys it depends on.
type graph struct {
	byURN map[string]string
	deps  map[string][]string
}

func newGraph(rec *pulumimock.Recorder) *graph {
	g := &graph{byURN: map[string]string{}, deps: map[string][]string{}}
	rs := rec.Resources()
	for _, r := range rs {
		// URNs end in <type>::<name>; types may be qualified by parents.
		g.byURN["::"+r.Type+"::"+r.Name] = r.Key()
	}
	for _, r := range rs {
		for _, d := range r.Dependencies {
			g.deps[r.Key()] = append(g.deps[r.Key()], g.key(d))
		}
	}
	return g
}

// key maps a URN to the resource key it names.
func (g *graph) key(urn string) string {
	for suffix, k := range g.byURN {
		typAndName := strings.TrimPrefix(suffix, "::")
		i := strings.Index(typAndName, "::")
		typ, name := typAndName[:i], typAndName[i+2:]
		if strings.HasSuffix(urn, "::"+name) && (strings.Contains(urn, "::"+typ+"::") || strings.Contains(urn, "$"+typ+"::")) {
			return k
		}
	}
	return urn
}

// reaches reports whether from depends on to, directly or transitively.
func (g *graph) reaches(from, to string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(k string) bool {
		if k == to {
			return true
		}
		if seen[k] {
			return false
		}
		seen[k] = true
		for _, d := range g.deps[k] {
			if walk(d) {
				return true
			}
		}
		return false
	}
	return walk(from)
}
