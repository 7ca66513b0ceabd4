package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	ign "github.com/coreos/ignition/v2/config/v3_5"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
)

// fakeReleases serves the pinned Kubernetes, cri-tools and CNI releases with
// their published checksums, like dl.k8s.io and GitHub do.
func fakeReleases(t *testing.T, corrupt string) *httptest.Server {
	v := config.DefaultVersions()
	files := map[string][]byte{}
	for _, b := range []string{"kubeadm", "kubelet", "kubectl"} {
		p := fmt.Sprintf("/release/%s/bin/linux/amd64/%s", v.Kubernetes, b)
		files[p] = []byte("fake " + b)
		s := sha512.Sum512(files[p])
		files[p+".sha512"] = []byte(hex.EncodeToString(s[:]))
	}
	p := fmt.Sprintf("/kubernetes-sigs/cri-tools/releases/download/%s/crictl-%s-linux-amd64.tar.gz", v.Crictl, v.Crictl)
	files[p] = []byte("fake crictl")
	s256 := sha256.Sum256(files[p])
	files[p+".sha256"] = []byte(hex.EncodeToString(s256[:]))
	p = fmt.Sprintf("/containernetworking/plugins/releases/download/%s/cni-plugins-linux-amd64-%s.tgz", v.CNIPlugins, v.CNIPlugins)
	files[p] = []byte("fake cni")
	s := sha512.Sum512(files[p])
	files[p+".sha512"] = []byte(hex.EncodeToString(s[:]) + "  cni.tgz\n")
	// The deploy artifacts: three chart repositories and three manifests.
	for _, c := range []struct{ dir, chart, version string }{
		{"/rook-charts", "rook-ceph", v.Rook}, {"/strimzi-charts", "strimzi-kafka-operator", v.Strimzi},
		{"/kubernetes-csi/csi-driver-nfs/master/charts", "csi-driver-nfs", v.CSIDriverNFS},
	} {
		tgz := c.chart + "-" + c.version + ".tgz"
		files[c.dir+"/"+tgz] = []byte("fake chart " + c.chart)
		sum := sha256.Sum256(files[c.dir+"/"+tgz])
		files[c.dir+"/index.yaml"] = []byte(fmt.Sprintf("entries:\n  %s:\n    - version: %s\n      digest: %x\n      urls: [%s]\n",
			c.chart, c.version, sum, tgz))
	}
	files["/rook/rook/"+v.Rook+"/deploy/examples/crds.yaml"] = []byte("fake rook crds")
	files["/strimzi/strimzi-kafka-operator/releases/download/"+v.Strimzi+"/strimzi-crds-"+v.Strimzi+".yaml"] = []byte("fake strimzi crds")
	files["/kubernetes-sigs/metrics-server/releases/download/"+v.MetricsServer+"/components.yaml"] = []byte("fake metrics-server")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/"+corrupt) {
			body = []byte("tampered")
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// mirrorArgs runs `simlab artifacts mirror` against the fake upstreams at url.
func mirrorArgs(dir, url string) []string {
	return []string{"artifacts", "mirror", "--dir", dir, "--skip-fcos", "--skip-images", "--kubernetes-url", url, "--github-url", url,
		"--github-raw-url", url, "--rook-charts-url", url + "/rook-charts", "--strimzi-charts-url", url + "/strimzi-charts"}
}

func TestArtifactsMirrorRejectsCorruptDownload(t *testing.T) {
	up := fakeReleases(t, "kubelet")
	dir := t.TempDir()
	_, errOut, code := runCLI(mirrorArgs(dir, up.URL)...)
	if code == 0 || !strings.Contains(errOut, "mirroring kubelet: sha512 of "+up.URL) {
		t.Fatalf("exit %d, stderr %q: want a kubelet checksum error", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, artifacts.ManifestFile)); err == nil {
		t.Error("a manifest was written after a failed mirror")
	}
}

func TestArtifactsMirrorImageFlagsNameTheBadValue(t *testing.T) {
	for _, c := range []struct{ flag, value, want string }{
		{"--registry", "quay.io", `--registry "quay.io": want HOST=URL`},
		{"--registry", "quay.io=quay-cache.internal", `--registry "quay.io=quay-cache.internal": want HOST=URL`},
		{"--image", "quay.io/ceph/ceph@sha256:" + strings.Repeat("a", 64), "--image: image"},
	} {
		_, errOut, code := runCLI("artifacts", "mirror", "--dir", t.TempDir(), c.flag, c.value)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s %s: exit %d, stderr %q, want %q", c.flag, c.value, code, errOut, c.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestArtifactsMirrorThenServeIgnition(t *testing.T) {
	up := fakeReleases(t, "")
	dir := t.TempDir()
	out, errOut, code := runCLI(mirrorArgs(dir, up.URL)...)
	if code != 0 {
		t.Fatalf("mirror: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, fmt.Sprintf("mirrored %d artifacts", 5+len(artifacts.DeployArtifacts))) {
		t.Errorf("mirror output %q", out)
	}
	m, err := artifacts.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	root := newRoot()
	var stdout, stderr syncBuffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"artifacts", "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--stack", "dev", "--stacks-dir", "../../../stacks"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	addr := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)`)
	var base string
	for deadline := time.Now().Add(20 * time.Second); base == "" && time.Now().Before(deadline); {
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, stderr.String())
		default:
		}
		if mm := addr.FindStringSubmatch(stdout.String()); mm != nil {
			base = mm[1]
		} else {
			time.Sleep(10 * time.Millisecond) // polling for the listen line, not synchronising on time
		}
	}
	if base == "" {
		t.Fatalf("serve did not report its address: %q", stdout.String())
	}
	resp, err := http.Get(base + "/ignition?name=dev-worker-2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ignition: %d %s", resp.StatusCode, body)
	}
	c, rpt, err := ign.Parse(body)
	if err != nil || len(rpt.Entries) > 0 {
		t.Fatalf("served Ignition does not parse: %v %s", err, rpt)
	}
	found := false
	for _, f := range c.Storage.Files {
		if f.Path == "/opt/bin/kubelet" {
			found = true
			want, _ := m.Hash("kubelet")
			if *f.Contents.Verification.Hash != want {
				t.Errorf("kubelet hash %s, want the mirror's %s", *f.Contents.Verification.Hash, want)
			}
			// The URL in the Ignition resolves to exactly the hashed bytes on this server.
			r2, err := http.Get(base + strings.TrimPrefix(*f.Contents.Source, "http://192.168.122.1:8080"))
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(r2.Body)
			r2.Body.Close()
			s := sha512.Sum512(data)
			if "sha512-"+hex.EncodeToString(s[:]) != want {
				t.Errorf("served kubelet does not have the Ignition's hash")
			}
		}
	}
	if !found {
		t.Error("no /opt/bin/kubelet in the served Ignition")
	}
}

func TestArtifactsIgnitionPrintsNode(t *testing.T) {
	out, errOut, code := runCLI("artifacts", "ignition", "--dir", "../../../ignition/testdata", "--stacks-dir", "../../../stacks", "--stack", "lab", "lab-worker-3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	c, rpt, err := ign.Parse([]byte(out))
	if err != nil || len(rpt.Entries) > 0 {
		t.Fatalf("output does not parse: %v %s", err, rpt)
	}
	if c.Storage.Files[0].Path == "" {
		t.Error("no files")
	}
	if !strings.Contains(out, "data:,lab-worker-3") {
		t.Error("hostname of lab-worker-3 missing")
	}
	_, errOut, code = runCLI("artifacts", "ignition", "--dir", "../../../ignition/testdata", "--stacks-dir", "../../../stacks", "--stack", "lab", "nope")
	if code == 0 || !strings.Contains(errOut, `stack lab has no node "nope"`) {
		t.Errorf("unknown node: exit %d, %q", code, errOut)
	}
}

func TestArtifactsMirrorTakesWhatTheStackApplies(t *testing.T) {
	up := fakeReleases(t, "")
	dir := t.TempDir()
	// The local stack: existing cluster (no node files), Kafka and NFS, no Ceph.
	out, errOut, code := runCLI(append(mirrorArgs(dir, up.URL), "--stack", "local", "--stacks-dir", "../../../stacks")...)
	if code != 0 {
		t.Fatalf("mirror: exit %d: %s", code, errOut)
	}
	m, err := artifacts.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{artifacts.ChartCSIDriverNFS, artifacts.ChartStrimzi, artifacts.ManifestStrimziCRDs}
	if got := strings.Join(m.Names(), " "); got != strings.Join(want, " ") {
		t.Fatalf("mirrored %s, want %s\n%s", got, strings.Join(want, " "), out)
	}
}
