package artifacts

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// Upstreams are the base URLs the mirror downloads from. Tests point them at
// an httptest server; an air-gapped site may point them at an internal mirror.
type Upstreams struct {
	// Kubernetes serves /release/<v>/bin/linux/<arch>/<binary>{,.sha512} (dl.k8s.io).
	Kubernetes string
	// GitHub serves the cri-tools and CNI plugins release assets (github.com).
	GitHub string
	// FCOS serves /prod/streams/<stream>/builds/<release>/<arch>/meta.json and
	// the images next to it (builds.coreos.fedoraproject.org).
	FCOS string
	// GitHubRaw serves files of Git trees at a ref (raw.githubusercontent.com):
	// Rook's CRDs and csi-driver-nfs's chart repository.
	GitHubRaw string
	// RookCharts and StrimziCharts are the operators' Helm repositories.
	RookCharts    string
	StrimziCharts string
}

// DefaultUpstreams are the public upstreams.
func DefaultUpstreams() Upstreams {
	return Upstreams{
		Kubernetes:    "https://dl.k8s.io",
		GitHub:        "https://github.com",
		FCOS:          "https://builds.coreos.fedoraproject.org",
		GitHubRaw:     "https://raw.githubusercontent.com",
		RookCharts:    "https://charts.rook.io/release",
		StrimziCharts: "https://strimzi.io/charts",
	}
}

// withDefaults fills every empty field from DefaultUpstreams.
func (u Upstreams) withDefaults() Upstreams {
	def := DefaultUpstreams()
	for _, f := range []struct {
		v *string
		d string
	}{
		{&u.Kubernetes, def.Kubernetes}, {&u.GitHub, def.GitHub}, {&u.FCOS, def.FCOS},
		{&u.GitHubRaw, def.GitHubRaw}, {&u.RookCharts, def.RookCharts}, {&u.StrimziCharts, def.StrimziCharts},
	} {
		if *f.v == "" {
			*f.v = f.d
		}
	}
	return u
}

// MirrorOptions configure Mirror.
type MirrorOptions struct {
	// Dir is the mirror directory; manifest.json is written there.
	Dir string
	// Versions are the pins to mirror.
	Versions ManifestVersions
	// Arch is the Kubernetes architecture name (amd64 or arm64); default amd64.
	Arch string
	// Upstreams are the base URLs; empty fields take DefaultUpstreams.
	Upstreams Upstreams
	// SkipFCOS mirrors only the Kubernetes artifacts.
	SkipFCOS bool
	// SkipNodes mirrors neither the node binaries nor the Fedora CoreOS
	// images (a stack in existing mode has no nodes to provision).
	SkipNodes bool
	// Deploy names the deploy artifacts (DeployArtifacts) to mirror: the
	// charts and manifests the stack applies.
	Deploy []string
	// SkipImages mirrors no container image.
	SkipImages bool
	// Images are the images the stack's layers run (config.Config.Images)
	// and any extra the user names. The mirror adds kubeadm's list (from the
	// mirrored kubeadm) and the images the mirrored charts' values and
	// manifests name.
	Images []ImageRequest
	// Registries maps an upstream registry host (quay.io) to the base URL
	// to pull its images from instead (an internal mirror; a test's
	// registry). Images keep their upstream names either way.
	Registries map[string]string
	// Client is the HTTP client; default http.DefaultClient.
	Client *http.Client
	// Log receives one line per artifact; nil discards.
	Log io.Writer
}

// source is one upstream artifact and the checksum it must match.
type source struct {
	name     string
	url      string
	rel      string // path in the mirror directory
	algo     string // sha256 or sha512
	checksum string // hex, when known from metadata
	sumURL   string // URL of a published checksum file, otherwise
}

// Mirror downloads every pinned artifact, verifies it against its upstream
// published checksum, and writes the manifest. Each file is written to a temp
// file next to its destination and renamed only after verification; a file
// already present with the published checksum is kept. On error nothing
// half-written remains and the previous manifest is left untouched.
func Mirror(ctx context.Context, o MirrorOptions) (*Manifest, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("mirror: a directory is required")
	}
	if o.Arch == "" {
		o.Arch = defaultArchName
	}
	o.Upstreams = o.Upstreams.withDefaults()
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	var srcs []source
	if !o.SkipNodes {
		var err error
		if srcs, err = sources(o); err != nil {
			return nil, err
		}
	}
	if !o.SkipNodes && !o.SkipFCOS {
		fc, err := fcosSources(ctx, o)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, fc...)
	}
	ds, err := deployMirrorSources(ctx, o)
	if err != nil {
		return nil, err
	}
	srcs = append(srcs, ds...)
	m := &Manifest{Schema: ManifestSchema, Arch: o.Arch, Versions: o.Versions, Artifacts: map[string]Artifact{}}
	for _, s := range srcs {
		a, err := fetchVerified(ctx, o, s)
		if err != nil {
			return nil, fmt.Errorf("mirroring %s: %w", s.name, err)
		}
		m.Artifacts[s.name] = a
		verified := a.Upstream
		if verified == "" {
			verified = "no upstream checksum; sha512 recorded"
		}
		fmt.Fprintf(o.Log, "%-28s %s (%d bytes, %s)\n", s.name, a.Path, a.Size, verified)
	}
	if !o.SkipImages {
		reqs, err := imageRequests(ctx, o, m)
		if err != nil {
			return nil, err
		}
		if m.Images, err = mirrorImages(ctx, o, reqs); err != nil {
			return nil, err
		}
	}
	if err := m.Write(o.Dir); err != nil {
		return nil, err
	}
	return m, nil
}

// imageRequests is every image the mirror copies: the stack's own (o.Images),
// kubeadm's list from the mirrored kubeadm, and those the mirrored charts'
// values and manifests name.
func imageRequests(ctx context.Context, o MirrorOptions, m *Manifest) ([]ImageRequest, error) {
	reqs := append([]ImageRequest(nil), o.Images...)
	if a, ok := m.Artifacts[Kubeadm]; ok {
		bin := filepath.Join(o.Dir, filepath.FromSlash(a.Path))
		if o.Arch != runtime.GOARCH {
			// The list depends on the release only: ask this host's kubeadm.
			tmp, err := os.MkdirTemp(o.Dir, ".kubeadm-"+runtime.GOARCH+"-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(tmp)
			ho := o
			ho.Arch = runtime.GOARCH
			srcs, err := sources(ho)
			if err != nil {
				return nil, err
			}
			bin = filepath.Join(tmp, Kubeadm)
			i := slices.IndexFunc(srcs, func(s source) bool { return s.name == Kubeadm })
			if _, _, err := download(ctx, ho, srcs[i], bin, ""); err != nil {
				return nil, fmt.Errorf("kubeadm for %s (to list its images): %w", runtime.GOARCH, err)
			}
		}
		if err := os.Chmod(bin, 0o755); err != nil {
			return nil, err
		}
		refs, err := KubeadmImages(ctx, bin, o.Versions.Kubernetes)
		if err != nil {
			return nil, fmt.Errorf("listing kubeadm's images: %w", err)
		}
		for _, r := range refs {
			reqs = append(reqs, ImageRequest{Ref: r, From: FromKubeadm})
		}
	}
	deployed, err := DeployImages(o.Dir, m, o.Deploy)
	if err != nil {
		return nil, err
	}
	return append(reqs, deployed...), nil
}

// DeployImages lists the images the named deploy artifacts of a mirror name:
// a chart's values (ChartImages), a manifest's objects (ManifestImages).
// Names the manifest lacks are skipped.
func DeployImages(dir string, m *Manifest, names []string) ([]ImageRequest, error) {
	var reqs []ImageRequest
	for _, name := range names {
		a, ok := m.Artifacts[name]
		if !ok {
			continue
		}
		file := filepath.Join(dir, filepath.FromSlash(a.Path))
		list := ManifestImages
		if strings.HasSuffix(a.Path, ".tgz") {
			list = ChartImages
		}
		refs, err := list(file)
		if err != nil {
			return nil, fmt.Errorf("listing the images of %s: %w", name, err)
		}
		for _, r := range refs {
			reqs = append(reqs, ImageRequest{Ref: r, From: name})
		}
	}
	return reqs, nil
}

func sources(o MirrorOptions) ([]source, error) {
	v := o.Versions
	for key, val := range map[string]string{"kubernetes": v.Kubernetes, "crictl": v.Crictl, "cniPlugins": v.CNIPlugins} {
		if val == "" || strings.ContainsAny(val, "/\\ ") {
			return nil, fmt.Errorf("mirror: versions.%s must be a release tag, got %q", key, val)
		}
	}
	var out []source
	for _, bin := range []string{Kubeadm, Kubelet, Kubectl} {
		u := fmt.Sprintf("%s/release/%s/bin/linux/%s/%s", strings.TrimRight(o.Upstreams.Kubernetes, "/"), v.Kubernetes, o.Arch, bin)
		out = append(out, source{name: bin, url: u, sumURL: u + ".sha512", algo: "sha512",
			rel: path.Join("kubernetes", v.Kubernetes, o.Arch, bin)})
	}
	gh := strings.TrimRight(o.Upstreams.GitHub, "/")
	crictl := fmt.Sprintf("crictl-%s-linux-%s.tar.gz", v.Crictl, o.Arch)
	u := fmt.Sprintf("%s/kubernetes-sigs/cri-tools/releases/download/%s/%s", gh, v.Crictl, crictl)
	out = append(out, source{name: Crictl, url: u, sumURL: u + ".sha256", algo: "sha256",
		rel: path.Join("cri-tools", v.Crictl, crictl)})
	cni := fmt.Sprintf("cni-plugins-linux-%s-%s.tgz", o.Arch, v.CNIPlugins)
	u = fmt.Sprintf("%s/containernetworking/plugins/releases/download/%s/%s", gh, v.CNIPlugins, cni)
	out = append(out, source{name: CNIPlugins, url: u, sumURL: u + ".sha512", algo: "sha512",
		rel: path.Join("cni-plugins", v.CNIPlugins, cni)})
	return out, nil
}

// fcosMeta is the part of a Fedora CoreOS build's meta.json the mirror reads.
type fcosMeta struct {
	BuildID string `json:"buildid"`
	Images  map[string]struct {
		Path   string `json:"path"`
		SHA256 string `json:"sha256"`
	} `json:"images"`
}

// fcosImages maps artifact names to meta.json image keys.
var fcosImages = map[string]string{
	FCOSQemu:       "qemu",
	FCOSLiveKernel: "live-kernel",
	FCOSLiveInitrd: "live-initramfs",
	FCOSLiveRootfs: "live-rootfs",
}

// fcosSources reads the pinned build's published metadata, which carries the
// sha256 of every image of the release.
func fcosSources(ctx context.Context, o MirrorOptions) ([]source, error) {
	v := o.Versions
	if v.FCOSStream == "" || v.FCOSRelease == "" || strings.ContainsAny(v.FCOSStream+v.FCOSRelease, "/\\ ") {
		return nil, fmt.Errorf("mirror: versions.fcosStream and versions.fcosRelease must be set, got %q and %q", v.FCOSStream, v.FCOSRelease)
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[o.Arch]
	if arch == "" {
		return nil, fmt.Errorf("mirror: no Fedora CoreOS build for arch %q", o.Arch)
	}
	base := fmt.Sprintf("%s/prod/streams/%s/builds/%s/%s", strings.TrimRight(o.Upstreams.FCOS, "/"), v.FCOSStream, v.FCOSRelease, arch)
	body, err := get(ctx, o.Client, base+"/meta.json", 16<<20)
	if err != nil {
		return nil, fmt.Errorf("mirroring Fedora CoreOS metadata: %w", err)
	}
	var meta fcosMeta
	if err := json.Unmarshal(body, &meta); err != nil {
		return nil, fmt.Errorf("mirroring Fedora CoreOS metadata: %s/meta.json: %w", base, err)
	}
	if meta.BuildID != "" && meta.BuildID != v.FCOSRelease {
		return nil, fmt.Errorf("mirroring Fedora CoreOS metadata: %s/meta.json describes build %q, want %q", base, meta.BuildID, v.FCOSRelease)
	}
	var out []source
	for _, name := range FCOSArtifacts {
		img, ok := meta.Images[fcosImages[name]]
		if !ok || img.Path == "" || img.SHA256 == "" {
			return nil, fmt.Errorf("mirroring %s: %s/meta.json has no image %q with path and sha256", name, base, fcosImages[name])
		}
		if strings.Contains(img.Path, "/") || strings.HasPrefix(img.Path, ".") {
			return nil, fmt.Errorf("mirroring %s: meta.json image path %q is not a plain file name", name, img.Path)
		}
		out = append(out, source{name: name, url: base + "/" + img.Path, algo: "sha256", checksum: strings.ToLower(img.SHA256),
			rel: path.Join("fcos", v.FCOSRelease, img.Path)})
	}
	return out, nil
}

// fetchVerified makes sure s is in the mirror with its published checksum.
// A source without one (a release manifest) is downloaded afresh each time and
// its sha512 recorded: from then on the manifest pins it.
func fetchVerified(ctx context.Context, o MirrorOptions, s source) (Artifact, error) {
	want := s.checksum
	if want == "" && s.sumURL == "" {
		return fetchUnverified(ctx, o, s)
	}
	if want == "" {
		body, err := get(ctx, o.Client, s.sumURL, 64<<10)
		if err != nil {
			return Artifact{}, fmt.Errorf("published checksum: %w", err)
		}
		want, err = parseChecksum(body, s.algo)
		if err != nil {
			return Artifact{}, fmt.Errorf("published checksum %s: %w", s.sumURL, err)
		}
	}
	if err := checkHex(want, s.algo); err != nil {
		return Artifact{}, fmt.Errorf("published checksum: %w", err)
	}
	dest := filepath.Join(o.Dir, filepath.FromSlash(s.rel))
	art := Artifact{Path: s.rel, Source: s.url, Upstream: s.algo + ":" + want}
	// Keep a file already mirrored with the same published checksum.
	if f, err := os.Open(dest); err == nil {
		sums, size, err := hashReader(f, s.algo)
		f.Close()
		if err == nil && sums[s.algo] == want {
			art.SHA512, art.Size = sums["sha512"], size
			return art, nil
		}
	}
	sums, size, err := download(ctx, o, s, dest, want)
	if err != nil {
		return Artifact{}, err
	}
	art.SHA512, art.Size = sums["sha512"], size
	return art, nil
}

// fetchUnverified downloads a source that has no published checksum.
func fetchUnverified(ctx context.Context, o MirrorOptions, s source) (Artifact, error) {
	dest := filepath.Join(o.Dir, filepath.FromSlash(s.rel))
	sums, size, err := download(ctx, o, s, dest, "")
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Path: s.rel, Source: s.url, SHA512: sums["sha512"], Size: size}, nil
}

// download fetches s.url into dest through a temp file that is renamed only
// when the whole body arrived and, if want is set, its s.algo digest matches.
func download(ctx context.Context, o MirrorOptions, s source, dest, want string) (map[string]string, int64, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".part-*")
	if err != nil {
		return nil, 0, err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	sums, size, err := hashReader(io.TeeReader(resp.Body, tmp), s.algo)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w (partial download discarded)", s.url, err)
	}
	if resp.ContentLength >= 0 && size != resp.ContentLength {
		return nil, 0, fmt.Errorf("GET %s: got %d of %d bytes (partial download discarded)", s.url, size, resp.ContentLength)
	}
	if got := sums[s.algo]; want != "" && got != want {
		return nil, 0, fmt.Errorf("%s of %s is %s but upstream published %s: download rejected and discarded", s.algo, s.url, got, want)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return nil, 0, err
	}
	return sums, size, nil
}

// hashReader returns the sha512 and the algo hash (hex) of r, and its size.
func hashReader(r io.Reader, algo string) (map[string]string, int64, error) {
	hs := map[string]hash.Hash{"sha512": sha512.New()}
	if algo == "sha256" {
		hs["sha256"] = sha256.New()
	}
	ws := make([]io.Writer, 0, len(hs))
	for _, h := range hs {
		ws = append(ws, h)
	}
	n, err := io.Copy(io.MultiWriter(ws...), r)
	if err != nil {
		return nil, n, err
	}
	out := map[string]string{}
	for k, h := range hs {
		out[k] = hex.EncodeToString(h.Sum(nil))
	}
	return out, n, nil
}

// parseChecksum reads a published checksum file: the hex digest, optionally
// followed by a file name (sha256sum format).
func parseChecksum(body []byte, algo string) (string, error) {
	fields := strings.Fields(string(body))
	if len(fields) == 0 {
		return "", fmt.Errorf("empty")
	}
	sum := strings.ToLower(fields[0])
	return sum, checkHex(sum, algo)
}

func checkHex(sum, algo string) error {
	n := map[string]int{"sha256": 64, "sha512": 128}[algo]
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != n {
		return fmt.Errorf("not a %s digest: %q", algo, truncate(sum, 40))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// get fetches a small document (metadata, checksum file).
func get(ctx context.Context, c *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", u, limit)
	}
	return body, nil
}
