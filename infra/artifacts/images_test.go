package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry is an upstream registry in the test process (go-containerregistry's
// pkg/registry) that can corrupt or truncate one blob.
type testRegistry struct {
	srv  *httptest.Server
	host string
	mu   sync.Mutex
	bad  map[string]string // blob digest -> "corrupt" | "truncate"
}

func newTestRegistry(t *testing.T) *testRegistry {
	r := &testRegistry{bad: map[string]string{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		mode := ""
		for d, m := range r.bad {
			if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+d) {
				mode = m
			}
		}
		r.mu.Unlock()
		if mode == "" {
			reg.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if mode == "corrupt" {
			body = append([]byte(nil), body...)
			body[len(body)/2] ^= 0xff
		} else {
			// Claim the whole length, send half: the connection ends early.
			w.WriteHeader(rec.Code)
			w.Write(body[:len(body)/2])
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// platformImage is a small random image whose config says os/arch.
func platformImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// pushIndex pushes a linux/amd64 + linux/arm64 index as repo:tag.
func (r *testRegistry) pushIndex(t *testing.T, repoTag string) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	imgs := map[string]v1.Image{"amd64": platformImage(t, "amd64"), "arm64": platformImage(t, "arm64")}
	idx := v1.ImageIndex(empty.Index)
	for _, a := range []string{"amd64", "arm64"} {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: imgs[a],
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: a}}})
	}
	ref, err := name.ParseReference(r.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	return idx, imgs
}

// pushImage pushes a single-platform image as repo:tag.
func (r *testRegistry) pushImage(t *testing.T, repoTag, arch string) v1.Image {
	t.Helper()
	img := platformImage(t, arch)
	ref, err := name.ParseReference(r.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return img
}

func (r *testRegistry) registries() map[string]string {
	out := map[string]string{}
	for _, u := range UpstreamRegistries {
		out[u.Host] = r.srv.URL
	}
	return out
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func imageOpts(dir string, r *testRegistry, refs ...string) MirrorOptions {
	o := MirrorOptions{Dir: dir, Arch: "amd64", Registries: r.registries(), Log: io.Discard}
	for _, ref := range refs {
		o.Images = append(o.Images, ImageRequest{Ref: ref, From: "test"})
	}
	return o
}

func TestImagesMirrorServePullByTagAndDigest(t *testing.T) {
	up := newTestRegistry(t)
	idx, imgs := up.pushIndex(t, "ceph/ceph:v19.2.3")
	single := up.pushImage(t, "sig-storage/nfsplugin:v4.12.1", "amd64")
	dir := t.TempDir()
	o := imageOpts(dir, up, "quay.io/ceph/ceph:v19.2.3", "registry.k8s.io/sig-storage/nfsplugin:v4.12.1")
	got, err := mirrorImages(context.Background(), o, o.Images)
	if err != nil {
		t.Fatal(err)
	}
	ceph := got["quay.io/ceph/ceph:v19.2.3"]
	if ceph.Digest != digestOf(t, idx) || strings.Join(ceph.Platforms, ",") != "linux/amd64" || ceph.Layout != "images/quay.io_ceph_ceph" {
		t.Errorf("ceph recorded as %+v, want the index digest %s, linux/amd64 only, images/quay.io_ceph_ceph", ceph, digestOf(t, idx))
	}
	if nfs := got["registry.k8s.io/sig-storage/nfsplugin:v4.12.1"]; nfs.Digest != digestOf(t, single) {
		t.Errorf("nfsplugin digest %s, want %s", nfs.Digest, digestOf(t, single))
	}
	// Serve the mirror and pull through it with a real registry client.
	reg, err := NewRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	byTag, _ := name.ParseReference(host + "/ceph/ceph:v19.2.3")
	desc, err := remote.Get(byTag)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != digestOf(t, idx) {
		t.Errorf("pulled by tag: digest %s, want upstream's %s", desc.Digest, digestOf(t, idx))
	}
	// The lab's platform, by digest, with every layer intact.
	amd, _ := name.ParseReference(host + "/ceph/ceph@" + digestOf(t, imgs["amd64"]))
	img, err := remote.Image(amd)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers %v, %v", layers, err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("layer through the mirror: %v", err)
		}
		rc.Close()
	}
	// The other platform was not mirrored.
	arm, _ := name.ParseReference(host + "/ceph/ceph@" + digestOf(t, imgs["arm64"]))
	if _, err := remote.Image(arm); err == nil {
		t.Error("linux/arm64 pulled from an amd64 lab's mirror")
	}
}

func TestImagesCorruptOrTruncatedBlobLeavesNothingPartial(t *testing.T) {
	for _, mode := range []string{"corrupt", "truncate"} {
		t.Run(mode, func(t *testing.T) {
			up := newTestRegistry(t)
			_, imgs := up.pushIndex(t, "strimzi/kafka:0.48.0-kafka-4.1.0")
			dir := t.TempDir()
			o := imageOpts(dir, up, "quay.io/strimzi/kafka:0.48.0-kafka-4.1.0")
			// A good mirror first: a failed refresh must keep it.
			if _, err := mirrorImages(context.Background(), o, o.Images); err != nil {
				t.Fatal(err)
			}
			layout := filepath.Join(dir, ImagesDir, "quay.io_strimzi_kafka")
			before := listFiles(t, layout)
			// Upstream now holds a new image whose first layer arrives damaged.
			_, imgs = up.pushIndex(t, "strimzi/kafka:0.48.0-kafka-4.1.0")
			layers, _ := imgs["amd64"].Layers()
			d, _ := layers[0].Digest()
			up.mu.Lock()
			up.bad[d.String()] = mode
			up.mu.Unlock()
			_, err := mirrorImages(context.Background(), o, o.Images)
			if err == nil || !strings.Contains(err.Error(), "quay.io/strimzi/kafka:0.48.0-kafka-4.1.0") {
				t.Fatalf("mirror of a %s blob: %v, want an error naming the image", mode, err)
			}
			if after := listFiles(t, layout); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("the previous layout changed:\nbefore %v\nafter  %v", before, after)
			}
			if parts, _ := filepath.Glob(filepath.Join(dir, ImagesDir, "*.part")); len(parts) > 0 {
				t.Errorf("partial layouts left: %v", parts)
			}
		})
	}
}

func TestImagesRefusesAnImageWithoutTheLabsPlatform(t *testing.T) {
	up := newTestRegistry(t)
	up.pushImage(t, "rook/ceph:v1.18.6", "arm64")
	dir := t.TempDir()
	o := imageOpts(dir, up, "docker.io/rook/ceph:v1.18.6")
	_, err := mirrorImages(context.Background(), o, o.Images)
	if err == nil || !strings.Contains(err.Error(), "linux/arm64, not linux/amd64") {
		t.Fatalf("got %v, want a refusal naming both platforms", err)
	}
	if files := listFiles(t, filepath.Join(dir, ImagesDir)); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}

// chartTgz writes a chart .tgz with the given values.yaml.
func chartTgz(t *testing.T, chart, appVersion, values string) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct{ name, body string }{
		{chart + "/Chart.yaml", fmt.Sprintf("apiVersion: v2\nname: %s\nversion: 1.0.0\nappVersion: %q\n", chart, appVersion)},
		{chart + "/values.yaml", values},
		{chart + "/charts/sub/values.yaml", "image: {repository: not/this, tag: x}\n"},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	gz.Close()
	p := filepath.Join(t.TempDir(), chart+".tgz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChartImagesReadsTheUpstreamValueStyles(t *testing.T) {
	for _, c := range []struct {
		name, appVersion, values string
		want                     []string
	}{
		{"rook-style", "v1.18.6", `
image:
  repository: docker.io/rook/ceph
csi:
  cephcsi:
    repository: quay.io/cephcsi/cephcsi
    tag: v3.15.0
  registrar:
    repository: registry.k8s.io/sig-storage/csi-node-driver-registrar
# commented:   repository: quay.io/not/this
`, []string{"docker.io/rook/ceph:v1.18.6", "quay.io/cephcsi/cephcsi:v3.15.0"}},
		{"strimzi-style", "0.48.0", `
defaultImageRegistry: quay.io
defaultImageRepository: strimzi
defaultImageTag: 0.48.0
image:
  registry: ""
  repository: ""
  name: operator
  tag: ""
kafkaBridge:
  image:
    registry: ""
    repository: ""
    name: kafka-bridge
    tag: 0.33.1
`, []string{"quay.io/strimzi/kafka-bridge:0.33.1", "quay.io/strimzi/operator:0.48.0"}},
		{"csi-driver-nfs-style", "v4.12.1", `
image:
  nfs:
    repository: registry.k8s.io/sig-storage/nfsplugin
    tag: v4.12.1
  livenessProbe:
    repository: registry.k8s.io/sig-storage/livenessprobe
    tag: v2.17.0
controller:
  runOnControlPlane: false
`, []string{"registry.k8s.io/sig-storage/livenessprobe:v2.17.0", "registry.k8s.io/sig-storage/nfsplugin:v4.12.1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ChartImages(chartTgz(t, c.name, c.appVersion, c.values))
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(c.want)
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}

func TestManifestImagesReadsEveryDocument(t *testing.T) {
	p := filepath.Join(t.TempDir(), "components.yaml")
	os.WriteFile(p, []byte("kind: ServiceAccount\n---\nkind: Deployment\nspec:\n  template:\n    spec:\n"+
		"      initContainers: [{name: a, image: 'registry.k8s.io/a:1'}]\n      containers:\n"+
		"        - {name: ms, image: registry.k8s.io/metrics-server/metrics-server:v0.9.0}\n"), 0o644)
	got, err := ManifestImages(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "registry.k8s.io/a:1 registry.k8s.io/metrics-server/metrics-server:v0.9.0"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
	os.WriteFile(p, []byte("kind: A\n---\n: bad: [\n"), 0o644)
	if _, err := ManifestImages(p); err == nil || !strings.Contains(err.Error(), "document 2") {
		t.Errorf("malformed manifest: %v, want an error naming document 2", err)
	}
}

// TestMirrorAsksTheMirroredKubeadmForItsImages runs the whole mirror: the
// node files (whose kubeadm here is a script that answers `config images
// list` like kubeadm does), then kubeadm's images and the stack's, which
// land in the manifest with who runs them.
func TestMirrorAsksTheMirroredKubeadmForItsImages(t *testing.T) {
	u := newUpstream(t)
	p := fmt.Sprintf("/k8s/release/%s/bin/linux/amd64/kubeadm", testVersions.Kubernetes)
	u.files[p] = []byte("#!/bin/sh\n[ \"$*\" = \"config images list --kubernetes-version " + testVersions.Kubernetes +
		"\" ] || { echo \"unexpected: $*\" >&2; exit 1; }\necho registry.k8s.io/pause:3.10.1\necho registry.k8s.io/kube-proxy:" + testVersions.Kubernetes + "\n")
	u.files[p+".sha512"] = []byte(sha512hex(u.files[p]))
	up := newTestRegistry(t)
	up.pushIndex(t, "pause:3.10.1")
	up.pushIndex(t, "kube-proxy:"+testVersions.Kubernetes)
	up.pushIndex(t, "flannel-io/flannel:v0.27.4")
	dir := t.TempDir()
	o := u.opts(dir)
	o.SkipFCOS, o.SkipImages = true, false
	o.Registries = up.registries()
	o.Images = []ImageRequest{{Ref: "ghcr.io/flannel-io/flannel:v0.27.4", From: "cluster"}}
	m, err := Mirror(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for r, img := range m.Images {
		refs = append(refs, r+" from "+strings.Join(img.From, ","))
	}
	sort.Strings(refs)
	want := "ghcr.io/flannel-io/flannel:v0.27.4 from cluster|registry.k8s.io/kube-proxy:v1.34.4 from kubeadm|registry.k8s.io/pause:3.10.1 from kubeadm"
	if strings.Join(refs, "|") != want {
		t.Errorf("manifest images:\n%s\nwant\n%s", strings.Join(refs, "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
	if got := PauseImage(m); got != "registry.k8s.io/pause:3.10.1" {
		t.Errorf("PauseImage = %q", got)
	}
	// The manifest round-trips and the registry serves what it lists.
	back, err := LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	for ref, img := range back.Images {
		if d, err := reg.Digest(ref); err != nil || d != img.Digest {
			t.Errorf("registry serves %s as %s (%v), manifest says %s", ref, d, err, img.Digest)
		}
	}
}
