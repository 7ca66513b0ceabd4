// Package artifacts owns simlab's artifact server: the mirror of pinned
// upstream artifacts (kubeadm, kubelet, kubectl, crictl, the CNI plugins and
// the Fedora CoreOS images, the charts and manifests the program applies, and
// every container image the stack runs, by digest), the manifest that records
// each file's sha512 and each image's digest, and the HTTP server that hands
// those files, each node's Ignition, the PXE boot arguments and (as a
// read-only registry) the images to nodes.
//
// The manifest is the contract between the mirror and the Ignition renderer:
// every remote file in a node's Ignition carries the manifest's sha512, so a
// node gets exactly the bytes the mirror verified against upstream.
package artifacts

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ManifestFile is the name of the manifest inside a mirror directory.
const ManifestFile = "manifest.json"

// ManifestSchema is the version of the manifest format written by Mirror.
const ManifestSchema = 1

// Artifact names. Nodes fetch the first five through Ignition; the FCOS
// images boot the nodes (qemu for libvirt, live PXE files for metal).
const (
	Kubeadm         = "kubeadm"
	Kubelet         = "kubelet"
	Kubectl         = "kubectl"
	Crictl          = "crictl"
	CNIPlugins      = "cni-plugins"
	FCOSQemu        = "fcos-qemu"
	FCOSLiveKernel  = "fcos-live-kernel"
	FCOSLiveInitrd  = "fcos-live-initramfs"
	FCOSLiveRootfs  = "fcos-live-rootfs"
	defaultArchName = "amd64"
)

// NodeArtifacts are the artifacts every node's Ignition downloads.
var NodeArtifacts = []string{Kubeadm, Kubelet, Kubectl, Crictl, CNIPlugins}

// FCOSArtifacts are the Fedora CoreOS images the mirror fetches.
var FCOSArtifacts = []string{FCOSQemu, FCOSLiveKernel, FCOSLiveInitrd, FCOSLiveRootfs}

// Manifest lists the mirrored artifacts and the versions they were mirrored for.
type Manifest struct {
	// Schema is ManifestSchema.
	Schema int `json:"schema"`
	// Arch is the Kubernetes architecture name, e.g. amd64.
	Arch string `json:"arch"`
	// Versions are the pins the artifacts were mirrored for (subset of config.Versions).
	Versions ManifestVersions `json:"versions"`
	// Artifacts maps an artifact name (Kubeadm, ...) to its file.
	Artifacts map[string]Artifact `json:"artifacts"`
	// Images maps an image reference (host/name:tag, as pods name it) to
	// its copy in an OCI layout under ImagesDir, served by the registry.
	Images map[string]Image `json:"images,omitempty"`
}

// ManifestVersions records the pins a mirror was made for, so a renderer can
// refuse a manifest that does not match the stack's versions.
type ManifestVersions struct {
	Kubernetes  string `json:"kubernetes"`
	Crictl      string `json:"crictl"`
	CNIPlugins  string `json:"cniPlugins"`
	FCOSStream  string `json:"fcosStream"`
	FCOSRelease string `json:"fcosRelease"`
	// The pins of the deploy artifacts (DeployArtifacts), when mirrored.
	Rook          string `json:"rook,omitempty"`
	Strimzi       string `json:"strimzi,omitempty"`
	CSIDriverNFS  string `json:"csiDriverNFS,omitempty"`
	MetricsServer string `json:"metricsServer,omitempty"`
}

// Artifact is one mirrored file.
type Artifact struct {
	// Path is the file's slash-separated path relative to the mirror
	// directory; it is also its URL path on the artifact server.
	Path string `json:"path"`
	// SHA512 is the lowercase hex sha512 of the file.
	SHA512 string `json:"sha512"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// Source is the upstream URL it was mirrored from.
	Source string `json:"source,omitempty"`
	// Upstream is the upstream published checksum it was verified against,
	// as "<algorithm>:<hex>".
	Upstream string `json:"upstream,omitempty"`
}

// LoadManifest reads dir/manifest.json and checks it.
func LoadManifest(dir string) (*Manifest, error) {
	file := filepath.Join(dir, ManifestFile)
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no artifact manifest at %s: run `simlab artifacts mirror --dir %s` first", file, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading artifact manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

// ParseManifest decodes and checks a manifest.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a valid manifest: %w", err)
	}
	if err := m.Check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Check reports the first problem of the manifest, naming the artifact.
func (m *Manifest) Check() error {
	if m.Schema != ManifestSchema {
		return fmt.Errorf("manifest schema %d, want %d (re-run `simlab artifacts mirror`)", m.Schema, ManifestSchema)
	}
	for _, name := range m.Names() {
		a := m.Artifacts[name]
		switch {
		case a.Path == "" || path.IsAbs(a.Path) || path.Clean(a.Path) != a.Path || strings.HasPrefix(a.Path, "../"):
			return fmt.Errorf("artifacts.%s.path: must be a clean relative path, got %q", name, a.Path)
		case len(a.SHA512) != 128 || !isLowerHex(a.SHA512):
			return fmt.Errorf("artifacts.%s.sha512: must be 128 lowercase hex digits, got %q", name, a.SHA512)
		case a.Size < 0:
			return fmt.Errorf("artifacts.%s.size: must be >= 0, got %d", name, a.Size)
		}
	}
	return nil
}

// Names returns the artifact names, sorted.
func (m *Manifest) Names() []string {
	out := make([]string, 0, len(m.Artifacts))
	for n := range m.Artifacts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns the named artifact or an error naming it.
func (m *Manifest) Get(name string) (Artifact, error) {
	a, ok := m.Artifacts[name]
	if !ok {
		return Artifact{}, fmt.Errorf("artifact %q is not in the manifest (re-run `simlab artifacts mirror`)", name)
	}
	return a, nil
}

// URL returns the URL of the named artifact on the artifact server at base
// (e.g. http://192.168.122.1:8080). It returns "" for an unknown name; use Get
// to tell the two apart.
func (m *Manifest) URL(base, name string) string {
	a, ok := m.Artifacts[name]
	if !ok {
		return ""
	}
	return ArtifactURL(base, a.Path)
}

// ArtifactURL joins the server's base URL and a relative file path, escaping
// each path segment.
func ArtifactURL(base, rel string) string {
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimRight(base, "/") + "/" + strings.Join(segs, "/")
}

// Hash returns the Ignition verification hash ("sha512-<hex>") of the named artifact.
func (m *Manifest) Hash(name string) (string, error) {
	a, err := m.Get(name)
	if err != nil {
		return "", err
	}
	return "sha512-" + a.SHA512, nil
}

// CheckVersions reports every pin where the manifest differs from want,
// naming the config key, so a stale mirror is never served silently.
func (m *Manifest) CheckVersions(want ManifestVersions, names ...string) error {
	var diffs []string
	check := func(key, got, want string) {
		if got != want {
			diffs = append(diffs, fmt.Sprintf("simlab:versions.%s is %q but the manifest was mirrored for %q", key, want, got))
		}
	}
	check("kubernetes", m.Versions.Kubernetes, want.Kubernetes)
	check("crictl", m.Versions.Crictl, want.Crictl)
	check("cniPlugins", m.Versions.CNIPlugins, want.CNIPlugins)
	for _, n := range names {
		if _, ok := m.Artifacts[n]; !ok {
			diffs = append(diffs, fmt.Sprintf("artifact %q is missing", n))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("artifact manifest does not match the stack (re-run `simlab artifacts mirror`): %s", strings.Join(diffs, "; "))
	}
	return nil
}

// VerifyFiles checks that every artifact is in dir with the manifest's size
// and, when hash is true, its sha512 (reads every byte). Every problem is
// reported, each naming the artifact and file.
func (m *Manifest) VerifyFiles(dir string, hash bool) error {
	var problems []string
	for _, name := range m.Names() {
		a := m.Artifacts[name]
		file := filepath.Join(dir, filepath.FromSlash(a.Path))
		st, err := os.Stat(file)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		case st.Size() != a.Size:
			problems = append(problems, fmt.Sprintf("%s: %s has %d bytes, the manifest says %d", name, file, st.Size(), a.Size))
			continue
		case !hash:
			continue
		}
		got, err := fileSHA512(file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
		} else if got != a.SHA512 {
			problems = append(problems, fmt.Sprintf("%s: %s has sha512 %s, the manifest says %s", name, file, got, a.SHA512))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("mirror %s does not match its manifest (re-run `simlab artifacts mirror`): %s", dir, strings.Join(problems, "; "))
	}
	return nil
}

// fileSHA512 is the lowercase hex sha512 of a file's bytes.
func fileSHA512(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sums, _, err := hashReader(f, "sha512")
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", file, err)
	}
	return sums["sha512"], nil
}

// Write writes the manifest as dir/manifest.json atomically (temp file + rename).
func (m *Manifest) Write(dir string) error {
	if err := m.Check(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, ManifestFile), append(data, '\n'))
}

func writeAtomic(file string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

func isLowerHex(s string) bool {
	if _, err := hex.DecodeString(s); err != nil {
		return false
	}
	return strings.ToLower(s) == s
}
