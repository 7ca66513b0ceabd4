// Package ignition owns the rendering of each node's Ignition config: the
// Butane templates per role (templates/*.bu, embedded), the user snippets from
// stack config (simlab:ignition), their translation with the Butane library in
// strict mode (any warning is an error), their merge, and validation of the
// result with the Ignition v3 config parser.
//
// A node's config is common.bu, then its role's template (controller.bu or
// worker.bu), then the role's snippets, then node.bu (hostname, static
// network), then the node's snippets, merged in that order with Ignition's
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
	"github.com/coreos/ignition/v2/config/validate"
	"gopkg.in/yaml.v3"

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

// Renderer renders many nodes of one stack, translating and merging each
// role's shared part once; only node.bu is translated per node. Shared parts
// are also cached process-wide by their inputs, so RenderNode per node is
// nearly as fast. A Renderer is safe for concurrent use.
type Renderer struct {
	cfg       *config.Config
	downloads []download
	sandbox   string // the pause image kubeadm uses (from the manifest)

	mu       sync.Mutex
	bases    map[string]types.Config // per role: common.bu + role template + role snippets
	baseKeys map[string]string       // per role: the inputs of bases[role]

	identity *Renderer // renders Identity; nil in the identity renderer itself
}

// Download is one program or archive a node downloads from the artifact
// server at first boot, and an in-place upgrade downloads again.
type Download struct {
	// Name is the artifact's name in the manifest (artifacts.Kubeadm).
	Name string
	// Path is where the node keeps it (/opt/bin/kubeadm).
	Path string
	// URL is where the artifact server serves it.
	URL string
	// Hash is its Ignition verification hash ("sha512-<hex>").
	Hash string
}

// upgradedInPlace are the artifacts an in-place Kubernetes upgrade replaces
// on a running node (infra/cluster's upgrade phase): Identity leaves them out.
var upgradedInPlace = map[string]bool{artifacts.Kubeadm: true, artifacts.Kubelet: true, artifacts.Kubectl: true}

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
	r := &Renderer{cfg: cfg, bases: map[string]types.Config{}, baseKeys: map[string]string{}, sandbox: artifacts.PauseImage(m)}
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
	// The identity renderer: the same config with what an upgrade changes
	// in place (the Kubernetes programs, the pause image of kubeadm's
	// release) fixed, so only a change that needs a new machine changes it.
	id := &Renderer{cfg: cfg, bases: map[string]types.Config{}, baseKeys: map[string]string{}}
	for _, d := range r.downloads {
		if upgradedInPlace[d.Name] {
			d.URL, d.Hash = "http://upgraded-in-place.invalid/"+d.Name, "sha512-"+strings.Repeat("0", 128)
		}
		id.downloads = append(id.downloads, d)
	}
	r.identity = id
	return r, nil
}

// KubernetesBinaries are the Kubernetes programs every node runs (kubeadm,
// kubelet, kubectl), where it keeps them and where the artifact server
// serves this stack's release of them.
func (r *Renderer) KubernetesBinaries() []Download {
	var out []Download
	for _, d := range r.downloads {
		if upgradedInPlace[d.Name] {
			out = append(out, Download{Name: d.Name, Path: d.Path, URL: d.URL, Hash: d.Hash})
		}
	}
	return out
}

// Identity renders a node's Ignition as Render does but with the parts an
// in-place Kubernetes upgrade changes (KubernetesBinaries, the pause image)
// held fixed: the machine's identity for day-2 rules. Two configs whose
// Identity is equal differ at most in the Kubernetes release, which
// `kubeadm upgrade` moves a running node to, so the node need not be
// replaced (docs/DAY2.md).
func (r *Renderer) Identity(node config.Node) ([]byte, error) {
	if r.identity == nil {
		return r.Render(node)
	}
	return r.identity.Render(node)
}

// clusterData is what common.bu and the role templates see: nothing about
// the node, so their translation is shared by every node of a role.
type clusterData struct {
	Cluster        string
	Role           string
	SSHUser        string
	AuthorizedKeys []string
	Downloads      []download
	// CephDisk is the worker's raw Ceph data disk ("" for controllers).
	CephDisk string
	// Mirror is the artifact server's registry (its base URL), the mirror
	// containerd pulls every upstream registry's images through.
	Mirror string
	// Registries are the upstream registries it mirrors.
	Registries []artifacts.UpstreamRegistry
	// SandboxImage is the pause image kubeadm's release uses (mirrored with
	// kubeadm's images); "" when the manifest lists no images.
	SandboxImage string
}

// nodeData is what node.bu sees.
type nodeData struct {
	Node   config.Node
	Static *staticNet
}

// staticNet is a NetworkManager keyfile's values.
type staticNet struct {
	MAC     string
	Address string // CIDR
	Gateway string
	DNS     string // ;-terminated list
}

func (r *Renderer) clusterData(role string) clusterData {
	c := r.cfg
	d := clusterData{Cluster: c.Cluster.Name, Role: role, SSHUser: c.SSH.User,
		AuthorizedKeys: c.SSH.AuthorizedKeys, Downloads: r.downloads,
		Mirror: strings.TrimRight(c.Artifacts.URL, "/"), Registries: artifacts.UpstreamRegistries,
		SandboxImage: r.sandbox}
	if d.SSHUser == "" {
		d.SSHUser = "core"
	}
	if role == config.RoleWorker {
		switch {
		case c.Provider == config.ProviderMetal && c.Metal != nil:
			d.CephDisk = c.Metal.CephDisk
		case c.Provider == config.ProviderLibvirt && c.Workers.CephDiskGiB > 0:
			d.CephDisk = LibvirtCephDisk
		}
	}
	return d
}

func (r *Renderer) nodeData(node config.Node) nodeData {
	c := r.cfg
	d := nodeData{Node: node}
	if node.IP == "" {
		return d
	}
	var gw string
	var prefix int
	var dns []string
	switch {
	case c.Provider == config.ProviderMetal && c.Metal != nil:
		gw, prefix, dns = c.Metal.Gateway, c.Metal.PrefixLength, c.Metal.Nameservers
	case c.Libvirt != nil:
		gw, prefix, dns = c.Libvirt.Gateway, c.Libvirt.PrefixLength, c.Libvirt.Nameservers
	}
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
	return d
}

// roleBase returns common.bu, the role's template and the role's snippets,
// translated and merged; computed once per role (and shared process-wide
// between Renderers whose sources are identical).
func (r *Renderer) roleBase(role string) (types.Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.bases[role]; ok {
		return c, nil
	}
	data := r.clusterData(role)
	snips, key := r.cfg.Ignition.Worker, "simlab:ignition.worker"
	if role == config.RoleController {
		snips, key = r.cfg.Ignition.Controller, "simlab:ignition.controller"
	}
	// The templates are fixed at build time, so the merged base is a pure
	// function of the data and the snippets: key the shared cache on those
	// instead of rendering the templates again.
	keyData, err := json.Marshal(struct {
		Role     string
		Data     clusterData
		Snippets []string
	}{role, data, snips})
	if err != nil {
		return types.Config{}, err
	}
	r.baseKeys[role] = string(keyData)
	if c, ok := cacheGet(&mergedBases, string(keyData)); ok {
		r.bases[role] = c
		return c, nil
	}
	type doc struct {
		name string
		src  []byte
	}
	var docs []doc
	for _, t := range []string{"common.bu", role + ".bu"} {
		src, err := execTemplate(t, data)
		if err != nil {
			return types.Config{}, err
		}
		docs = append(docs, doc{"templates/" + t, src})
	}
	for i, s := range snips {
		docs = append(docs, doc{fmt.Sprintf("snippet %s[%d]", key, i), []byte(s)})
	}
	var base types.Config
	for i, d := range docs {
		c, err := translateCached(d.name, d.src)
		if err != nil {
			return types.Config{}, err
		}
		if i == 0 {
			base = c
		} else {
			base = ign.Merge(base, c)
		}
	}
	cachePut(&mergedBases, string(keyData), base)
	r.bases[role] = base
	return base, nil
}

// Render renders the Ignition JSON of one node.
func (r *Renderer) Render(node config.Node) ([]byte, error) {
	out, err := r.render(node)
	if err != nil {
		return nil, fmt.Errorf("rendering Ignition for %s: %w", node.Name, err)
	}
	return out, nil
}

func (r *Renderer) render(node config.Node) ([]byte, error) {
	if node.Role != config.RoleController && node.Role != config.RoleWorker {
		return nil, fmt.Errorf("unknown role %q", node.Role)
	}
	if node.Name == "" {
		return nil, fmt.Errorf("node has no name")
	}
	cfg, err := r.roleBase(node.Role)
	if err != nil {
		return nil, err
	}
	// node.bu is translated every time (not cached): it differs per node.
	src, err := execTemplate("node.bu", r.nodeData(node))
	if err != nil {
		return nil, err
	}
	out, err := translateBytes("templates/node.bu", src)
	if err != nil {
		return nil, err
	}
	// Butane validated its output, and the merged config is validated below:
	// decoding is enough here.
	var nc types.Config
	if err := json.Unmarshal(out, &nc); err != nil {
		return nil, fmt.Errorf("templates/node.bu: %w", err)
	}
	cfg = ign.Merge(cfg, nc)
	for i, s := range r.cfg.Ignition.Nodes[node.Name] {
		sc, err := translateCached(fmt.Sprintf("snippet simlab:ignition.nodes.%s[%d]", node.Name, i), []byte(s))
		if err != nil {
			return nil, err
		}
		cfg = ign.Merge(cfg, sc)
	}
	// The merged result must pass simlab's rules (checkNode) and be a valid
	// config: the Ignition validator's checks (without re-parsing the JSON we
	// just wrote). The role's base is fixed and Butane validated node.bu's
	// output, so what the merge can break (path conflicts, duplicates, units
	// vs files, paths under /usr, remote sources) depends only on the base and
	// the node document's paths, not on their contents: one check per such
	// shape is enough unless the node has its own snippets.
	shape := ""
	if ds := docShape(nc); ds != "" && len(r.cfg.Ignition.Nodes[node.Name]) == 0 {
		r.mu.Lock()
		shape = r.baseKeys[node.Role] + "\x00" + ds
		r.mu.Unlock()
	}
	if _, ok := cacheGet(&validShapes, shape); !ok || shape == "" {
		if err := checkNode(cfg, r.clusterData(node.Role).CephDisk); err != nil {
			return nil, err
		}
		if rpt := validate.ValidateWithContext(cfg, nil); len(rpt.Entries) > 0 {
			return nil, fmt.Errorf("merged config is invalid: %s", describeReport(cfg, rpt))
		}
		if shape != "" {
			cachePut(&validShapes, shape, types.Config{})
		}
	}
	// clarketm/json omits empty structs, as Butane's own output does.
	out, err = cjson.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// execTemplate renders one embedded template to Butane YAML.
func execTemplate(name string, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// configCache maps exact source text to its translated (or merged) config.
// Content-addressed: a hit is the same result, whoever asked.
type configCache struct {
	sync.Mutex
	m map[string]types.Config
}

var (
	// translations caches single translated documents.
	translations = configCache{m: map[string]types.Config{}}
	// mergedBases caches each role's merged shared part.
	mergedBases = configCache{m: map[string]types.Config{}}
	// validShapes records (base, node document paths) merges that validated.
	validShapes = configCache{m: map[string]types.Config{}}
)

// docShape lists what in a node document can interact with the base in
// validation: the paths of its files, directories and links, its units and
// users, and its storage devices. File contents are not part of it.
func docShape(c types.Config) string {
	var b strings.Builder
	for _, f := range c.Storage.Files {
		b.WriteString("f:" + f.Path + "\n")
	}
	for _, d := range c.Storage.Directories {
		b.WriteString("d:" + d.Path + "\n")
	}
	for _, l := range c.Storage.Links {
		b.WriteString("l:" + l.Path + "\n")
	}
	for _, u := range c.Systemd.Units {
		b.WriteString("u:" + u.Name + "\n")
	}
	for _, u := range c.Passwd.Users {
		b.WriteString("p:" + u.Name + "\n")
	}
	if len(c.Storage.Disks)+len(c.Storage.Filesystems)+len(c.Storage.Raid)+len(c.Storage.Luks)+len(c.Passwd.Groups) > 0 ||
		len(c.KernelArguments.ShouldExist)+len(c.KernelArguments.ShouldNotExist) > 0 || c.Ignition.Config.Merge != nil || c.Ignition.Config.Replace.Source != nil {
		return "" // never shared: validate every time
	}
	return b.String()
}

// maxCached bounds each cache (node snippets pass through translations).
const maxCached = 4096

func cacheGet(c *configCache, key string) (types.Config, bool) {
	c.Lock()
	defer c.Unlock()
	v, ok := c.m[key]
	return v, ok
}

func cachePut(c *configCache, key string, v types.Config) {
	c.Lock()
	defer c.Unlock()
	if len(c.m) >= maxCached {
		clear(c.m)
	}
	c.m[key] = v
}

func translateCached(name string, src []byte) (types.Config, error) {
	if c, ok := cacheGet(&translations, string(src)); ok {
		return c, nil
	}
	if err := checkVariant(name, src); err != nil {
		return types.Config{}, err
	}
	c, err := Translate(name, src)
	if err != nil {
		return types.Config{}, err
	}
	cachePut(&translations, string(src), c)
	return c, nil
}

// Translate translates one Butane document (variant fcos, version
// ButaneVersion or older) in strict mode and parses the result with the
// Ignition parser. Errors read "<name>:<line>:<column>: <message>".
func Translate(name string, src []byte) (types.Config, error) {
	out, err := translateBytes(name, src)
	if err != nil {
		return types.Config{}, err
	}
	cfg, prpt, err := ign.ParseCompatibleVersion(out)
	if err != nil || len(prpt.Entries) > 0 {
		return types.Config{}, fmt.Errorf("%s: not a valid Ignition %s config: %v %s", name, SpecVersion, err, strings.TrimSpace(prpt.String()))
	}
	return cfg, nil
}

// checkVariant refuses a document whose variant is not fcos (flatcar or
// openshift documents would translate, to something else).
func checkVariant(name string, src []byte) error {
	var head struct {
		Variant string `yaml:"variant"`
	}
	if err := yaml.Unmarshal(src, &head); err == nil && head.Variant != "fcos" {
		return fmt.Errorf("%s: variant %q: simlab nodes run Fedora CoreOS, use `variant: fcos`", name, head.Variant)
	}
	return nil
}

// translateBytes is Butane in strict mode: Ignition JSON, or every report
// entry as an error with its line and column.
func translateBytes(name string, src []byte) ([]byte, error) {
	out, rpt, err := butane.TranslateBytes(src, common.TranslateBytesOptions{
		TranslateOptions: common.TranslateOptions{NoResourceAutoCompression: true},
	})
	if len(rpt.Entries) > 0 {
		return nil, reportError(name, src, rpt.Entries)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
