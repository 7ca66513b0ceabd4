// Package standin writes an artifact mirror of stand-ins for the upstream
// charts and manifests the program applies, for tests on a machine that
// cannot reach their upstreams: the rook-ceph, strimzi-kafka-operator and
// csi-driver-nfs charts (each a chart written here, named like the upstream
// one at the pinned version, that deploys one operator-shaped Deployment and
// nothing else), Rook's and Strimzi's CRDs (the repository's own CRD schemas
// of infra/storage/testdata/crds, which carry the upstream fields simlab sets)
// and metrics-server's manifest (a ConfigMap). The node artifacts are the
// ignition package's fake test manifest entries (no files).
//
// What the stand-ins leave unproven: that the upstream charts accept the
// values the program passes, and anything their operators do (no Ceph, no
// Kafka brokers run); a real mirror (`simlab artifacts mirror`) and a real lab
// prove those.
package standin

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/storage"
)

// ImageDigest is the digest the stand-in mirror gives the simulator image: an
// OCI layout whose index.json names the image, with no blobs (kwok runs no
// containers; the registry test and `simlab image build` prove real ones).
const ImageDigest = "sha256:5afe5afe5afe5afe5afe5afe5afe5afe5afe5afe5afe5afe5afe5afe5afe5afe"

// Marker is the annotation every stand-in object carries, so a reader of the
// cluster sees what it is.
const Marker = "simlab.test/stand-in"

// Operators names the Deployment each stand-in chart runs, by deploy artifact.
var Operators = map[string]struct{ Chart, Namespace, Deployment string }{
	artifacts.ChartRook:         {"rook-ceph", storage.RookNamespace, "rook-ceph-operator"},
	artifacts.ChartStrimzi:      {"strimzi-kafka-operator", storage.KafkaNamespace, "strimzi-cluster-operator"},
	artifacts.ChartCSIDriverNFS: {"csi-driver-nfs", storage.NFSNamespace, "csi-nfs-controller"},
}

// Mirror writes a mirror for the pins in v into dir: stand-in files for every
// deploy artifact, and a manifest.json that also lists the ignition test
// manifest's node artifacts. root is the repository root.
func Mirror(root, dir string, v config.Versions) (*artifacts.Manifest, error) {
	m, err := artifacts.LoadManifest(filepath.Join(root, "ignition", "testdata"))
	if err != nil {
		return nil, err
	}
	mv := artifacts.VersionsFor(v)
	m.Versions.Rook, m.Versions.Strimzi = mv.Rook, mv.Strimzi
	m.Versions.CSIDriverNFS, m.Versions.MetricsServer = mv.CSIDriverNFS, mv.MetricsServer
	crds := filepath.Join(root, "infra", "storage", "testdata", "crds")
	for _, name := range artifacts.DeployArtifacts {
		spec, err := artifacts.Deploy(name, mv)
		if err != nil {
			return nil, err
		}
		var data []byte
		switch name {
		case artifacts.ChartRook, artifacts.ChartStrimzi, artifacts.ChartCSIDriverNFS:
			data, err = chart(name, spec.Version)
		case artifacts.ManifestRookCRDs:
			data, err = os.ReadFile(filepath.Join(crds, "ceph.rook.io.yaml"))
		case artifacts.ManifestStrimziCRDs:
			data, err = os.ReadFile(filepath.Join(crds, "kafka.strimzi.io.yaml"))
		case artifacts.ManifestMetricsServer:
			data = []byte(fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: metrics-server-stand-in\n"+
				"  namespace: kube-system\n  annotations:\n    %s: metrics-server %s manifest\n", Marker, spec.Version))
		default:
			return nil, fmt.Errorf("standin: no stand-in for %s", name)
		}
		if err != nil {
			return nil, fmt.Errorf("standin %s: %w", name, err)
		}
		file := filepath.Join(dir, filepath.FromSlash(spec.Path))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return nil, err
		}
		sum := sha512.Sum512(data)
		m.Artifacts[name] = artifacts.Artifact{Path: spec.Path, SHA512: hex.EncodeToString(sum[:]), Size: int64(len(data)),
			Source: "stand-in written by tests/standin"}
	}
	if err := m.Write(dir); err != nil {
		return nil, err
	}
	// The simulator image, as `simlab image build` names it in the mirror.
	c := config.Default()
	ref := c.Simulator.Image + ":" + v.Simulator
	layoutDir := filepath.Join(dir, artifacts.ImagesDir, "simulator")
	if err := os.MkdirAll(layoutDir, 0o755); err != nil {
		return nil, err
	}
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":"application/vnd.oci.image.index.v1+json","digest":%q,"size":0,"annotations":`+
		`{"org.opencontainers.image.ref.name":%q,%q:"simulator image"}}]}`, ImageDigest, ref, Marker)
	if err := os.WriteFile(filepath.Join(layoutDir, "index.json"), []byte(index), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(layoutDir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

// MirrorT writes a stand-in mirror for the default pins into a temporary
// directory of t and returns the directory.
func MirrorT(t testing.TB, root string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := Mirror(root, dir, config.DefaultVersions()); err != nil {
		t.Fatalf("writing the stand-in artifact mirror: %v", err)
	}
	return dir
}

// standinValues are the stand-in charts' values.yaml (%s is the chart
// version): each names the operator image in its upstream chart's style —
// Rook's repository and tag, Strimzi's registry/repository/name with
// chart-wide defaults, csi-driver-nfs's image.nfs — so the mirror's
// artifacts.ChartImages reads them as it reads the real ones, and the helm the
// provider embeds renders the image a pod would pull.
var standinValues = map[string]string{
	artifacts.ChartRook: "image:\n  repository: docker.io/rook/ceph\n  tag: %s\n",
	artifacts.ChartStrimzi: "defaultImageRegistry: quay.io\ndefaultImageRepository: strimzi\ndefaultImageTag: %s\n" +
		"image:\n  registry: \"\"\n  repository: \"\"\n  name: operator\n  tag: \"\"\n",
	artifacts.ChartCSIDriverNFS: "image:\n  nfs:\n    repository: registry.k8s.io/sig-storage/nfsplugin\n    tag: %s\n",
}

// standinImageExpr is how each stand-in template renders its image from those values.
var standinImageExpr = map[string]string{
	artifacts.ChartRook: `"{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"`,
	artifacts.ChartStrimzi: `"{{ default .Values.defaultImageRegistry .Values.image.registry }}/` +
		`{{ default .Values.defaultImageRepository .Values.image.repository }}/{{ .Values.image.name }}:` +
		`{{ default .Values.defaultImageTag .Values.image.tag }}"`,
	artifacts.ChartCSIDriverNFS: `"{{ .Values.image.nfs.repository }}:{{ .Values.image.nfs.tag }}"`,
}

// chart returns the stand-in chart of a deploy artifact as a .tgz, the same
// bytes for the same input (fixed modes and times).
func chart(name, version string) ([]byte, error) {
	op := Operators[name]
	files := []struct{ path, body string }{
		{"Chart.yaml", fmt.Sprintf("apiVersion: v2\nname: %s\nversion: %s\nappVersion: %q\n"+
			"description: stand-in for the upstream %s chart, written by simlab's tests\n", op.Chart, version, version, op.Chart)},
		{"values.yaml", "# A stand-in: it names its operator image the way the upstream chart's values do.\n" +
			fmt.Sprintf(standinValues[name], version)},
		{"templates/operator.yaml", fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: {{ .Release.Namespace }}
  labels: {app.kubernetes.io/name: %[1]s, app.kubernetes.io/part-of: stand-in}
  annotations:
    %[2]s: "%[3]s %[4]s chart"
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: %[1]s}
  template:
    metadata:
      labels: {app.kubernetes.io/name: %[1]s}
    spec:
      containers:
        - name: operator
          image: %[5]s
`, op.Deployment, Marker, op.Chart, version, standinImageExpr[name])},
	}
	if name == artifacts.ChartCSIDriverNFS {
		files = append(files, struct{ path, body string }{"templates/csidriver.yaml", fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: %s
  annotations:
    %s: "csi-driver-nfs %s chart"
spec:
  attachRequired: false
  volumeLifecycleModes: [Persistent]
`, storage.NFSDriver, Marker, version)})
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range files {
		hdr := &tar.Header{Name: op.Chart + "/" + f.path, Mode: 0o644, Size: int64(len(f.body)), ModTime: mtime,
			Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Put writes data as artifact name's file in the mirror dir (at the path m
// gives it) and records its sha512 and size in m; a non-empty source
// replaces the artifact's Source. Tests that put real or small files in
// place of the manifest's use it; m.Write saves the manifest.
func Put(dir string, m *artifacts.Manifest, name string, data []byte, source string) error {
	a, ok := m.Artifacts[name]
	if !ok {
		return fmt.Errorf("standin: the manifest has no artifact %s", name)
	}
	file := filepath.Join(dir, filepath.FromSlash(a.Path))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return err
	}
	s := sha512.Sum512(data)
	a.SHA512, a.Size = hex.EncodeToString(s[:]), int64(len(data))
	if source != "" {
		a.Source = source
	}
	m.Artifacts[name] = a
	return nil
}
