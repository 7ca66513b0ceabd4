package image_test

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/simlab/simlab/infra/image"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBuildIsReproducibleAndRuns builds the image twice (one digest), checks
// both platforms and the runtime config, and runs the binary taken out of the
// host platform's layer.
func TestBuildIsReproducibleAndRuns(t *testing.T) {
	root := moduleRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	o := image.Options{ModuleDir: root, Out: filepath.Join(dir, "a"), Ref: "ghcr.io/simlab/simulator:test"}
	a, err := image.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Out = filepath.Join(dir, "b")
	b, err := image.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Fatalf("two builds of one source: %s and %s", a.Digest, b.Digest)
	}

	lp, err := layout.FromPath(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	root0, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	rm, err := root0.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Manifests) != 1 || rm.Manifests[0].Digest != a.Digest ||
		rm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != o.Ref {
		t.Fatalf("layout's index.json: %+v, want the image index %s named %s", rm.Manifests, a.Digest, o.Ref)
	}
	idx, err := root0.ImageIndex(a.Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	arches := map[string]bool{}
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.OS != "linux" {
			t.Fatalf("manifest %s without a linux platform", m.Digest)
		}
		arches[m.Platform.Architecture] = true
	}
	if !arches["amd64"] || !arches["arm64"] || len(arches) != 2 {
		t.Fatalf("platforms %v, want amd64 and arm64", arches)
	}

	img, err := idx.Image(a.Platforms["linux/"+runtime.GOARCH])
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != image.User || strings.Join(cf.Config.Entrypoint, " ") != image.Entrypoint || cf.Architecture != runtime.GOARCH {
		t.Errorf("config: user %q entrypoint %v arch %s", cf.Config.User, cf.Config.Entrypoint, cf.Architecture)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != strings.TrimPrefix(image.Entrypoint, "/") || hdr.Mode&0o111 == 0 {
		t.Fatalf("layer's first entry %+v (%v), want the executable %s", hdr, err, image.Entrypoint)
	}
	bin := filepath.Join(dir, "simulator")
	f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, tr); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("the layer holds more than the binary (%v)", err)
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "simulator") {
		t.Fatalf("the image's binary does not run: %v\n%s", err, out)
	}
}

func TestBuildRefusesABadPlatform(t *testing.T) {
	_, err := image.Build(context.Background(), image.Options{ModuleDir: moduleRoot(t), Out: t.TempDir() + "/x", Platforms: []string{"amd64"}})
	if err == nil || !strings.Contains(err.Error(), `"amd64"`) {
		t.Fatalf("want the platform named: %v", err)
	}
}
