package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"gopkg.in/yaml.v3"
)

// ImageRequest is one container image the stack runs, and who runs it.
type ImageRequest struct {
	// Ref is host/name:tag, the name pods use.
	Ref string
	// From says which part of the stack runs it ("kubeadm", a deploy artifact
	// name, or an infra layer such as "cluster" or "storage").
	From string
}

// Image is one mirrored image in the manifest.
type Image struct {
	// Digest is the upstream digest of the tag (an index for multi-platform
	// images): the bytes a node pulls, unchanged.
	Digest string `json:"digest"`
	// Platforms are the os/arch of the image manifests mirrored (the lab's).
	Platforms []string `json:"platforms"`
	// Layout is the OCI image layout holding it, relative to the mirror dir.
	Layout string `json:"layout"`
	// Size is the bytes of its manifests, configs and layers in the layout.
	Size int64 `json:"size"`
	// From lists who runs it (ImageRequest.From), sorted.
	From []string `json:"from"`
}

// LayoutDir is the image layout directory (under ImagesDir) for a repository.
func LayoutDir(host, repo string) string {
	return strings.NewReplacer("/", "_", ":", "_").Replace(host + "/" + repo)
}

// KubeadmImages runs kubeadm's own `config images list` for a Kubernetes
// release: the control plane, kube-proxy, CoreDNS, pause and etcd images
// kubeadm init and join pull. The list depends on the release, not on the
// node's architecture.
func KubeadmImages(ctx context.Context, kubeadm, version string) ([]string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubeadm, "config", "images", "list", "--kubernetes-version", version)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s config images list: %w: %s", kubeadm, err, strings.TrimSpace(stderr.String()))
	}
	var refs []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if _, _, _, err := ParseImageRef(l); err != nil {
			return nil, fmt.Errorf("%s config images list: %w", kubeadm, err)
		}
		refs = append(refs, l)
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s config images list printed no image", kubeadm)
	}
	return refs, nil
}

// PauseImage is the sandbox (pause) image among kubeadm's images, which
// containerd must be told to use: its built-in default differs by release.
func PauseImage(m *Manifest) string {
	for ref, img := range m.Images {
		if _, n, _, err := ParseImageRef(ref); err == nil && n == "pause" && slices.Contains(img.From, FromKubeadm) {
			return ref
		}
	}
	return ""
}

// FromKubeadm is the ImageRequest.From of kubeadm's images.
const FromKubeadm = "kubeadm"

// ChartImages lists the images a Helm chart's values.yaml names: every map
// with a repository and a tag (registry prepended when given; the top-level
// `image` map's tag defaults to the chart's appVersion, as charts do), an `image: host/name:tag` string, and Strimzi's
// style of name plus chart-wide defaultImageRegistry, defaultImageRepository
// and defaultImageTag. Images an operator starts on its own (from defaults
// compiled into it) are not in its values: the layer that deploys it names
// those (ImageRequest).
func ChartImages(tgz string) ([]string, error) {
	values, chartYAML, err := readChart(tgz)
	if err != nil {
		return nil, err
	}
	var meta struct {
		AppVersion string `yaml:"appVersion"`
	}
	if err := yaml.Unmarshal(chartYAML, &meta); err != nil {
		return nil, fmt.Errorf("chart %s: Chart.yaml: %w", tgz, err)
	}
	var root map[string]any
	if err := yaml.Unmarshal(values, &root); err != nil {
		return nil, fmt.Errorf("chart %s: values.yaml: %w", tgz, err)
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return strings.TrimSpace(s) }
	defReg, defRepo, defTag := str(root, "defaultImageRegistry"), str(root, "defaultImageRepository"), str(root, "defaultImageTag")
	seen := map[string]bool{}
	var out []string
	add := func(ref string) {
		if ref != "" && !seen[ref] {
			seen[ref] = true
			out = append(out, ref)
		}
	}
	var walk func(v any, top bool)
	walk = func(v any, top bool) {
		switch t := v.(type) {
		case map[string]any:
			repo, tag, reg, nm := str(t, "repository"), str(t, "tag"), str(t, "registry"), str(t, "name")
			_, hasName := t["name"]
			_, hasRepo := t["repository"]
			switch {
			case hasName && hasRepo && (defReg != "" || defRepo != "") && nm != "":
				r := firstNonEmpty(reg, defReg) + "/" + firstNonEmpty(repo, defRepo) + "/" + nm
				add(r + ":" + firstNonEmpty(tag, defTag, meta.AppVersion))
			case repo != "" && !hasName:
				if reg != "" {
					repo = reg + "/" + repo
				}
				if top {
					// The chart's own image: by convention its tag defaults to appVersion.
					tag = firstNonEmpty(tag, meta.AppVersion)
				}
				if tag != "" {
					add(repo + ":" + tag)
				}
			}
			if img := str(t, "image"); strings.Contains(path.Base(img), ":") {
				add(img)
			}
			for _, c := range t {
				walk(c, false)
			}
		case []any:
			for _, c := range t {
				walk(c, false)
			}
		}
	}
	for k, c := range root {
		walk(c, k == "image")
	}
	walk(map[string]any{"image": root["image"]}, false) // a top-level image: string
	sort.Strings(out)
	for _, r := range out {
		if _, _, _, err := ParseImageRef(r); err != nil {
			return nil, fmt.Errorf("chart %s: values.yaml: %w", tgz, err)
		}
	}
	return out, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// readChart returns the top-level values.yaml and Chart.yaml of a chart .tgz.
func readChart(tgz string) (values, chart []byte, err error) {
	f, err := os.Open(tgz)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, nil, fmt.Errorf("chart %s: %w", tgz, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("chart %s: %w", tgz, err)
		}
		parts := strings.Split(path.Clean(h.Name), "/")
		if len(parts) != 2 || (parts[1] != "values.yaml" && parts[1] != "Chart.yaml") {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
		if err != nil {
			return nil, nil, fmt.Errorf("chart %s: %w", tgz, err)
		}
		if parts[1] == "values.yaml" {
			values = b
		} else {
			chart = b
		}
	}
	if chart == nil {
		return nil, nil, fmt.Errorf("chart %s: no <chart>/Chart.yaml", tgz)
	}
	return values, chart, nil
}

// ManifestImages lists every `image:` of the objects in a YAML manifest.
func ManifestImages(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if s, ok := t["image"].(string); ok && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
			for _, c := range t {
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var doc any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		walk(doc)
	}
	sort.Strings(out)
	for _, r := range out {
		if _, _, _, err := ParseImageRef(r); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	return out, nil
}

// imageJob is one repository to mirror and its tags, each with who runs it.
type imageJob struct {
	host, repo string
	tags       map[string][]string // tag -> From
}

// mirrorImages copies each requested image from its upstream registry into
// an OCI layout per repository (images/<host_repo>), by digest: the index and
// the image manifests of the lab's platform, their configs and layers, each
// blob checked against its sha256 as it is written. A repository's layout is
// staged next to it and swapped in only when all its tags arrived, so a
// failure leaves the previous layout (or none) and nothing partial.
func mirrorImages(ctx context.Context, o MirrorOptions, reqs []ImageRequest) (map[string]Image, error) {
	jobs := map[string]*imageJob{}
	var order []string
	for _, r := range reqs {
		host, repo, tag, err := ParseImageRef(r.Ref)
		if err != nil {
			return nil, fmt.Errorf("image from %s: %w", r.From, err)
		}
		k := host + "/" + repo
		j := jobs[k]
		if j == nil {
			j = &imageJob{host: host, repo: repo, tags: map[string][]string{}}
			jobs[k] = j
			order = append(order, k)
		}
		if !slices.Contains(j.tags[tag], r.From) {
			j.tags[tag] = append(j.tags[tag], r.From)
		}
	}
	sort.Strings(order)
	out := map[string]Image{}
	for _, k := range order {
		imgs, err := mirrorRepo(ctx, o, jobs[k])
		if err != nil {
			return nil, err
		}
		for ref, img := range imgs {
			out[ref] = img
			fmt.Fprintf(o.Log, "%-28s %s %s (%s, %d bytes)\n", "image", ref, img.Digest, strings.Join(img.Platforms, ","), img.Size)
		}
	}
	return out, nil
}

// upstreamRef is the reference to fetch a mirrored name from: the image's
// own registry, or the override a test or an internal mirror gives for it.
func upstreamRef(o MirrorOptions, host, repo, tagOrDigest string) (name.Reference, error) {
	reg := host
	var opts []name.Option
	if u, ok := o.Registries[host]; ok {
		reg = strings.TrimPrefix(strings.TrimPrefix(u, "https://"), "http://")
		if strings.HasPrefix(u, "http://") {
			opts = append(opts, name.Insecure)
		}
	}
	sep := ":"
	if strings.HasPrefix(tagOrDigest, "sha256:") {
		sep = "@"
	}
	return name.ParseReference(reg+"/"+repo+sep+tagOrDigest, opts...)
}

func mirrorRepo(ctx context.Context, o MirrorOptions, j *imageJob) (map[string]Image, error) {
	dirName := LayoutDir(j.host, j.repo)
	final := filepath.Join(o.Dir, ImagesDir, dirName)
	stage := final + ".part"
	if err := os.RemoveAll(stage); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(stage, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage) // a no-op after the rename
	ropts := []remote.Option{remote.WithContext(ctx)}
	if o.Client != nil && o.Client.Transport != nil {
		ropts = append(ropts, remote.WithTransport(o.Client.Transport))
	}
	w := &layoutWriter{dir: stage}
	var index []ociDescriptor
	out := map[string]Image{}
	tags := make([]string, 0, len(j.tags))
	for t := range j.tags {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	for _, tag := range tags {
		ref := j.host + "/" + j.repo + ":" + tag
		up, err := upstreamRef(o, j.host, j.repo, tag)
		if err != nil {
			return nil, fmt.Errorf("mirroring image %s: %w", ref, err)
		}
		desc, err := remote.Get(up, ropts...)
		if err != nil {
			return nil, fmt.Errorf("mirroring image %s: %w", ref, err)
		}
		before := w.size
		platforms, err := w.manifest(ctx, o, j, desc.Descriptor.MediaType, desc.Manifest, desc.Digest, ropts, true)
		if err != nil {
			return nil, fmt.Errorf("mirroring image %s (from %s): %w; nothing of it was kept", ref, up, err)
		}
		index = append(index, ociDescriptor{MediaType: string(desc.MediaType), Digest: desc.Digest.String(), Size: desc.Size,
			Annotations: map[string]string{refAnnotation: ref}})
		from := append([]string(nil), j.tags[tag]...)
		sort.Strings(from)
		out[ref] = Image{Digest: desc.Digest.String(), Platforms: platforms, Layout: path.Join(ImagesDir, dirName), Size: w.size - before, From: from}
	}
	idx, err := json.MarshalIndent(map[string]any{"schemaVersion": 2, "mediaType": string(types.OCIImageIndex), "manifests": index}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, "index.json"), idx, 0o644); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(final); err != nil {
		return nil, err
	}
	if err := os.Rename(stage, final); err != nil {
		return nil, err
	}
	return out, nil
}

// layoutWriter writes verified blobs into an OCI layout being staged.
type layoutWriter struct {
	dir  string
	size int64
}

// manifest writes a manifest (or index) and what it references. For an
// index, only the image manifests of linux/<arch> are followed; top says this
// is the tag's own manifest (a lone image manifest is checked for platform).
// It returns the platforms written.
func (w *layoutWriter) manifest(ctx context.Context, o MirrorOptions, j *imageJob, mt types.MediaType, raw []byte, d v1.Hash, ropts []remote.Option, top bool) ([]string, error) {
	if err := w.blob(d, int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	if mt.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", d, err)
		}
		var platforms, have []string
		for _, c := range im.Manifests {
			if c.Platform == nil {
				continue
			}
			p := c.Platform.OS + "/" + c.Platform.Architecture
			have = append(have, p)
			if c.Platform.OS != "linux" || c.Platform.Architecture != o.Arch {
				continue
			}
			up, err := upstreamRef(o, j.host, j.repo, c.Digest.String())
			if err != nil {
				return nil, err
			}
			cd, err := remote.Get(up, ropts...)
			if err != nil {
				return nil, fmt.Errorf("%s manifest %s: %w", p, c.Digest, err)
			}
			if cd.Digest != c.Digest {
				return nil, fmt.Errorf("%s manifest: asked for %s, got %s", p, c.Digest, cd.Digest)
			}
			if _, err := w.manifest(ctx, o, j, cd.MediaType, cd.Manifest, cd.Digest, ropts, false); err != nil {
				return nil, err
			}
			platforms = append(platforms, p)
		}
		if len(platforms) == 0 {
			return nil, fmt.Errorf("no linux/%s image in its index (it has: %s)", o.Arch, strings.Join(have, ", "))
		}
		return platforms, nil
	}
	if !mt.IsImage() {
		return nil, fmt.Errorf("manifest %s has media type %q: neither an image nor an index", d, mt)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	blobs := append([]v1.Descriptor{m.Config}, m.Layers...)
	var cfg []byte
	for i, b := range blobs {
		up, err := upstreamRef(o, j.host, j.repo, b.Digest.String())
		if err != nil {
			return nil, err
		}
		l, err := remote.Layer(up.Context().Digest(b.Digest.String()), ropts...)
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", b.Digest, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", b.Digest, err)
		}
		var r io.Reader = rc
		var buf bytes.Buffer
		if i == 0 {
			r = io.TeeReader(rc, &buf)
		}
		err = w.blob(b.Digest, b.Size, r)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", b.Digest, err)
		}
		if i == 0 {
			cfg = buf.Bytes()
		}
	}
	var cf struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	}
	if err := json.Unmarshal(cfg, &cf); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	p := cf.OS + "/" + cf.Architecture
	if top && (cf.OS != "linux" || cf.Architecture != o.Arch) {
		return nil, fmt.Errorf("a single-platform image for %s, not linux/%s", p, o.Arch)
	}
	return []string{p}, nil
}

// blob writes one blob, refusing it unless its size and sha256 match d.
func (w *layoutWriter) blob(d v1.Hash, size int64, r io.Reader) error {
	if d.Algorithm != "sha256" {
		return fmt.Errorf("digest algorithm %s: only sha256 is mirrored", d.Algorithm)
	}
	dest := filepath.Join(w.dir, "blobs", "sha256", d.Hex)
	if _, err := os.Stat(dest); err == nil {
		return nil // already written for another tag or platform
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex || n != size {
		return fmt.Errorf("got %d bytes with sha256:%s, want %d bytes with %s: rejected", n, got, size, d)
	}
	w.size += n
	return os.Rename(tmp.Name(), dest)
}
