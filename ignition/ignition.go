// Package ignition owns the rendering of each node's Ignition config: the
// Butane templates per role (templates/*.bu, embedded), the user snippets from
// stack config (simlab:ignition), their translation with the Butane library in
// strict mode (any warning is an error), their merge, and validation of the
// result with the Ignition v3 config parser.
//
// A node's config is common.bu, then its role's template, then the role's
// snippets, then the node's snippets, merged in that order with Ignition's
// merge rules (a later file with the same path replaces an earlier one).
// Errors name the template or snippet and the line and column in it.
//
// Every remote file references the artifact server (simlab:artifacts.url)
// with the sha512 from the artifact manifest, so a node gets exactly the
// bytes the mirror verified. Nothing is written under /usr, which is
// read-only on Fedora CoreOS (kubeadm#2031). These are pure functions.
package ignition

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"text/template"

	cjson "github.com/clarketm/json"
	butane "github.com/coreos/ignition/v2/butane/config"
	"github.com/coreos/ignition/v2/butane/config/common"
	ign "github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
)

// ButaneVersion is the fcos Butane spec of the templates; it produces
// Ignition SpecVersion. Snippets may use this or any older fcos version.
const (
	ButaneVersion = "1.6.0"
	SpecVersion   = "3.5.0"
)

// LibvirtCephDisk is the Ceph data disk of a libvirt worker (its second
// virtio disk); metal workers use simlab:metal.cephDisk.
const LibvirtCephDisk = "/dev/vdb"

// Install paths on the node. /opt is /var/opt on Fedora CoreOS: writable.
const (
	BinDir       = "/opt/bin"
	CNIBinDir    = "/opt/cni/bin"
	DownloadsDir = "/var/lib/simlab/downloads"
)

//go:embed templates/*.bu
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{"q": quote}).
	ParseFS(templateFS, "templates/*.bu"))

// quote renders s as a YAML double-quoted scalar (JSON strings are valid YAML).
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// RenderNode renders the Ignition JSON of one node of the stack.
func RenderNode(cfg *config.Config, node config.Node, m *artifacts.Manifest) ([]byte, error) {
	r, err := NewRenderer(cfg, m)
	if err != nil {
		return nil, err
	}
	return r.Render(node)
}

// Renderer renders many nodes of one stack, translating each role's
// template and each snippet once.
type Renderer struct {
	cfg       *config.Config
	downloads []download

	mu    sync.Mutex
	cache map[string]types.Config // translated role templates and snippets
}

// download is one remote file of the node.
type download struct {
	Name string
	Path string
	Mode string
	URL  string
	Hash string
}

// NewRenderer checks that the manifest matches the stack's pinned versions
// and prepares rendering.
func NewRenderer(cfg *config.Config, m *artifacts.Manifest) (*Renderer, error) {
	if cfg == nil {
		return nil, fmt.Errorf("rendering Ignition: no config")
	}
	if m == nil {
		return nil, fmt.Errorf("rendering Ignition: no artifact manifest")
	}
	if cfg.Artifacts.URL == "" {
		return nil, fmt.Errorf("rendering Ignition: simlab:artifacts.url is required (the artifact server nodes download from)")
	}
	if !strings.HasPrefix(cfg.Artifacts.URL, "http://") && !strings.HasPrefix(cfg.Artifacts.URL, "https://") {
		return nil, fmt.Errorf("rendering Ignition: simlab:artifacts.url must be an http(s) URL, got %q", cfg.Artifacts.URL)
	}
	v := cfg.Versions
	if err := m.CheckVersions(artifacts.ManifestVersions{Kubernetes: v.Kubernetes, Crictl: v.Crictl, CNIPlugins: v.CNIPlugins},
		artifacts.NodeArtifacts...); err != nil {
		return nil, fmt.Errorf("rendering Ignition: %w", err)
	}
	r := &Renderer{cfg: cfg, cache: map[string]types.Config{}}
	for _, d := range []struct{ name, path, mode string }{
		{artifacts.Kubeadm, BinDir + "/kubeadm", "0755"},
		{artifacts.Kubelet, BinDir + "/kubelet", "0755"},
		{artifacts.Kubectl, BinDir + "/kubectl", "0755"},
		{artifacts.Crictl, DownloadsDir + "/crictl.tar.gz", "0644"},
		{artifacts.CNIPlugins, DownloadsDir + "/cni-plugins.tgz", "0644"},
	} {
		hash, err := m.Hash(d.name)
		if err != nil {
			return nil, fmt.Errorf("rendering Ignition: %w", err)
		}
		r.downloads = append(r.downloads, download{Name: d.name, Path: d.path, Mode: d.mode,
			URL: m.URL(cfg.Artifacts.URL, d.name), Hash: hash})
	}
	return r, nil
}

// templateData is what the templates see.
type templateData struct {
	Cluster        string
	Node           config.Node
	SSHUser        string
	AuthorizedKeys []string
	Downloads      []download
	Static         *staticNet
	CephDisk       string
}

// staticNet is a NetworkManager keyfile's values.
type staticNet struct {
	MAC     string
	Address string // CIDR
	Gateway string
	DNS     string // ;-terminated list
}

func (r *Renderer) data(node config.Node) templateData {
	c := r.cfg
	d := templateData{Cluster: c.Cluster.Name, Node: node, SSHUser: c.SSH.User,
		AuthorizedKeys: c.SSH.AuthorizedKeys, Downloads: r.downloads}
	if d.SSHUser == "" {
		d.SSHUser = "core"
	}
	var gw string
	var prefix int
	var dns []string
	switch {
	case c.Provider == config.ProviderMetal && c.Metal != nil:
		gw, prefix, dns = c.Metal.Gateway, c.Metal.PrefixLength, c.Metal.Nameservers
		if node.Role == config.RoleWorker {
			d.CephDisk = c.Metal.CephDisk
		}
	case c.Libvirt != nil:
		gw, prefix, dns = c.Libvirt.Gateway, c.Libvirt.PrefixLength, c.Libvirt.Nameservers
		if node.Role == config.RoleWorker && c.Workers.CephDiskGiB > 0 {
			d.CephDisk = LibvirtCephDisk
		}
	}
	if node.IP != "" {
		if prefix == 0 {
			prefix = 24
		}
		addr := node.IP
		if !strings.Contains(addr, "/") {
			addr = fmt.Sprintf("%s/%d", addr, prefix)
		}
		s := &staticNet{MAC: artifacts.NormalizeMAC(node.MAC), Address: addr, Gateway: gw}
		for _, ns := range dns {
			s.DNS += ns + ";"
		}
		d.Static = s
	}
	return d
}

// Render renders the Ignition JSON of one node.
func (r *Renderer) Render(node config.Node) ([]byte, error) {
	role := node.Role
	if role != config.RoleController && role != config.RoleWorker {
		return nil, fmt.Errorf("rendering Ignition for %s: unknown role %q", node.Name, role)
	}
	data := r.data(node)
	base, err := r.template("common.bu", node, data)
	if err != nil {
		return nil, fmt.Errorf("rendering Ignition for %s: %w", node.Name, err)
	}
	roleCfg, err := r.template(role+".bu", node, data)
	if err != nil {
		return nil, fmt.Errorf("rendering Ignition for %s: %w", node.Name, err)
	}
	cfg := ign.Merge(base, roleCfg)
	snips := r.cfg.Ignition.Worker
	key := "simlab:ignition.worker"
	if role == config.RoleController {
		snips, key = r.cfg.Ignition.Controller, "simlab:ignition.controller"
	}
	for i, s := range snips {
		sc, err := r.snippet(fmt.Sprintf("%s[%d]", key, i), s)
		if err != nil {
			return nil, fmt.Errorf("rendering Ignition for %s: %w", node.Name, err)
		}
		cfg = ign.Merge(cfg, sc)
	}
	for i, s := range r.cfg.Ignition.Nodes[node.Name] {
		sc, err := r.snippet(fmt.Sprintf("simlab:ignition.nodes.%s[%d]", node.Name, i), s)
		if err != nil {
			return nil, fmt.Errorf("rendering Ignition for %s: %w", node.Name, err)
		}
		cfg = ign.Merge(cfg, sc)
	}
	if err := checkNode(cfg, data.CephDisk); err != nil {
		return nil, fmt.Errorf("rendering Ignition for %s: %w", node.Name, err)
	}
	// clarketm/json omits empty structs, as Butane's own output does.
	out, err := cjson.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("rendering Ignition for %s: %w", node.Name, err)
	}
	// The merged result must itself be a valid config.
	if _, rpt, err := ign.Parse(out); err != nil || len(rpt.Entries) > 0 {
		return nil, fmt.Errorf("rendering Ignition for %s: merged config is invalid: %v %s", node.Name, err, strings.TrimSpace(rpt.String()))
	}
	return append(out, '\n'), nil
}

// template renders and translates one embedded template. Templates that
// do not depend on the node (controller.bu, worker.bu) are cached.
func (r *Renderer) template(name string, node config.Node, data templateData) (types.Config, error) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		return types.Config{}, fmt.Errorf("template %s: %w", name, err)
	}
	return r.translateCached("templates/"+name+" (rendered for "+node.Name+")", buf.Bytes())
}

// snippet translates a user snippet.
func (r *Renderer) snippet(name, src string) (types.Config, error) {
	return r.translateCached("snippet "+name, []byte(src))
}

func (r *Renderer) translateCached(name string, src []byte) (types.Config, error) {
	key := string(src)
	r.mu.Lock()
	c, ok := r.cache[key]
	r.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := Translate(name, src)
	if err != nil {
		return types.Config{}, err
	}
	r.mu.Lock()
	r.cache[key] = c
	r.mu.Unlock()
	return c, nil
}

// Translate translates one Butane document (variant fcos, version
// ButaneVersion or older) in strict mode and parses the result with the
// Ignition parser. Errors read "<name>:<line>:<column>: <message>".
func Translate(name string, src []byte) (types.Config, error) {
	out, rpt, err := butane.TranslateBytes(src, common.TranslateBytesOptions{
		TranslateOptions: common.TranslateOptions{NoResourceAutoCompression: true},
	})
	if len(rpt.Entries) > 0 {
		return types.Config{}, reportError(name, src, rpt.Entries)
	}
	if err != nil {
		return types.Config{}, fmt.Errorf("%s: %w", name, err)
	}
	cfg, prpt, err := ign.ParseCompatibleVersion(out)
	if err != nil || len(prpt.Entries) > 0 {
		return types.Config{}, fmt.Errorf("%s: not a valid Ignition %s config: %v %s", name, SpecVersion, err, strings.TrimSpace(prpt.String()))
	}
	return cfg, nil
}
