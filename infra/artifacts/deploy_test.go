package artifacts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var deployVersions = func() ManifestVersions {
	v := testVersions
	v.Rook, v.Strimzi, v.CSIDriverNFS, v.MetricsServer = "v1.18.6", "0.48.0", "v4.12.1", "v0.9.0"
	return v
}()

// addDeploy puts the deploy artifacts' upstreams on u: three Helm
// repositories (one with a relative chart URL, as chart-releaser writes,
// two absolute) and three release manifests.
func (u *upstream) addDeploy() {
	v := deployVersions
	repo := func(dir, chart, version string, relative bool) {
		body := []byte("chart " + chart + " " + version)
		file := chart + "-" + version + ".tgz"
		u.files[dir+"/"+file] = body
		url := u.srv.URL + dir + "/" + file
		if relative {
			url = file
		}
		u.files[dir+"/index.yaml"] = []byte(fmt.Sprintf("apiVersion: v1\nentries:\n  %s:\n"+
			"    - version: 0.0.1\n      digest: %s\n      urls: [old.tgz]\n"+
			"    - version: %s\n      digest: %s\n      urls: [%q]\n", chart, sha256hex(nil), version, sha256hex(body), url))
	}
	repo("/rook", "rook-ceph", v.Rook, true)
	repo("/strimzi", "strimzi-kafka-operator", v.Strimzi, false)
	repo("/raw/kubernetes-csi/csi-driver-nfs/master/charts", "csi-driver-nfs", v.CSIDriverNFS, false)
	u.files["/raw/rook/rook/"+v.Rook+"/deploy/examples/crds.yaml"] = []byte("kind: CustomResourceDefinition # rook")
	u.files["/gh/strimzi/strimzi-kafka-operator/releases/download/"+v.Strimzi+"/strimzi-crds-"+v.Strimzi+".yaml"] = []byte("kind: CustomResourceDefinition # strimzi")
	u.files["/gh/kubernetes-sigs/metrics-server/releases/download/"+v.MetricsServer+"/components.yaml"] = []byte("kind: Deployment # metrics-server")
}

func (u *upstream) deployOpts(dir string) MirrorOptions {
	o := u.opts(dir)
	o.Versions = deployVersions
	o.Upstreams.GitHubRaw = u.srv.URL + "/raw"
	o.Upstreams.RookCharts = u.srv.URL + "/rook"
	o.Upstreams.StrimziCharts = u.srv.URL + "/strimzi"
	o.SkipNodes = true
	o.Deploy = DeployArtifacts
	return o
}

// mirrorDeploy mirrors every deploy artifact from fake upstreams into a
// temporary directory.
func mirrorDeploy(t *testing.T) (string, *Manifest) {
	t.Helper()
	u := newUpstream(t)
	u.addDeploy()
	dir := t.TempDir()
	m, err := Mirror(context.Background(), u.deployOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func TestMirrorDeployArtifacts(t *testing.T) {
	dir, m := mirrorDeploy(t)
	if got := strings.Join(m.Names(), " "); got != strings.Join(sortedCopy(DeployArtifacts), " ") {
		t.Fatalf("mirrored %s, want only the deploy artifacts (SkipNodes)", got)
	}
	for _, name := range DeployArtifacts {
		a := m.Artifacts[name]
		want, err := Deploy(name, deployVersions)
		if err != nil || a.Path != want.Path {
			t.Errorf("%s at %q, want %q (%v)", name, a.Path, want.Path, err)
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(a.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if sha512hex(data) != a.SHA512 {
			t.Errorf("%s: sha512 in the manifest is not the file's", name)
		}
		isChart := strings.HasPrefix(name, "chart-")
		if isChart && a.Upstream != "sha256:"+sha256hex(data) {
			t.Errorf("%s: upstream %q, want the index digest", name, a.Upstream)
		}
		if !isChart && a.Upstream != "" {
			t.Errorf("%s: upstream %q: manifests have no published checksum", name, a.Upstream)
		}
		if path, err := m.Resolve(dir, name); err != nil || !filepath.IsAbs(path) {
			t.Errorf("Resolve(%s) = %q, %v", name, path, err)
		}
	}
}

func TestMirrorRejectsChartNotMatchingItsIndexDigest(t *testing.T) {
	u := newUpstream(t)
	u.addDeploy()
	dir := t.TempDir()
	o := u.deployOpts(dir)
	o.Deploy = []string{ChartStrimzi}
	u.corrupt["/strimzi/strimzi-kafka-operator-0.48.0.tgz"] = true
	_, err := Mirror(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), ChartStrimzi) || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("want the chart rejected, naming it: %v", err)
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Fatalf("a rejected download left %v", files)
	}
}

func TestMirrorNamesAMissingChartVersion(t *testing.T) {
	u := newUpstream(t)
	u.addDeploy()
	o := u.deployOpts(t.TempDir())
	o.Versions.Rook = "v9.9.9"
	o.Deploy = []string{ChartRook}
	_, err := Mirror(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no rook-ceph v9.9.9") || !strings.Contains(err.Error(), "v1.18.6") {
		t.Fatalf("want the missing version named with those available: %v", err)
	}
}

func TestResolveRefusesChangedOrMissingFiles(t *testing.T) {
	dir, m := mirrorDeploy(t)
	file := filepath.Join(dir, filepath.FromSlash(m.Artifacts[ManifestStrimziCRDs].Path))
	if err := os.WriteFile(file, []byte("kind: Namespace # tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resolve(dir, ManifestStrimziCRDs); err == nil || !strings.Contains(err.Error(), "changed after it was verified") {
		t.Errorf("a changed file was accepted: %v", err)
	}
	os.Remove(file)
	if _, err := m.Resolve(dir, ManifestStrimziCRDs); err == nil || !strings.Contains(err.Error(), ManifestStrimziCRDs) {
		t.Errorf("a missing file was accepted or not named: %v", err)
	}
	delete(m.Artifacts, ChartRook)
	if _, err := m.Resolve(dir, ChartRook); err == nil || !strings.Contains(err.Error(), "simlab artifacts mirror") {
		t.Errorf("an artifact missing from the manifest: %v", err)
	}
}

func sortedCopy(l []string) []string {
	out := append([]string(nil), l...)
	sort.Strings(out)
	return out
}
