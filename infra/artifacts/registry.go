package artifacts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// ImagesDir holds the mirror's container images, one OCI image layout per
// directory (`simlab image build` writes images/simulator).
const ImagesDir = "images"

// UpstreamRegistry is a public registry whose images the artifact server
// mirrors, and the endpoint containerd falls back to when the mirror lacks
// an image (an air-gapped lab has no fallback; that is the point).
type UpstreamRegistry struct {
	// Host is the registry's name in image references.
	Host string
	// Server is its pull endpoint.
	Server string
}

// UpstreamRegistries are the registries the stack's images come from; every
// node's containerd uses the artifact server as their mirror.
var UpstreamRegistries = []UpstreamRegistry{
	{"docker.io", "https://registry-1.docker.io"},
	{"ghcr.io", "https://ghcr.io"},
	{"quay.io", "https://quay.io"},
	{"registry.k8s.io", "https://registry.k8s.io"},
}

// refAnnotation names an image in an OCI layout's index.json.
const refAnnotation = "org.opencontainers.image.ref.name"

// imageRepo is one repository the registry serves: its tags and the layout
// whose blobs hold its manifests and layers.
type imageRepo struct {
	host, name string
	tags       map[string]ociDescriptor
	layout     string
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Registry is a read-only OCI distribution registry (the pull API: /v2/,
// manifests by tag and by digest, blobs, HEAD and Range) over the image
// layouts of a mirror. Images keep their upstream names: a node's containerd
// uses it as the mirror of each upstream registry (it passes the upstream as
// ?ns=), so manifests and pods keep the names they have upstream.
type Registry struct {
	repos []*imageRepo
}

// NewRegistry reads every OCI layout under dir/images. A layout whose
// index.json names no image (annotation org.opencontainers.image.ref.name)
// is an error: nothing could pull it.
func NewRegistry(dir string) (*Registry, error) {
	r := &Registry{}
	layouts, _ := filepath.Glob(filepath.Join(dir, ImagesDir, "*", "index.json"))
	sort.Strings(layouts)
	for _, index := range layouts {
		data, err := os.ReadFile(index)
		if err != nil {
			return nil, err
		}
		var idx struct {
			Manifests []ociDescriptor `json:"manifests"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("image layout %s: %w", index, err)
		}
		for _, d := range idx.Manifests {
			ref := d.Annotations[refAnnotation]
			host, name, tag, err := ParseImageRef(ref)
			if err != nil {
				return nil, fmt.Errorf("image layout %s: %w", index, err)
			}
			repo := r.repo(host, name)
			if repo == nil {
				repo = &imageRepo{host: host, name: name, tags: map[string]ociDescriptor{}, layout: filepath.Dir(index)}
				r.repos = append(r.repos, repo)
			} else if repo.layout != filepath.Dir(index) {
				return nil, fmt.Errorf("image %s/%s is in two layouts: %s and %s", host, name, repo.layout, filepath.Dir(index))
			}
			repo.tags[tag] = d
		}
	}
	return r, nil
}

// Images lists the served images as host/name:tag, sorted.
func (r *Registry) Images() []string {
	var out []string
	for _, repo := range r.repos {
		for tag := range repo.tags {
			out = append(out, repo.host+"/"+repo.name+":"+tag)
		}
	}
	sort.Strings(out)
	return out
}

// Digest returns the digest the registry serves for ref (host/name:tag).
func (r *Registry) Digest(ref string) (string, error) {
	host, name, tag, err := ParseImageRef(ref)
	if err != nil {
		return "", err
	}
	if repo := r.repo(host, name); repo != nil {
		if d, ok := repo.tags[tag]; ok {
			return d.Digest, nil
		}
	}
	have := "none"
	if imgs := r.Images(); len(imgs) > 0 {
		have = strings.Join(imgs, ", ")
	}
	return "", fmt.Errorf("no image %s (the mirror has: %s)", ref, have)
}

func (r *Registry) repo(host, name string) *imageRepo {
	for _, repo := range r.repos {
		if repo.name == name && (host == "" || repo.host == host) {
			return repo
		}
	}
	return nil
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ParseImageRef splits an image reference into registry host, repository
// name and tag, the way container runtimes do: a first component with a dot,
// a colon or "localhost" is the host, otherwise the host is docker.io and a
// one-component name is under library/. The tag defaults to latest.
func ParseImageRef(ref string) (host, name, tag string, err error) {
	if ref == "" {
		return "", "", "", fmt.Errorf("no image name (annotation %s)", refAnnotation)
	}
	rest := ref
	if i := strings.Index(rest, "@"); i >= 0 {
		return "", "", "", fmt.Errorf("image %q: a layout names images by tag, not digest", ref)
	}
	host = "docker.io"
	if first, after, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		host, rest = first, after
	}
	tag = "latest"
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		rest, tag = rest[:i], rest[i+1:]
	}
	if host == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if rest == "" || tag == "" {
		return "", "", "", fmt.Errorf("image %q: not host/name:tag", ref)
	}
	return host, rest, tag, nil
}

// ServeHTTP answers the distribution spec's pull endpoints.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		regError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry is read-only")
		return
	}
	p := strings.TrimPrefix(req.URL.Path, "/v2/")
	if p == "" || p == "/" {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
		return
	}
	var name, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(p, k); i > 0 {
			name, kind, ref = p[:i], strings.Trim(k, "/"), p[i+len(k):]
			break
		}
	}
	if name == "" || ref == "" {
		regError(w, http.StatusNotFound, "NAME_UNKNOWN", "not a pull endpoint: /v2/"+p)
		return
	}
	repo := r.repo(req.URL.Query().Get("ns"), name)
	if repo == nil {
		regError(w, http.StatusNotFound, "NAME_UNKNOWN", "no repository "+name)
		return
	}
	var d ociDescriptor
	switch {
	case digestRE.MatchString(ref):
		d = ociDescriptor{Digest: ref}
	case kind == "manifests":
		var ok bool
		if d, ok = repo.tags[ref]; !ok {
			regError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "no tag "+ref+" in "+name)
			return
		}
	default:
		regError(w, http.StatusBadRequest, "DIGEST_INVALID", "not a sha256 digest: "+ref)
		return
	}
	file := filepath.Join(repo.layout, "blobs", "sha256", strings.TrimPrefix(d.Digest, "sha256:"))
	f, err := os.Open(file)
	if err != nil {
		code := map[string]string{"manifests": "MANIFEST_UNKNOWN", "blobs": "BLOB_UNKNOWN"}[kind]
		regError(w, http.StatusNotFound, code, d.Digest+" is not in "+name)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		regError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	var body io.ReadSeeker = f
	ctype := "application/octet-stream"
	if kind == "manifests" {
		// A manifest is small: read it once, and by digest let it say what it is.
		b, err := io.ReadAll(f)
		if err != nil {
			regError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
			return
		}
		body, ctype = bytes.NewReader(b), d.MediaType
		if ctype == "" {
			var m struct {
				MediaType string `json:"mediaType"`
			}
			if json.Unmarshal(b, &m) == nil {
				ctype = m.MediaType
			}
		}
		if ctype == "" {
			regError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", d.Digest+" is not a manifest")
			return
		}
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Docker-Content-Digest", d.Digest)
	w.Header().Set("Etag", `"`+d.Digest+`"`)
	// ServeContent answers HEAD and Range and sets Content-Length.
	http.ServeContent(w, req, "", st.ModTime(), body)
}

func regError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
