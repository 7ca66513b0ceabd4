package storage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/infra/storage"
	"github.com/simlab/simlab/tests/localcluster"
)

// objects returns the Kubernetes objects a storage run registers (the inputs
// of every kubernetes:<group>/<version>:<Kind> resource), and the keys of
// what is not a plain object: helm releases and the upstream CRD manifests,
// which the testdata CRDs stand in for.
func objects(t *testing.T, res *result) (objs []map[string]any, skipped []string) {
	t.Helper()
	for _, r := range res.rec.Resources() {
		if !r.Custom || !strings.HasPrefix(r.Type, "kubernetes:") || strings.HasPrefix(r.Type, "kubernetes:helm.sh/") || strings.HasPrefix(r.Type, "kubernetes:yaml/") {
			if strings.HasPrefix(r.Type, "kubernetes:") && r.Custom || r.Type == tConfigFile {
				skipped = append(skipped, r.Key())
			}
			continue
		}
		b, err := json.Marshal(r.Inputs.Mappable())
		if err != nil {
			t.Fatalf("%s: %v", r.Key(), err)
		}
		var o map[string]any
		if err := json.Unmarshal(b, &o); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return objs, skipped
}

func manifest(t *testing.T, objs []map[string]any) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
		buf.WriteString("\n")
	}
	return buf.Bytes()
}

func kindOf(o map[string]any) string { s, _ := o["kind"].(string); return s }

func nameOf(o map[string]any) string {
	md, _ := o["metadata"].(map[string]any)
	s, _ := md["name"].(string)
	return s
}

// installCRDs applies the testdata CRDs and waits until they are established.
func installCRDs(ctx context.Context, t *testing.T, c *localcluster.Cluster) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in testdata/crds (%v)", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(ctx, b); err != nil {
			t.Fatalf("installing %s: %v", f, err)
		}
	}
	if _, err := c.KubectlContext(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/cephclusters.ceph.rook.io", "crd/cephblockpools.ceph.rook.io",
		"crd/kafkas.kafka.strimzi.io", "crd/kafkanodepools.kafka.strimzi.io", "crd/kafkatopics.kafka.strimzi.io"); err != nil {
		t.Fatal(err)
	}
}

// dryRun server-side applies objs with --dry-run=server and returns kubectl's output.
func dryRun(ctx context.Context, c *localcluster.Cluster, objs []byte) (string, error) {
	return c.KubectlContext(ctx, bytes.NewReader(objs), "apply", "--server-side", "--dry-run=server",
		"--field-manager=simlab-storage-test", "-f", "-")
}

// TestClusterDryRunAcceptsStorageObjects runs the storage layer under the
// mock engine for several stack shapes, and has a real kube-apiserver accept
// every object it would create under server-side dry-run, against CRD
// schemas for the pinned Rook and Strimzi versions. Namespaces are created
// for real (namespaced dry-runs need them); nothing else is persisted.
func TestClusterDryRunAcceptsStorageObjects(t *testing.T) {
	c := localcluster.StartT(t, localcluster.Options{Nodes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	installCRDs(ctx, t, c)

	shapes := map[string]*storage.Args{}
	for _, n := range []int{1, 3, 10} {
		shapes[fmt.Sprintf("%d workers, in-cluster NFS on Ceph", n)] = baseArgs(n)
	}
	ext := baseArgs(2)
	ext.Storage.Ceph.Enabled, ext.Storage.NFS.Server, ext.Storage.NFS.Path = false, "nfs.example.internal", "/exports/datasets"
	shapes["no Ceph, external NFS"] = ext
	existing := baseArgs(2)
	existing.StorageNodes = nil
	shapes["existing mode (device filter)"] = existing

	t.Run("schemas refuse what upstream would", func(t *testing.T) { rejects(ctx, t, c) })

	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			objs, skipped := objects(t, run(t, shapes[name]))
			var namespaces, rest []map[string]any
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[kindOf(o)]++
				if kindOf(o) == "Namespace" {
					namespaces = append(namespaces, o)
				} else {
					rest = append(rest, o)
				}
			}
			if err := c.Apply(ctx, manifest(t, namespaces)); err != nil {
				t.Fatalf("creating namespaces: %v", err)
			}
			out, err := dryRun(ctx, c, manifest(t, rest))
			if err != nil {
				t.Fatalf("the API server rejected what the storage layer would create: %v", err)
			}
			for _, o := range rest {
				if !strings.Contains(out, "/"+nameOf(o)+" serverside-applied (server dry run)") {
					t.Errorf("%s %s not in the dry-run output:\n%s", kindOf(o), nameOf(o), out)
				}
			}
			for _, k := range []string{"Kafka", "KafkaNodePool", "KafkaTopic", "StorageClass", "PersistentVolume", "PersistentVolumeClaim"} {
				if kinds[k] == 0 {
					t.Errorf("no %s among the objects %v", k, kinds)
				}
			}
			t.Logf("accepted %d objects %v; not applied here (stood in for by testdata/crds or remote charts): %v", len(rest), kinds, skipped)
		})
	}
}

// rejects proves the CRD schemas bite: an unknown field, a value outside an
// enum and a wrong type are each refused, while the unmodified objects pass.
func rejects(ctx context.Context, t *testing.T, c *localcluster.Cluster) {
	objs, _ := objects(t, run(t, baseArgs(3)))
	var namespaces []map[string]any
	byKind := map[string]map[string]any{}
	for _, o := range objs {
		if kindOf(o) == "Namespace" {
			namespaces = append(namespaces, o)
		}
		byKind[kindOf(o)] = o
	}
	if err := c.Apply(ctx, manifest(t, namespaces)); err != nil {
		t.Fatal(err)
	}
	spec := func(o map[string]any) map[string]any { return o["spec"].(map[string]any) }
	bad := map[string]func() map[string]any{
		"unknown field in CephCluster": func() map[string]any {
			o := clone(t, byKind["CephCluster"])
			spec(o)["mon"].(map[string]any)["counts"] = 3
			return o
		},
		"confirmation outside its enum": func() map[string]any {
			o := clone(t, byKind["CephCluster"])
			spec(o)["cleanupPolicy"].(map[string]any)["confirmation"] = "yes"
			return o
		},
		"node pool role outside its enum": func() map[string]any {
			o := clone(t, byKind["KafkaNodePool"])
			spec(o)["roles"] = []any{"zookeeper"}
			return o
		},
		"listener type outside its enum": func() map[string]any {
			o := clone(t, byKind["Kafka"])
			spec(o)["kafka"].(map[string]any)["listeners"].([]any)[0].(map[string]any)["type"] = "plain"
			return o
		},
		"topic partitions as a string": func() map[string]any {
			o := clone(t, byKind["KafkaTopic"])
			spec(o)["partitions"] = "16"
			return o
		},
	}
	for name, mk := range bad {
		if out, err := dryRun(ctx, c, manifest(t, []map[string]any{mk()})); err == nil {
			t.Errorf("%s: accepted:\n%s", name, out)
		}
	}
	// And the unmodified objects pass, so the refusals above are the edits'.
	for _, k := range []string{"CephCluster", "KafkaNodePool", "Kafka", "KafkaTopic"} {
		if _, err := dryRun(ctx, c, manifest(t, []map[string]any{byKind[k]})); err != nil {
			t.Errorf("unmodified %s refused: %v", k, err)
		}
	}
}

func clone(t *testing.T, o map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
