package artifacts

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// writeLayout writes a random two-platform image index named ref as an OCI
// layout under dir/images/<sub>.
func writeLayout(t *testing.T, dir, sub, ref string) v1.ImageIndex {
	t.Helper()
	idx, err := random.Index(512, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, ImagesDir, sub), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{refAnnotation: ref})); err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestRegistryServesLayoutsToARealClient(t *testing.T) {
	dir := t.TempDir()
	want := writeLayout(t, dir, "simulator", "ghcr.io/simlab/simulator:0.1.0")
	writeLayout(t, dir, "pause", "registry.k8s.io/pause:3.10")
	reg, err := NewRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reg.Images(), " "); got != "ghcr.io/simlab/simulator:0.1.0 registry.k8s.io/pause:3.10" {
		t.Fatalf("images %s", got)
	}
	srv := httptest.NewServer(Handler(ServerOptions{Dir: dir, Registry: reg}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	wantDigest, _ := want.Digest()

	// By tag and by digest, every manifest and blob verified by the client.
	for _, ref := range []string{host + "/simlab/simulator:0.1.0", host + "/simlab/simulator@" + wantDigest.String()} {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(r)
		if err != nil {
			t.Fatalf("pulling %s: %v", ref, err)
		}
		if d, _ := idx.Digest(); d != wantDigest {
			t.Errorf("%s: digest %s, want %s", ref, d, wantDigest)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range layers {
				rc, err := l.Compressed() // verifies the digest as it reads
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Fatalf("layer of %s: %v", m.Digest, err)
				}
				rc.Close()
			}
		}
	}

	// The containerd mirror form (?ns=upstream), HEAD, Range, media types.
	req := func(method, path string, hdr ...string) *http.Response {
		r, _ := http.NewRequest(method, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := req(http.MethodHead, "/v2/simlab/simulator/manifests/0.1.0?ns=ghcr.io")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != wantDigest.String() ||
		resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("HEAD manifest: %d digest %q type %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Content-Type"))
	}
	if resp := req(http.MethodGet, "/v2/simlab/simulator/manifests/0.1.0?ns=quay.io"); resp.StatusCode != 404 {
		t.Errorf("another upstream's repository: %d, want 404", resp.StatusCode)
	}
	im, _ := want.IndexManifest()
	img, _ := want.Image(im.Manifests[0].Digest)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	resp = req(http.MethodGet, "/v2/simlab/simulator/blobs/"+ld.String(), "Range", "bytes=10-19")
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusPartialContent || len(body) != 10 {
		t.Errorf("Range: %d with %d bytes", resp.StatusCode, len(body))
	}
	for path, code := range map[string]int{
		"/v2/":                                 200,
		"/v2/simlab/simulator/manifests/9.9.9": 404,
		"/v2/simlab/nothing/manifests/0.1.0":   404,
		"/v2/simlab/simulator/blobs/sha256:" + strings.Repeat("0", 64): 404,
		"/v2/simlab/simulator/blobs/latest":                            400,
	} {
		if resp := req(http.MethodGet, path); resp.StatusCode != code {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
	if resp := req(http.MethodPut, "/v2/simlab/simulator/manifests/0.2.0"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d, want 405 (read-only)", resp.StatusCode)
	}
}

func TestParseImageRef(t *testing.T) {
	for ref, want := range map[string]string{
		"ghcr.io/simlab/simulator:0.1.0": "ghcr.io simlab/simulator 0.1.0",
		"registry.k8s.io/pause:3.10":     "registry.k8s.io pause 3.10",
		"localhost:5000/x/y":             "localhost:5000 x/y latest",
		"nginx":                          "docker.io library/nginx latest",
		"quay.io/ceph/ceph:v19.2.3":      "quay.io ceph/ceph v19.2.3",
		"docker.io/library/busybox:1.36": "docker.io library/busybox 1.36",
		"strimzi/operator:0.48.0":        "docker.io strimzi/operator 0.48.0",
	} {
		h, n, tag, err := ParseImageRef(ref)
		if got := fmt.Sprintf("%s %s %s", h, n, tag); err != nil || got != want {
			t.Errorf("%s: %q (%v), want %q", ref, got, err, want)
		}
	}
	if _, _, _, err := ParseImageRef("x@sha256:00"); err == nil {
		t.Error("a digest reference was accepted as a layout name")
	}
}
