package artifacts

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var testVersions = ManifestVersions{Kubernetes: "v1.34.4", Crictl: "v1.34.0", CNIPlugins: "v1.8.0",
	FCOSStream: "stable", FCOSRelease: "42.20251012.3.0"}

// upstream is a fake of dl.k8s.io, github.com releases and the FCOS build
// server on loopback: each file has content and a published checksum that a
// test may corrupt.
type upstream struct {
	mu      sync.Mutex
	files   map[string][]byte // URL path -> body
	corrupt map[string]bool   // URL path -> serve different bytes than published
	gets    map[string]int
	srv     *httptest.Server
}

func sha256hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func sha512hex(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }

func newUpstream(t *testing.T) *upstream {
	u := &upstream{files: map[string][]byte{}, corrupt: map[string]bool{}, gets: map[string]int{}}
	v := testVersions
	for _, b := range []string{Kubeadm, Kubelet, Kubectl} {
		p := fmt.Sprintf("/k8s/release/%s/bin/linux/amd64/%s", v.Kubernetes, b)
		body := []byte(strings.Repeat(b+" binary ", 1000))
		u.files[p] = body
		u.files[p+".sha512"] = []byte(sha512hex(body)) // dl.k8s.io: the bare digest
	}
	crictl := fmt.Sprintf("/gh/kubernetes-sigs/cri-tools/releases/download/%s/crictl-%s-linux-amd64.tar.gz", v.Crictl, v.Crictl)
	u.files[crictl] = []byte("crictl tarball")
	u.files[crictl+".sha256"] = []byte(sha256hex(u.files[crictl]) + "  crictl-v1.34.0-linux-amd64.tar.gz\n")
	cni := fmt.Sprintf("/gh/containernetworking/plugins/releases/download/%s/cni-plugins-linux-amd64-%s.tgz", v.CNIPlugins, v.CNIPlugins)
	u.files[cni] = []byte("cni plugins tarball")
	u.files[cni+".sha512"] = []byte(sha512hex(u.files[cni]) + "  cni-plugins-linux-amd64-v1.8.0.tgz\n")
	base := fmt.Sprintf("/fcos/prod/streams/%s/builds/%s/x86_64", v.FCOSStream, v.FCOSRelease)
	meta := map[string]any{"buildid": v.FCOSRelease, "images": map[string]any{}}
	for key, file := range map[string]string{"qemu": "qemu.x86_64.qcow2.xz", "live-kernel": "live-kernel-x86_64",
		"live-initramfs": "live-initramfs.x86_64.img", "live-rootfs": "live-rootfs.x86_64.img", "metal": "metal.x86_64.raw.xz"} {
		name := "fedora-coreos-" + v.FCOSRelease + "-" + file
		body := []byte("fcos " + key)
		u.files[base+"/"+name] = body
		meta["images"].(map[string]any)[key] = map[string]any{"path": name, "sha256": sha256hex(body), "size": len(body)}
	}
	u.files[base+"/meta.json"], _ = json.Marshal(meta)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		body, ok := u.files[r.URL.Path]
		bad := u.corrupt[r.URL.Path]
		u.gets[r.URL.Path]++
		u.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if bad {
			body = append([]byte("X"), body[1:]...)
		}
		w.Write(body)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) opts(dir string) MirrorOptions {
	return MirrorOptions{Dir: dir, Versions: testVersions, SkipImages: true,
		Upstreams: Upstreams{Kubernetes: u.srv.URL + "/k8s", GitHub: u.srv.URL + "/gh", FCOS: u.srv.URL + "/fcos"}}
}

// listFiles returns every file under dir (relative, slash-separated).
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

func TestMirrorWritesVerifiedFilesAndManifest(t *testing.T) {
	u := newUpstream(t)
	dir := t.TempDir()
	m, err := Mirror(context.Background(), u.opts(dir))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]string{}, NodeArtifacts...), FCOSArtifacts...)
	if len(m.Artifacts) != len(want) {
		t.Fatalf("manifest has %v, want %v", m.Names(), want)
	}
	loaded, err := LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range want {
		a := loaded.Artifacts[name]
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(a.Path)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sha512hex(data) != a.SHA512 || int64(len(data)) != a.Size {
			t.Errorf("%s: manifest says sha512 %s size %d; file has %s size %d", name, a.SHA512, a.Size, sha512hex(data), len(data))
		}
		if !strings.HasPrefix(a.Source, u.srv.URL) || a.Upstream == "" {
			t.Errorf("%s: source %q upstream %q", name, a.Source, a.Upstream)
		}
	}
	if loaded.Versions != testVersions {
		t.Errorf("manifest versions %+v, want %+v", loaded.Versions, testVersions)
	}
	for _, f := range listFiles(t, dir) {
		if strings.Contains(f, ".part-") || strings.Contains(f, ".tmp-") {
			t.Errorf("temp file left behind: %s", f)
		}
	}
	// A second mirror keeps verified files instead of downloading them again.
	kubeadm := fmt.Sprintf("/k8s/release/%s/bin/linux/amd64/kubeadm", testVersions.Kubernetes)
	if _, err := Mirror(context.Background(), u.opts(dir)); err != nil {
		t.Fatal(err)
	}
	if u.gets[kubeadm] != 1 {
		t.Errorf("kubeadm downloaded %d times over two mirrors, want 1", u.gets[kubeadm])
	}
}

func TestMirrorRejectsCorruptDownload(t *testing.T) {
	for _, tc := range []struct{ name, path, algo string }{
		{Kubelet, fmt.Sprintf("/k8s/release/%s/bin/linux/amd64/kubelet", testVersions.Kubernetes), "sha512"},
		{Crictl, fmt.Sprintf("/gh/kubernetes-sigs/cri-tools/releases/download/%s/crictl-%s-linux-amd64.tar.gz", testVersions.Crictl, testVersions.Crictl), "sha256"},
		{FCOSQemu, fmt.Sprintf("/fcos/prod/streams/stable/builds/%s/x86_64/fedora-coreos-%s-qemu.x86_64.qcow2.xz", testVersions.FCOSRelease, testVersions.FCOSRelease), "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t)
			u.corrupt[tc.path] = true
			dir := t.TempDir()
			// An earlier good manifest must survive a failed mirror.
			os.WriteFile(filepath.Join(dir, ManifestFile), []byte("previous"), 0o644)
			_, err := Mirror(context.Background(), u.opts(dir))
			if err == nil {
				t.Fatal("a corrupted download was accepted")
			}
			for _, want := range []string{"mirroring " + tc.name, tc.algo + " of " + u.srv.URL + tc.path, "upstream published", "rejected and discarded"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			for _, f := range listFiles(t, dir) {
				if strings.HasSuffix(tc.path, "/"+filepath.Base(f)) || strings.Contains(f, ".part-") {
					t.Errorf("corrupt or partial file left behind: %s", f)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dir, ManifestFile)); string(b) != "previous" {
				t.Errorf("the previous manifest was replaced by a failed mirror: %q", b)
			}
		})
	}
}

func TestMirrorRejectsTruncatedDownload(t *testing.T) {
	u := newUpstream(t)
	kubectl := fmt.Sprintf("/k8s/release/%s/bin/linux/amd64/kubectl", testVersions.Kubernetes)
	// The server promises more bytes than it sends, then drops the connection.
	full := u.files[kubectl]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == kubectl {
			w.Header().Set("Content-Length", fmt.Sprint(len(full)))
			w.Write(full[:len(full)/2])
			return
		}
		u.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	o := u.opts(dir)
	o.Upstreams.Kubernetes = srv.URL + "/k8s"
	_, err := Mirror(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "mirroring kubectl") {
		t.Fatalf("got %v, want a kubectl download error", err)
	}
	for _, f := range listFiles(t, dir) {
		if strings.HasSuffix(f, "/kubectl") || strings.Contains(f, ".part-") {
			t.Errorf("partial file left behind: %s", f)
		}
	}
}

func TestMirrorBadPublishedChecksum(t *testing.T) {
	u := newUpstream(t)
	p := fmt.Sprintf("/k8s/release/%s/bin/linux/amd64/kubeadm.sha512", testVersions.Kubernetes)
	u.files[p] = []byte("<html>not found</html>")
	_, err := Mirror(context.Background(), u.opts(t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "mirroring kubeadm: published checksum") || !strings.Contains(err.Error(), "not a sha512 digest") {
		t.Fatalf("got %v", err)
	}
}

func TestMirrorFCOSBuildMismatch(t *testing.T) {
	u := newUpstream(t)
	o := u.opts(t.TempDir())
	o.Versions.FCOSRelease = "41.0.0"
	_, err := Mirror(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "Fedora CoreOS metadata") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v, want a metadata error for the unknown release", err)
	}
}

func TestVerifyFiles(t *testing.T) {
	u := newUpstream(t)
	dir := t.TempDir()
	m, err := Mirror(context.Background(), u.opts(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.VerifyFiles(dir, true); err != nil {
		t.Fatalf("fresh mirror: %v", err)
	}
	// Same size, different bytes: only the full check sees it.
	kubeadm := filepath.Join(dir, filepath.FromSlash(m.Artifacts[Kubeadm].Path))
	data, _ := os.ReadFile(kubeadm)
	data[0] ^= 1
	os.WriteFile(kubeadm, data, 0o644)
	if err := m.VerifyFiles(dir, false); err != nil {
		t.Errorf("size-only check: %v", err)
	}
	if err := m.VerifyFiles(dir, true); err == nil || !strings.Contains(err.Error(), "kubeadm: "+kubeadm+" has sha512") {
		t.Errorf("full check: %v", err)
	}
	os.Remove(filepath.Join(dir, filepath.FromSlash(m.Artifacts[Crictl].Path)))
	if err := m.VerifyFiles(dir, false); err == nil || !strings.Contains(err.Error(), "crictl: ") {
		t.Errorf("missing file: %v", err)
	}
}

func TestManifestURLAndCheck(t *testing.T) {
	m := &Manifest{Schema: ManifestSchema, Artifacts: map[string]Artifact{
		"a": {Path: "dir/a file", SHA512: strings.Repeat("ab", 64), Size: 1}}}
	if got, want := m.URL("http://h:8080/", "a"), "http://h:8080/dir/a%20file"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if m.URL("http://h", "missing") != "" {
		t.Error("URL of an unknown artifact is not empty")
	}
	for _, bad := range []Artifact{
		{Path: "../etc/passwd", SHA512: strings.Repeat("ab", 64)},
		{Path: "/abs", SHA512: strings.Repeat("ab", 64)},
		{Path: "ok", SHA512: strings.Repeat("AB", 64)},
		{Path: "ok", SHA512: "abc"},
	} {
		m.Artifacts["b"] = bad
		if err := m.Check(); err == nil || !strings.Contains(err.Error(), "artifacts.b.") {
			t.Errorf("Check(%+v) = %v, want an error naming artifacts.b", bad, err)
		}
	}
	dir := t.TempDir()
	if _, err := LoadManifest(dir); err == nil || !strings.Contains(err.Error(), "simlab artifacts mirror") {
		t.Errorf("missing manifest: %v", err)
	}
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"schema":1,"artifacts":{},"extra":1}`), 0o644)
	if _, err := LoadManifest(dir); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestServe(t *testing.T) {
	u := newUpstream(t)
	dir := t.TempDir()
	m, err := Mirror(context.Background(), u.opts(dir))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ".manifest.json.tmp-1"), []byte("partial"), 0o644)
	var srv *httptest.Server
	srv = httptest.NewServer(Handler(ServerOptions{
		Dir: dir, Manifest: m, BaseURL: "http://10.0.0.2:8080", InstallDisk: "/dev/sda",
		Nodes: []ServedNode{{Name: "lab-controller-1", Role: "controller", MAC: "52:54:00:20:00:10"}, {Name: "lab-worker-1", Role: "worker"}},
		Ignition: func(name string) ([]byte, error) {
			return []byte(`{"ignition":{"version":"3.5.0"},"node":"` + name + `"}`), nil
		},
	}))
	defer srv.Close()
	get := func(p string) (int, string, string) {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	// Every artifact is served at its manifest path with the manifest's bytes.
	for _, name := range m.Names() {
		code, _, body := get("/" + m.Artifacts[name].Path)
		if code != 200 || sha512hex([]byte(body)) != m.Artifacts[name].SHA512 {
			t.Errorf("%s: %d, sha512 %s, want the manifest's", name, code, sha512hex([]byte(body)))
		}
	}
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/ignition?name=lab-worker-1", 200, `"node":"lab-worker-1"`},
		{"/ignition?mac=52-54-00-20-00-10", 200, `"node":"lab-controller-1"`},
		{"/ignition?mac=52:54:00:20:00:99", 404, `no node with MAC`},
		{"/ignition?name=nope", 404, `no node named "nope"`},
		{"/ignition", 400, "give ?name="},
		{"/.manifest.json.tmp-1", 404, "not found"},
		{"/", 404, "no listing"},
		{"/fcos", 404, "not found"},
		{"/../../etc/passwd", 404, "not found"},
		{"/manifest.json", 200, `"schema": 1`},
		{"/pxe?mac=52:54:00:20:00:10", 200, `coreos.inst.ignition_url=http://10.0.0.2:8080/ignition?mac=52:54:00:20:00:10`},
		{"/boot.ipxe?name=lab-worker-1", 200, "coreos.live.rootfs_url=http://10.0.0.2:8080/fcos/"},
	} {
		code, ctype, body := get(tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.want)
		}
		if strings.HasPrefix(tc.path, "/ignition") && code == 200 && ctype != "application/vnd.coreos.ignition+json" {
			t.Errorf("GET %s: Content-Type %q", tc.path, ctype)
		}
	}
	_, _, body := get("/pxe?name=lab-worker-1")
	var boot PXEBoot
	if err := json.Unmarshal([]byte(body), &boot); err != nil {
		t.Fatal(err)
	}
	if boot.Kernel != m.URL("http://10.0.0.2:8080", FCOSLiveKernel) || boot.Initrd[0] != m.URL("http://10.0.0.2:8080", FCOSLiveInitrd) {
		t.Errorf("pxe = %+v", boot)
	}
}
