package artifacts

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ServedNode is a node the server hands Ignition and PXE boot arguments to.
type ServedNode struct {
	// Name is the node's hostname.
	Name string
	// Role is controller or worker.
	Role string
	// MAC is the boot interface's MAC address (metal); may be empty.
	MAC string
}

// ServerOptions configure Handler.
type ServerOptions struct {
	// Dir is the mirror directory served as files.
	Dir string
	// Manifest locates the Fedora CoreOS live PXE files; required for /pxe and /boot.ipxe.
	Manifest *Manifest
	// BaseURL is the server's URL as nodes see it (config artifacts.url).
	BaseURL string
	// Nodes are the stack's nodes.
	Nodes []ServedNode
	// Ignition renders the Ignition JSON of the named node.
	Ignition func(name string) ([]byte, error)
	// InstallDisk is the disk coreos-installer writes to on metal (e.g. /dev/sda).
	InstallDisk string
	// Registry, when set, serves the mirror's container images at /v2/
	// (NewRegistry).
	Registry http.Handler
	// Log receives one line per request; nil discards.
	Log io.Writer
}

// Handler serves a mirror directory and the nodes' Ignition:
//
//	GET /<manifest path>           a mirrored file (no listings, no dotfiles)
//	GET /manifest.json             the manifest
//	GET /ignition?name=<node>      a node's Ignition JSON, by name ...
//	GET /ignition?mac=<mac>        ... or by its MAC address
//	GET /pxe?mac=<mac>             PXE boot arguments (JSON: kernel, initrd, args)
//	GET /boot.ipxe?mac=<mac>       the same as an iPXE script
//	GET|HEAD /v2/...               the container images (Registry), read-only
func Handler(o ServerOptions) http.Handler {
	s := &server{o: o, byName: map[string]ServedNode{}, byMAC: map[string]ServedNode{}}
	if s.o.Log == nil {
		s.o.Log = io.Discard
	}
	for _, n := range o.Nodes {
		s.byName[n.Name] = n
		if n.MAC != "" {
			s.byMAC[NormalizeMAC(n.MAC)] = n
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ignition", s.ignition)
	mux.HandleFunc("GET /pxe", s.pxe)
	mux.HandleFunc("GET /boot.ipxe", s.ipxe)
	mux.HandleFunc("GET /", s.file)
	if o.Registry != nil {
		// GET also answers HEAD; other methods get 405 from the mux.
		mux.Handle("GET /v2/", s.logged(o.Registry))
	}
	return mux
}

type server struct {
	o      ServerOptions
	byName map[string]ServedNode
	byMAC  map[string]ServedNode
}

// NormalizeMAC lowercases a MAC address and uses colons as separators.
func NormalizeMAC(mac string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(mac)), "-", ":")
}

// node finds the node a request names by ?name= or ?mac=.
func (s *server) node(w http.ResponseWriter, r *http.Request) (ServedNode, bool) {
	q := r.URL.Query()
	var n ServedNode
	var ok bool
	switch {
	case q.Get("name") != "":
		n, ok = s.byName[q.Get("name")]
		if !ok {
			s.fail(w, r, http.StatusNotFound, "no node named %q in this stack", q.Get("name"))
			return n, false
		}
	case q.Get("mac") != "":
		n, ok = s.byMAC[NormalizeMAC(q.Get("mac"))]
		if !ok {
			s.fail(w, r, http.StatusNotFound, "no node with MAC %q in this stack", q.Get("mac"))
			return n, false
		}
	default:
		s.fail(w, r, http.StatusBadRequest, "give ?name=<node> or ?mac=<mac>")
		return n, false
	}
	return n, true
}

func (s *server) ignition(w http.ResponseWriter, r *http.Request) {
	n, ok := s.node(w, r)
	if !ok {
		return
	}
	if s.o.Ignition == nil {
		s.fail(w, r, http.StatusNotFound, "this server has no stack configured: start it with --stack")
		return
	}
	data, err := s.o.Ignition(n.Name)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, "rendering Ignition for %s: %v", n.Name, err)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json")
	w.Write(data)
	s.logf(r, http.StatusOK, "ignition for %s (%d bytes)", n.Name, len(data))
}

// PXEBoot is what a metal machine boots: the live kernel and initramfs, and
// the kernel arguments that install Fedora CoreOS with the node's Ignition.
type PXEBoot struct {
	Kernel string   `json:"kernel"`
	Initrd []string `json:"initrd"`
	Args   []string `json:"args"`
}

// PXE returns the boot of node n for a server at base.
func PXE(m *Manifest, base string, n ServedNode, installDisk string) (PXEBoot, error) {
	if m == nil {
		return PXEBoot{}, fmt.Errorf("no artifact manifest")
	}
	for _, name := range []string{FCOSLiveKernel, FCOSLiveInitrd, FCOSLiveRootfs} {
		if _, err := m.Get(name); err != nil {
			return PXEBoot{}, err
		}
	}
	if installDisk == "" {
		installDisk = "/dev/sda"
	}
	ign := strings.TrimRight(base, "/") + "/ignition?name=" + n.Name
	if n.MAC != "" {
		ign = strings.TrimRight(base, "/") + "/ignition?mac=" + NormalizeMAC(n.MAC)
	}
	return PXEBoot{
		Kernel: m.URL(base, FCOSLiveKernel),
		Initrd: []string{m.URL(base, FCOSLiveInitrd)},
		Args: []string{
			"coreos.live.rootfs_url=" + m.URL(base, FCOSLiveRootfs),
			"coreos.inst.install_dev=" + installDisk,
			"coreos.inst.ignition_url=" + ign,
			"ignition.firstboot", "ignition.platform.id=metal",
			"console=tty0", "console=ttyS0,115200n8",
		},
	}, nil
}

func (s *server) pxe(w http.ResponseWriter, r *http.Request) {
	n, ok := s.node(w, r)
	if !ok {
		return
	}
	b, err := PXE(s.o.Manifest, s.o.BaseURL, n, s.o.InstallDisk)
	if err != nil {
		s.fail(w, r, http.StatusNotFound, "PXE boot for %s: %v", n.Name, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(b)
	s.logf(r, http.StatusOK, "pxe for %s", n.Name)
}

func (s *server) ipxe(w http.ResponseWriter, r *http.Request) {
	n, ok := s.node(w, r)
	if !ok {
		return
	}
	b, err := PXE(s.o.Manifest, s.o.BaseURL, n, s.o.InstallDisk)
	if err != nil {
		s.fail(w, r, http.StatusNotFound, "PXE boot for %s: %v", n.Name, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "#!ipxe\nkernel %s initrd=main %s\ninitrd --name main %s\nboot\n", b.Kernel, strings.Join(b.Args, " "), b.Initrd[0])
	s.logf(r, http.StatusOK, "ipxe for %s", n.Name)
}

// file serves one mirrored file. Directory listings and dotfiles (temp
// files of a running mirror) are not served.
func (s *server) file(w http.ResponseWriter, r *http.Request) {
	rel := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if rel == "" {
		s.fail(w, r, http.StatusNotFound, "no listing; see /manifest.json")
		return
	}
	for _, seg := range strings.Split(rel, "/") {
		if strings.HasPrefix(seg, ".") {
			s.fail(w, r, http.StatusNotFound, "not found")
			return
		}
	}
	full := filepath.Join(s.o.Dir, filepath.FromSlash(rel))
	st, err := os.Stat(full)
	if err != nil || !st.Mode().IsRegular() {
		s.fail(w, r, http.StatusNotFound, "not found: /%s", rel)
		return
	}
	http.ServeFile(w, r, full)
	s.logf(r, http.StatusOK, "%d bytes", st.Size())
}

// logged logs each request h answers (the registry's pulls), like files.
func (s *server) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		s.logf(r, rec.code, "%d bytes", rec.n)
	})
}

// statusWriter records the status code and body size of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *statusWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }
func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	http.Error(w, msg, code)
	s.logf(r, code, "%s", msg)
}

func (s *server) logf(r *http.Request, code int, format string, args ...any) {
	l := log.New(s.o.Log, "", log.LstdFlags)
	l.Printf("%s %s %d %s", r.Method, r.URL.RequestURI(), code, fmt.Sprintf(format, args...))
}
