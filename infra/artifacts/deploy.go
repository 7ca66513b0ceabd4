package artifacts

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/simlab/simlab/infra/config"
)

// Deploy artifacts: the Helm charts and manifests the program applies to the
// cluster. The program takes each from the mirror (Resolve), never from a
// URL, so `pulumi up` needs no internet.
const (
	ChartRook             = "chart-rook-ceph"
	ChartStrimzi          = "chart-strimzi-kafka-operator"
	ChartCSIDriverNFS     = "chart-csi-driver-nfs"
	ManifestRookCRDs      = "manifest-rook-crds"
	ManifestStrimziCRDs   = "manifest-strimzi-crds"
	ManifestMetricsServer = "manifest-metrics-server"
)

// DeployArtifacts lists every deploy artifact, in mirror order.
var DeployArtifacts = []string{ChartRook, ChartStrimzi, ChartCSIDriverNFS,
	ManifestRookCRDs, ManifestStrimziCRDs, ManifestMetricsServer}

// VersionsFor are the pins of a stack that its artifact mirror is made for.
func VersionsFor(v config.Versions) ManifestVersions {
	return ManifestVersions{
		Kubernetes: v.Kubernetes, Crictl: v.Crictl, CNIPlugins: v.CNIPlugins,
		FCOSStream: v.FCOSStream, FCOSRelease: v.FCOSRelease,
		Rook: v.Rook, Strimzi: v.Strimzi, CSIDriverNFS: v.CSIDriverNFS, MetricsServer: v.MetricsServer,
	}
}

// DeployFor names the deploy artifacts a stack applies, so `simlab artifacts mirror --stack S`
// mirrors exactly them and `pulumi up` finds each in the mirror.
func DeployFor(c *config.Config) []string {
	var out []string
	if c.Provider != config.ProviderExisting {
		out = append(out, ManifestMetricsServer)
	}
	if c.Storage.Ceph.Enabled {
		out = append(out, ChartRook, ManifestRookCRDs)
	}
	if c.Storage.Kafka.Enabled {
		out = append(out, ChartStrimzi, ManifestStrimziCRDs)
	}
	if c.Storage.NFS.Enabled {
		out = append(out, ChartCSIDriverNFS)
	}
	return out
}

// chartRef names a chart in a Helm repository.
type chartRef struct {
	repo, name, version string
}

// deploySource is where a deploy artifact comes from upstream: a chart of a
// Helm repository (verified against the digest in the repository's
// index.yaml) or a manifest at a pinned release URL (upstream publishes no
// checksum for these: the mirror records the sha512 it downloaded, and the
// program verifies that).
type deploySource struct {
	chart *chartRef
	url   string
	rel   string
	// version is the pin (a ManifestVersions field) the artifact depends on.
	versionKey, version string
}

// deploySources returns where each deploy artifact comes from for the pins in v.
func deploySources(v ManifestVersions, up Upstreams) map[string]deploySource {
	gh, raw := strings.TrimRight(up.GitHub, "/"), strings.TrimRight(up.GitHubRaw, "/")
	return map[string]deploySource{
		ChartRook: {chart: &chartRef{repo: up.RookCharts, name: "rook-ceph", version: v.Rook},
			rel: path.Join("charts", "rook-ceph-"+v.Rook+".tgz"), versionKey: "rook", version: v.Rook},
		ChartStrimzi: {chart: &chartRef{repo: up.StrimziCharts, name: "strimzi-kafka-operator", version: v.Strimzi},
			rel: path.Join("charts", "strimzi-kafka-operator-"+v.Strimzi+".tgz"), versionKey: "strimzi", version: v.Strimzi},
		// csi-driver-nfs publishes its chart repository in its Git tree; the
		// index lists every release, and the version pins which one.
		ChartCSIDriverNFS: {chart: &chartRef{repo: raw + "/kubernetes-csi/csi-driver-nfs/master/charts", name: "csi-driver-nfs", version: v.CSIDriverNFS},
			rel: path.Join("charts", "csi-driver-nfs-"+v.CSIDriverNFS+".tgz"), versionKey: "csiDriverNFS", version: v.CSIDriverNFS},
		ManifestRookCRDs: {url: raw + "/rook/rook/" + v.Rook + "/deploy/examples/crds.yaml",
			rel: path.Join("manifests", "rook-crds-"+v.Rook+".yaml"), versionKey: "rook", version: v.Rook},
		ManifestStrimziCRDs: {url: gh + "/strimzi/strimzi-kafka-operator/releases/download/" + v.Strimzi + "/strimzi-crds-" + v.Strimzi + ".yaml",
			rel: path.Join("manifests", "strimzi-crds-"+v.Strimzi+".yaml"), versionKey: "strimzi", version: v.Strimzi},
		ManifestMetricsServer: {url: gh + "/kubernetes-sigs/metrics-server/releases/download/" + v.MetricsServer + "/components.yaml",
			rel: path.Join("manifests", "metrics-server-"+v.MetricsServer+".yaml"), versionKey: "metricsServer", version: v.MetricsServer},
	}
}

// DeploySpec is what a mirror made for some pins holds of a deploy artifact.
type DeploySpec struct {
	// Path is its slash-separated path relative to the mirror directory.
	Path string
	// Pin is the simlab:versions key that pins it, Version that pin's value.
	Pin, Version string
}

// Deploy describes the deploy artifact name in a mirror made for v.
func Deploy(name string, v ManifestVersions) (DeploySpec, error) {
	s, ok := deploySources(v, DefaultUpstreams())[name]
	if !ok {
		return DeploySpec{}, fmt.Errorf("%q is not a deploy artifact", name)
	}
	return DeploySpec{Path: s.rel, Pin: s.versionKey, Version: s.version}, nil
}

// deployMirrorSources resolves the named deploy artifacts to downloadable
// sources: a chart's URL and sha256 come from its repository's index.yaml.
func deployMirrorSources(ctx context.Context, o MirrorOptions) ([]source, error) {
	all := deploySources(o.Versions, o.Upstreams)
	var out []source
	for _, name := range o.Deploy {
		d, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("mirror: %q is not a deploy artifact (want one of %s)", name, strings.Join(DeployArtifacts, ", "))
		}
		if d.version == "" || strings.ContainsAny(d.version, "/\\ ") {
			return nil, fmt.Errorf("mirror: versions.%s must be a release tag for %s, got %q", d.versionKey, name, d.version)
		}
		if d.chart == nil {
			out = append(out, source{name: name, url: d.url, rel: d.rel, algo: "sha512"})
			continue
		}
		u, digest, err := chartURL(ctx, o, *d.chart)
		if err != nil {
			return nil, fmt.Errorf("mirroring %s: %w", name, err)
		}
		out = append(out, source{name: name, url: u, rel: d.rel, algo: "sha256", checksum: digest})
	}
	return out, nil
}

// helmIndex is the part of a Helm repository's index.yaml the mirror reads.
type helmIndex struct {
	Entries map[string][]struct {
		Version string   `yaml:"version"`
		Digest  string   `yaml:"digest"`
		URLs    []string `yaml:"urls"`
	} `yaml:"entries"`
}

// chartURL finds a chart version in its repository's index: the archive's
// URL (relative URLs resolve against the repository) and its sha256.
func chartURL(ctx context.Context, o MirrorOptions, c chartRef) (string, string, error) {
	repo := strings.TrimRight(c.repo, "/")
	body, err := get(ctx, o.Client, repo+"/index.yaml", 64<<20)
	if err != nil {
		return "", "", fmt.Errorf("chart repository index: %w", err)
	}
	var idx helmIndex
	if err := yaml.Unmarshal(body, &idx); err != nil {
		return "", "", fmt.Errorf("chart repository index %s/index.yaml: %w", repo, err)
	}
	var have []string
	for _, e := range idx.Entries[c.name] {
		// Repositories spell versions with and without a leading v.
		if strings.TrimPrefix(e.Version, "v") != strings.TrimPrefix(c.version, "v") {
			have = append(have, e.Version)
			continue
		}
		if len(e.URLs) == 0 {
			return "", "", fmt.Errorf("%s/index.yaml: %s %s has no URL", repo, c.name, e.Version)
		}
		base, err := url.Parse(repo + "/")
		if err != nil {
			return "", "", err
		}
		ref, err := url.Parse(e.URLs[0])
		if err != nil {
			return "", "", fmt.Errorf("%s/index.yaml: %s %s: bad URL %q", repo, c.name, e.Version, e.URLs[0])
		}
		digest := strings.ToLower(e.Digest)
		if err := checkHex(digest, "sha256"); err != nil {
			return "", "", fmt.Errorf("%s/index.yaml: %s %s: digest: %w", repo, c.name, e.Version, err)
		}
		return base.ResolveReference(ref).String(), digest, nil
	}
	if len(have) > 5 {
		have = append(have[:5], "...")
	}
	return "", "", fmt.Errorf("%s/index.yaml has no %s %s (it has %s)", repo, c.name, c.version, strings.Join(have, ", "))
}

// Resolve returns the absolute path of a mirrored artifact in dir after
// checking that its bytes have the manifest's sha512: what the program
// applies is exactly what the mirror verified. The error names the artifact,
// the file and the command that fixes it.
func (m *Manifest) Resolve(dir, name string) (string, error) {
	a, err := m.Get(name)
	if err != nil {
		return "", fmt.Errorf("%w; the mirror in %s lacks it", err, dir)
	}
	abs, err := filepath.Abs(filepath.Join(dir, filepath.FromSlash(a.Path)))
	if err != nil {
		return "", err
	}
	got, err := fileSHA512(abs)
	if err != nil {
		return "", fmt.Errorf("artifact %s: %w (re-run `simlab artifacts mirror`)", name, err)
	}
	if got != a.SHA512 {
		return "", fmt.Errorf("artifact %s: %s has sha512 %s, the manifest says %s: the mirror was changed "+
			"after it was verified (re-run `simlab artifacts mirror`)", name, abs, truncate(got, 16), truncate(a.SHA512, 16))
	}
	return abs, nil
}
