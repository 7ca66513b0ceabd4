package ignition

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	ign "github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
)

var update = flag.Bool("update", false, "rewrite testdata/manifest.json and the golden files")

// FakeArtifact is the content of a test artifact: tiny and deterministic, so
// the committed test manifest's hashes can be recomputed by anyone.
func fakeArtifact(name, version string) []byte {
	return []byte(fmt.Sprintf("simlab test artifact %s %s\n", name, version))
}

// testManifestFor builds the manifest of the fake artifacts for versions v,
// laid out as `simlab artifacts mirror` lays out the real ones.
func testManifestFor(v config.Versions) *artifacts.Manifest {
	m := &artifacts.Manifest{Schema: artifacts.ManifestSchema, Arch: "amd64", Artifacts: map[string]artifacts.Artifact{},
		Versions: artifacts.ManifestVersions{Kubernetes: v.Kubernetes, Crictl: v.Crictl, CNIPlugins: v.CNIPlugins,
			FCOSStream: v.FCOSStream, FCOSRelease: v.FCOSRelease}}
	add := func(name, version, rel string) {
		data := fakeArtifact(name, version)
		sum := sha512.Sum512(data)
		m.Artifacts[name] = artifacts.Artifact{Path: rel, SHA512: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	}
	for _, b := range []string{artifacts.Kubeadm, artifacts.Kubelet, artifacts.Kubectl} {
		add(b, v.Kubernetes, path.Join("kubernetes", v.Kubernetes, "amd64", b))
	}
	add(artifacts.Crictl, v.Crictl, path.Join("cri-tools", v.Crictl, "crictl-"+v.Crictl+"-linux-amd64.tar.gz"))
	add(artifacts.CNIPlugins, v.CNIPlugins, path.Join("cni-plugins", v.CNIPlugins, "cni-plugins-linux-amd64-"+v.CNIPlugins+".tgz"))
	for _, f := range []struct{ name, file string }{
		{artifacts.FCOSQemu, "qemu.x86_64.qcow2.xz"}, {artifacts.FCOSLiveKernel, "live-kernel.x86_64"},
		{artifacts.FCOSLiveInitrd, "live-initramfs.x86_64.img"}, {artifacts.FCOSLiveRootfs, "live-rootfs.x86_64.img"},
	} {
		add(f.name, v.FCOSRelease, path.Join("fcos", v.FCOSRelease, "fedora-coreos-"+v.FCOSRelease+"-"+f.file))
	}
	// kubeadm's pause image, as the mirror records it (the cluster tests
	// check kubeadm v1.34's list with the real kubeadm).
	m.Images = map[string]artifacts.Image{"registry.k8s.io/pause:3.10.1": {
		Digest: "sha256:" + strings.Repeat("0a", 32), Platforms: []string{"linux/amd64"},
		Layout: "images/registry.k8s.io_pause", Size: 1, From: []string{artifacts.FromKubeadm}}}
	return m
}

// TestTestdataManifest keeps the committed test manifest equal to the hashes
// of the fake artifacts for the pinned versions.
func TestTestdataManifest(t *testing.T) {
	want := testManifestFor(config.DefaultVersions())
	if *update {
		if err := want.Write("testdata"); err != nil {
			t.Fatal(err)
		}
	}
	got, err := artifacts.LoadManifest("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range want.Names() {
		if got.Artifacts[name] != want.Artifacts[name] {
			t.Errorf("testdata/manifest.json: %s is %+v, want %+v (run `make golden-ignition`)", name, got.Artifacts[name], want.Artifacts[name])
		}
	}
	if !reflect.DeepEqual(got.Images, want.Images) {
		t.Errorf("testdata/manifest.json images %+v, want %+v (run `make golden-ignition`)", got.Images, want.Images)
	}
	if got.Versions != want.Versions {
		t.Errorf("testdata/manifest.json versions %+v, want %+v (run `make golden-ignition`)", got.Versions, want.Versions)
	}
}

func testManifest(t testing.TB) *artifacts.Manifest {
	t.Helper()
	m, err := artifacts.LoadManifest("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stacks loads every committed stack that has nodes.
func stacks(t testing.TB) map[string]*config.Config {
	t.Helper()
	files, err := filepath.Glob("../stacks/Pulumi.*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no stack files: %v", err)
	}
	out := map[string]*config.Config{}
	for _, f := range files {
		l, err := config.LoadStackFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(l.Nodes()) == 0 {
			continue // existing mode: no nodes to boot
		}
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml")
		c := l.Config
		out[name] = &c
	}
	if len(out) == 0 {
		t.Fatal("no committed stack has nodes")
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func render(t testing.TB, c *config.Config, n config.Node) []byte {
	t.Helper()
	out, err := RenderNode(c, n, testManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// parse parses rendered Ignition with the Ignition v3 config parser.
func parse(t testing.TB, name string, out []byte) types.Config {
	t.Helper()
	c, rpt, err := ign.Parse(out)
	if err != nil {
		t.Fatalf("%s: the Ignition parser rejects the config: %v\n%s", name, err, rpt)
	}
	if len(rpt.Entries) > 0 {
		t.Fatalf("%s: the Ignition parser reports: %s", name, rpt)
	}
	return c
}

// TestGolden compares the first node of each role of each committed stack
// with testdata/golden/<stack>-<role>.ign; `make golden-ignition` rewrites them.
func TestGolden(t *testing.T) {
	all := stacks(t)
	seen := map[string]bool{}
	for _, name := range sortedKeys(all) {
		c := all[name]
		for _, role := range []string{config.RoleController, config.RoleWorker} {
			nodes := c.NodesByRole(role)
			if len(nodes) == 0 {
				continue
			}
			file := filepath.Join("testdata", "golden", name+"-"+role+".ign")
			seen[filepath.Base(file)] = true
			got := render(t, c, nodes[0])
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run `make golden-ignition`)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendered Ignition of %s (run `make golden-ignition` and review the diff):\n%s",
					file, nodes[0].Name, firstDiff(string(want), string(got)))
			}
		}
	}
	// No stale golden files for stacks or roles that are gone.
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.ign"))
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no stack/role any more; delete it", f)
		}
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  golden:   %s\n  rendered: %s", i+1, wl, gl)
		}
	}
	return ""
}

// TestEveryNode renders every node of every committed stack and checks the
// invariants on what the Ignition parser returns.
func TestEveryNode(t *testing.T) {
	m := testManifest(t)
	all := stacks(t)
	for _, name := range sortedKeys(all) {
		c := all[name]
		for _, n := range c.Nodes() {
			t.Run(n.Name, func(t *testing.T) {
				out := render(t, c, n)
				ic := parse(t, n.Name, out)
				checkNoUsr(t, ic)
				checkRemoteHashes(t, ic, m, c.Artifacts.URL)
				checkCephDiskRaw(t, ic, n, c)
				checkContents(t, ic, n, c)
			})
		}
	}
}

func checkNoUsr(t *testing.T, c types.Config) {
	t.Helper()
	n := 0
	for _, d := range c.Storage.Directories {
		n++
		if UnderUsr(d.Path) {
			t.Errorf("directory %s targets /usr", d.Path)
		}
	}
	for _, f := range c.Storage.Files {
		n++
		if UnderUsr(f.Path) {
			t.Errorf("file %s targets /usr", f.Path)
		}
	}
	for _, l := range c.Storage.Links {
		n++
		if UnderUsr(l.Path) || (l.Target != nil && UnderUsr(*l.Target)) {
			t.Errorf("link %s -> %v targets /usr", l.Path, l.Target)
		}
	}
	if n < 10 {
		t.Errorf("only %d files/directories/links checked; the config looks empty", n)
	}
}

// checkRemoteHashes: every remote source has a sha512 equal to the manifest's
// for the artifact at that URL, and all node artifacts are fetched.
func checkRemoteHashes(t *testing.T, c types.Config, m *artifacts.Manifest, base string) {
	t.Helper()
	byURL := map[string]string{}
	for _, name := range m.Names() {
		byURL[m.URL(base, name)] = name
	}
	fetched := map[string]bool{}
	remote := 0
	walkResources(reflectValue(c), "", func(at string, r types.Resource) {
		if r.Source == nil || strings.HasPrefix(*r.Source, "data:") {
			return
		}
		remote++
		name, ok := byURL[*r.Source]
		if !ok {
			t.Errorf("%s: remote source %s is not an artifact of the manifest on %s", at, *r.Source, base)
			return
		}
		want, _ := m.Hash(name)
		if r.Verification.Hash == nil || *r.Verification.Hash != want {
			t.Errorf("%s: %s has hash %v, want the manifest's %s", at, *r.Source, r.Verification.Hash, want)
		}
		fetched[name] = true
	})
	for _, name := range artifacts.NodeArtifacts {
		if !fetched[name] {
			t.Errorf("artifact %s is not fetched by the node", name)
		}
	}
	if remote != len(artifacts.NodeArtifacts) {
		t.Errorf("%d remote sources, want %d", remote, len(artifacts.NodeArtifacts))
	}
}

func checkCephDiskRaw(t *testing.T, c types.Config, n config.Node, cfg *config.Config) {
	t.Helper()
	if len(c.Storage.Disks)+len(c.Storage.Filesystems)+len(c.Storage.Raid)+len(c.Storage.Luks) != 0 {
		t.Errorf("%s: disks/filesystems/raid/luks are configured; the Ceph data disk (and the root disk) must be left alone: %+v", n.Name, c.Storage)
	}
}

func fileContents(t *testing.T, c types.Config, p string) (string, bool) {
	t.Helper()
	for _, f := range c.Storage.Files {
		if f.Path == p {
			if f.Contents.Source == nil {
				return "", true
			}
			s := *f.Contents.Source
			if b64, ok := strings.CutPrefix(s, "data:;base64,"); ok {
				// Butane picks base64 when it is shorter than percent-encoding.
				out, err := base64.StdEncoding.DecodeString(b64)
				if err != nil {
					t.Fatalf("%s: data URL: %v", p, err)
				}
				return string(out), true
			}
			data, ok := strings.CutPrefix(s, "data:,")
			if !ok {
				return s, true
			}
			return unescapeDataURL(t, data), true
		}
	}
	return "", false
}

// checkContents checks the parts the issue lists, on the parsed config.
func checkContents(t *testing.T, c types.Config, n config.Node, cfg *config.Config) {
	t.Helper()
	if got, _ := fileContents(t, c, "/etc/hostname"); got != n.Name {
		t.Errorf("/etc/hostname = %q, want %q", got, n.Name)
	}
	var core *types.PasswdUser
	for i := range c.Passwd.Users {
		if c.Passwd.Users[i].Name == "core" {
			core = &c.Passwd.Users[i]
		}
	}
	if core == nil || len(core.SSHAuthorizedKeys) != len(cfg.SSH.AuthorizedKeys) || string(core.SSHAuthorizedKeys[0]) != cfg.SSH.AuthorizedKeys[0] {
		t.Errorf("core's SSH keys = %+v, want %v", core, cfg.SSH.AuthorizedKeys)
	}
	mods, _ := fileContents(t, c, "/etc/modules-load.d/50-simlab-kubernetes.conf")
	for _, mod := range []string{"overlay", "br_netfilter", "rbd"} {
		if !regexp.MustCompile(`(?m)^` + mod + `$`).MatchString(mods) {
			t.Errorf("kernel module %s not loaded: %q", mod, mods)
		}
	}
	sysctl, _ := fileContents(t, c, "/etc/sysctl.d/50-simlab-kubernetes.conf")
	for _, s := range []string{"net.ipv4.ip_forward = 1", "net.bridge.bridge-nf-call-iptables = 1", "net.ipv4.conf.all.rp_filter = 2"} {
		if !strings.Contains(sysctl, s) {
			t.Errorf("sysctl %q missing", s)
		}
	}
	if ctd, _ := fileContents(t, c, "/etc/containerd/config.toml"); !strings.Contains(ctd, "SystemdCgroup = true") || !strings.Contains(ctd, `bin_dir = "/opt/cni/bin"`) {
		t.Errorf("containerd config lacks SystemdCgroup or the CNI bin dir: %q", ctd)
	} else if want := `sandbox_image = "registry.k8s.io/pause:3.10.1"`; !strings.Contains(ctd, want) {
		// The manifest's pause image (kubeadm's), not containerd's own default.
		t.Errorf("containerd config lacks %s: %q", want, ctd)
	}
	if link, _ := fileContents(t, c, "/etc/systemd/network/50-flannel.link"); !strings.Contains(link, "MACAddressPolicy=none") {
		t.Errorf("flannel link lacks MACAddressPolicy=none: %q", link)
	}
	units := map[string]types.Unit{}
	for _, u := range c.Systemd.Units {
		units[u.Name] = u
	}
	for _, name := range []string{"kubelet.service", "containerd.service", "chronyd.service", "simlab-unpack-tools.service"} {
		if u, ok := units[name]; !ok || u.Enabled == nil || !*u.Enabled {
			t.Errorf("unit %s is not enabled", name)
		}
	}
	k := units["kubelet.service"]
	if len(k.Dropins) != 1 || k.Dropins[0].Name != "10-kubeadm.conf" || !strings.Contains(*k.Dropins[0].Contents, "ExecStart=/opt/bin/kubelet $KUBELET_KUBECONFIG_ARGS") {
		t.Errorf("kubelet's kubeadm drop-in missing or wrong: %+v", k.Dropins)
	}
	nm, static := fileContents(t, c, "/etc/NetworkManager/system-connections/simlab-static.nmconnection")
	if n.IP == "" && static {
		t.Errorf("%s has no static address but gets a static connection", n.Name)
	}
	if n.IP != "" {
		want := fmt.Sprintf("address1=%s/24", n.IP)
		if !static || !strings.Contains(nm, want) {
			t.Errorf("static connection %q lacks %s", nm, want)
		}
		if n.MAC != "" && !strings.Contains(nm, "mac-address="+n.MAC) {
			t.Errorf("static connection %q lacks the MAC %s", nm, n.MAC)
		}
	}
}

// decodedContents is fileContents with base64 data URLs decoded too.
func decodedContents(t *testing.T, c types.Config, p string) string {
	t.Helper()
	s, ok := fileContents(t, c, p)
	if !ok {
		t.Fatalf("no file %s", p)
	}
	if b64, ok := strings.CutPrefix(s, "data:;base64,"); ok {
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return string(b)
	}
	return s
}

// TestContainerdPullsThroughTheArtifactServer: every node's containerd uses
// the artifact server as the mirror of each upstream registry (valid TOML,
// containerd's hosts.toml keys), so images keep their upstream names.
func TestContainerdPullsThroughTheArtifactServer(t *testing.T) {
	all := stacks(t)
	for _, name := range sortedKeys(all) {
		c := all[name]
		n := c.Nodes()[len(c.Nodes())-1]
		ic := parse(t, n.Name, render(t, c, n))
		var conf struct {
			Plugins map[string]struct {
				Registry struct {
					ConfigPath string `toml:"config_path"`
				} `toml:"registry"`
			} `toml:"plugins"`
		}
		if _, err := toml.Decode(decodedContents(t, ic, "/etc/containerd/config.toml"), &conf); err != nil {
			t.Fatalf("%s: config.toml: %v", name, err)
		}
		if got := conf.Plugins["io.containerd.grpc.v1.cri"].Registry.ConfigPath; got != "/etc/containerd/certs.d" {
			t.Errorf("%s: registry config_path %q", name, got)
		}
		for _, r := range artifacts.UpstreamRegistries {
			var hosts struct {
				Server string `toml:"server"`
				Host   map[string]struct {
					Capabilities []string `toml:"capabilities"`
				} `toml:"host"`
			}
			p := "/etc/containerd/certs.d/" + r.Host + "/hosts.toml"
			if _, err := toml.Decode(decodedContents(t, ic, p), &hosts); err != nil {
				t.Fatalf("%s: %s: %v", name, p, err)
			}
			mirror, ok := hosts.Host[strings.TrimRight(c.Artifacts.URL, "/")]
			if hosts.Server != r.Server || !ok || strings.Join(mirror.Capabilities, ",") != "pull,resolve" || len(hosts.Host) != 1 {
				t.Errorf("%s: %s: server %q, hosts %v; want %s falling back to %s", name, p, hosts.Server, hosts.Host, c.Artifacts.URL, r.Server)
			}
		}
	}
}
