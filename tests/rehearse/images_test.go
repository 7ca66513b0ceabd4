//go:build rehearse

package rehearse

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/simlab/simlab/infra/artifacts"
)

// imageFile is one file of an image built here: its path in the image and
// where its bytes come from (a file on this machine), or a symlink target.
type imageFile struct {
	path, from, link string
	mode             int64
}

// buildImage is a single-layer linux/amd64 image of files, run as cmd
// (entrypoint) with PATH set the way upstream's images set it.
func buildImage(files []imageFile, entrypoint []string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	for _, f := range files {
		p := strings.TrimPrefix(f.path, "/")
		for d := filepath.Dir(p); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var dl []string
	for d := range dirs {
		dl = append(dl, d)
	}
	sort.Strings(dl)
	for _, d := range dl {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		p := strings.TrimPrefix(f.path, "/")
		if f.link != "" {
			if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeSymlink, Linkname: f.link, Mode: 0o777}); err != nil {
				return nil, err
			}
			continue
		}
		data, err := os.ReadFile(f.from)
		if err != nil {
			return nil, err
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = entrypoint
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return mutate.ConfigFile(img, cf)
}

// debianFiles are the files (and symlinks) the named Debian packages put in
// the nodes' root base, plus the alternatives links starting with prefix:
// what kube-proxy's image needs to run iptables, as upstream's
// distroless-iptables base gives it.
func debianFiles(base string, pkgs []string, altPrefix string) ([]imageFile, error) {
	seen := map[string]bool{}
	var out []imageFile
	add := func(p string) error {
		if seen[p] {
			return nil
		}
		fi, err := os.Lstat(filepath.Join(base, p))
		if err != nil || fi.IsDir() {
			return nil // dpkg lists directories; diversions may be absent
		}
		seen[p] = true
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(filepath.Join(base, p))
			if err != nil {
				return err
			}
			out = append(out, imageFile{path: p, link: target})
			return nil
		}
		out = append(out, imageFile{path: p, from: filepath.Join(base, p), mode: int64(fi.Mode().Perm())})
		return nil
	}
	for _, pkg := range pkgs {
		cmd := exec.Command("dpkg-query", "--admindir="+filepath.Join(base, "var/lib/dpkg"), "-L", pkg)
		list, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("dpkg-query -L %s in %s: %w", pkg, base, err)
		}
		for _, p := range strings.Split(strings.TrimSpace(string(list)), "\n") {
			if err := add(p); err != nil {
				return nil, err
			}
		}
	}
	if altPrefix != "" {
		// update-alternatives' links: /usr/sbin/iptables -> /etc/alternatives/iptables -> iptables-nft.
		alts, _ := filepath.Glob(filepath.Join(base, "etc/alternatives", altPrefix+"*"))
		links, _ := filepath.Glob(filepath.Join(base, "usr/sbin", altPrefix+"*"))
		for _, a := range append(alts, links...) {
			if err := add(strings.TrimPrefix(a, base)); err != nil {
				return nil, err
			}
		}
	}
	// The dynamic loader's usual path (a symlink under /lib64 on amd64).
	if err := add("/lib64/ld-linux-x86-64.so.2"); err != nil {
		return nil, err
	}
	return out, nil
}

// iptablesPackages are the Debian packages iptables (nft) runs from, libc
// included: kube-proxy's and flanneld's images carry them.
var iptablesPackages = []string{"libc6", "iptables", "libip4tc2", "libip6tc2", "libxtables12",
	"libnftnl11", "libmnl0", "libnetfilter-conntrack3", "libnfnetlink0"}

// upstream is an in-process registry holding the images built here under
// their upstream names (registry.k8s.io/...), which `simlab artifacts
// mirror`'s image step copies by digest into the mirror, as it would from
// the internet.
type upstream struct {
	srv *httptest.Server
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &upstream{srv: srv}
}

// push stores img as ref (host/repo:tag), its host replaced by the registry's.
func (u *upstream) push(ctx context.Context, ref string, img v1.Image) error {
	_, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return fmt.Errorf("image %s has no registry host", ref)
	}
	r, err := name.ParseReference(strings.TrimPrefix(u.srv.URL, "http://")+"/"+rest, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}

// registries maps every upstream host of refs to this registry.
func (u *upstream) registries(refs []string) map[string]string {
	m := map[string]string{}
	for _, r := range refs {
		host, _, _ := strings.Cut(r, "/")
		m[host] = u.srv.URL
	}
	return m
}

// kubeadmImages builds every image kubeadm's own list names from the
// binaries built here: the control plane, kube-proxy (with Debian's
// iptables), etcd (the tools module's etcd, whatever tag kubeadm asks for),
// pause (compiled from the Kubernetes module's pause.c) and CoreDNS (built
// here at the release kubeadm names).
func kubeadmImages(e *env, refs []string) (map[string]v1.Image, []string, error) {
	out := map[string]v1.Image{}
	var standins []string
	// The binaries built here link glibc dynamically (cgo): every image
	// carries Debian's libc from the nodes' root, as a distroless base would.
	libc, err := debianFiles(e.base, []string{"libc6"}, "")
	if err != nil {
		return nil, nil, err
	}
	with := func(files ...imageFile) []imageFile { return append(append([]imageFile(nil), libc...), files...) }
	for _, ref := range refs {
		repo := ref[strings.Index(ref, "/")+1 : strings.LastIndex(ref, ":")]
		var img v1.Image
		switch repo {
		case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
			img, err = buildImage(with(imageFile{path: "/usr/local/bin/" + repo, from: e.kubeBin(repo)}), nil)
		case "kube-proxy":
			var files []imageFile
			files, err = debianFiles(e.base, append(iptablesPackages, "conntrack"), "ip")
			if err == nil {
				files = append(files, imageFile{path: "/usr/local/bin/kube-proxy", from: e.kubeBin("kube-proxy")})
				img, err = buildImage(files, nil)
			}
		case "etcd":
			standins = append(standins, ref+" carries the tools module's "+filepath.Base(e.etcdBin()))
			img, err = buildImage(with(imageFile{path: "/usr/local/bin/etcd", from: e.etcdBin()}), nil)
		case "pause":
			img, err = buildImage([]imageFile{{path: "/pause", from: e.pause}}, []string{"/pause"})
		case "coredns/coredns":
			img, err = buildImage([]imageFile{{path: "/coredns", from: e.coredns}}, []string{"/coredns"})
		default:
			return nil, nil, fmt.Errorf("kubeadm lists %s: the rehearsal builds no such image", ref)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("building %s: %w", ref, err)
		}
		out[ref] = img
	}
	return out, standins, nil
}

// flannelImages builds the two images the cluster layer's Flannel DaemonSet
// runs: flanneld (built here at the pinned release; with Debian's iptables
// for --ip-masq) and the CNI plugin installer, whose `flannel` plugin is
// containernetworking/plugins' meta/flannel v0.9.1 — the same program before
// it moved to flannel-io/cni-plugin, which the module proxy does not serve (a
// stand-in). Both `cp` with Debian's static busybox, as upstream's
// Alpine-based images do with theirs.
func flannelImages(e *env, flannelRef, cniRef string) (map[string]v1.Image, error) {
	cp := []imageFile{{path: "/bin/busybox", from: e.busybox}, {path: "/bin/cp", link: "busybox"}, {path: "/bin/sh", link: "busybox"}}
	files, err := debianFiles(e.base, iptablesPackages, "ip")
	if err != nil {
		return nil, err
	}
	files = append(append(files, cp...), imageFile{path: "/opt/bin/flanneld", from: e.flanneld})
	flannel, err := buildImage(files, []string{"/opt/bin/flanneld"})
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", flannelRef, err)
	}
	cni, err := buildImage(append(cp, imageFile{path: "/flannel", from: e.flannelCNI}), []string{"/bin/sh"})
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", cniRef, err)
	}
	return map[string]v1.Image{flannelRef: flannel, cniRef: cni}, nil
}

// mirrorImages pushes imgs to an in-process upstream registry and runs the
// mirror's own image step (artifacts.Mirror, nodes and deploy artifacts
// skipped) into dir: what lands there is what `simlab artifacts mirror`
// would have written, digests and layouts included.
func mirrorImages(ctx context.Context, t *testing.T, dir string, mv artifacts.ManifestVersions, imgs map[string]v1.Image) map[string]artifacts.Image {
	t.Helper()
	up := newUpstream(t)
	var refs []string
	var reqs []artifacts.ImageRequest
	for ref, img := range imgs {
		if err := up.push(ctx, ref, img); err != nil {
			t.Fatalf("pushing %s: %v", ref, err)
		}
		refs = append(refs, ref)
		from := artifacts.FromKubeadm
		if !strings.HasPrefix(ref, "registry.k8s.io/") {
			from = "cluster"
		}
		reqs = append(reqs, artifacts.ImageRequest{Ref: ref, From: from})
	}
	var logb bytes.Buffer
	m, err := artifacts.Mirror(ctx, artifacts.MirrorOptions{Dir: dir, Versions: mv, SkipNodes: true,
		Images: reqs, Registries: up.registries(refs), Log: &logb})
	if err != nil {
		t.Fatalf("mirroring the images: %v\n%s", err, logb.String())
	}
	return m.Images
}
