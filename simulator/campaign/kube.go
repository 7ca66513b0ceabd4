package campaign

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"

	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Service names the controller's Kubernetes Service: where the chart puts it.
type Service struct {
	Namespace, Name string
	Port            int
}

// kubeconfig is the part of a kubeconfig file (clientcmd's v1 Config) that
// the controller route reads.
type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
			TLSServerName            string `yaml:"tls-server-name"`
			ProxyURL                 string `yaml:"proxy-url"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			ClientCertificate     string         `yaml:"client-certificate"`
			ClientCertificateData string         `yaml:"client-certificate-data"`
			ClientKey             string         `yaml:"client-key"`
			ClientKeyData         string         `yaml:"client-key-data"`
			Token                 string         `yaml:"token"`
			TokenFile             string         `yaml:"tokenFile"`
			Username              string         `yaml:"username"`
			Password              string         `yaml:"password"`
			Exec                  map[string]any `yaml:"exec"`
			AuthProvider          map[string]any `yaml:"auth-provider"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

// NewKubeClient returns a client that reaches the controller through the
// Kubernetes API server's proxy to svc
// (/api/v1/namespaces/NS/services/http:NAME:PORT/proxy), authenticated as the
// kubeconfig's user: no kubectl and no local port. kc is the kubeconfig's
// text, from names where it came from (errors name it), context selects a
// context (empty: the current one). Relative certificate and token file paths
// are taken from the directory of from, as kubectl does. Credential plugins
// (exec, auth-provider) are not run: such a kubeconfig gets an error that says
// what to do instead.
func NewKubeClient(kc []byte, from, context string, svc Service) (*Client, error) {
	var cfg kubeconfig
	if err := yaml.Unmarshal(kc, &cfg); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", from, err)
	}
	if context == "" {
		context = cfg.CurrentContext
	}
	if context == "" {
		return nil, fmt.Errorf("kubeconfig %s has no current-context; name one (simlab:existing.context)", from)
	}
	ci := -1
	for i, c := range cfg.Contexts {
		if c.Name == context {
			ci = i
		}
	}
	if ci < 0 {
		return nil, fmt.Errorf("kubeconfig %s has no context %q", from, context)
	}
	ctx := cfg.Contexts[ci].Context
	base := filepath.Dir(from)
	file := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	// data returns inline base64 data or the file's bytes.
	data := func(what, inline, path string) ([]byte, error) {
		if inline != "" {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(inline))
			if err != nil {
				return nil, fmt.Errorf("kubeconfig %s: %s-data is not base64: %w", from, what, err)
			}
			return b, nil
		}
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(file(path))
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %s: %w", from, what, err)
		}
		return b, nil
	}

	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	var server *url.URL
	found := false
	for _, c := range cfg.Clusters {
		if c.Name != ctx.Cluster {
			continue
		}
		found = true
		u, err := url.Parse(c.Cluster.Server)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("kubeconfig %s: cluster %q: server %q is not a URL", from, c.Name, c.Cluster.Server)
		}
		if c.Cluster.ProxyURL != "" {
			return nil, fmt.Errorf("kubeconfig %s: cluster %q: proxy-url is not supported; give --controller-url with a port-forward instead", from, c.Name)
		}
		server = u
		ca, err := data("certificate-authority", c.Cluster.CertificateAuthorityData, c.Cluster.CertificateAuthority)
		if err != nil {
			return nil, err
		}
		if ca != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("kubeconfig %s: cluster %q: its certificate authority holds no PEM certificate", from, c.Name)
			}
			tc.RootCAs = pool
		}
		tc.InsecureSkipVerify = c.Cluster.InsecureSkipTLSVerify
		tc.ServerName = c.Cluster.TLSServerName
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig %s: context %q names cluster %q, which it does not have", from, context, ctx.Cluster)
	}

	var header http.Header
	found = false
	for _, u := range cfg.Users {
		if u.Name != ctx.User {
			continue
		}
		found = true
		switch {
		case u.User.Exec != nil, u.User.AuthProvider != nil:
			return nil, fmt.Errorf("kubeconfig %s: user %q gets its credentials from a plugin (exec or auth-provider), which simlab campaign does not run; "+
				"use a kubeconfig with a client certificate or token, or forward a port (kubectl -n %s port-forward svc/%s %d:%d) and give --controller-url http://127.0.0.1:%d",
				from, u.Name, svc.Namespace, svc.Name, svc.Port, svc.Port, svc.Port)
		}
		cert, err := data("client-certificate", u.User.ClientCertificateData, u.User.ClientCertificate)
		if err != nil {
			return nil, err
		}
		key, err := data("client-key", u.User.ClientKeyData, u.User.ClientKey)
		if err != nil {
			return nil, err
		}
		if (cert == nil) != (key == nil) {
			return nil, fmt.Errorf("kubeconfig %s: user %q has a client certificate without its key, or a key without its certificate", from, u.Name)
		}
		if cert != nil {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("kubeconfig %s: user %q: %w", from, u.Name, err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		token := u.User.Token
		if token == "" && u.User.TokenFile != "" {
			b, err := os.ReadFile(file(u.User.TokenFile))
			if err != nil {
				return nil, fmt.Errorf("kubeconfig %s: user %q: tokenFile: %w", from, u.Name, err)
			}
			token = strings.TrimSpace(string(b))
		}
		header = http.Header{}
		switch {
		case token != "":
			header.Set("Authorization", "Bearer "+token)
		case u.User.Username != "":
			header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.User.Username+":"+u.User.Password)))
		}
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig %s: context %q names user %q, which it does not have", from, context, ctx.User)
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = tc
	var rt http.RoundTripper = tr
	if len(header) > 0 {
		rt = headerTransport{header: header, next: tr}
	}
	proxy := server.JoinPath("api/v1/namespaces", svc.Namespace, "services", fmt.Sprintf("http:%s:%d", svc.Name, svc.Port), "proxy")
	return &Client{URL: strings.TrimRight(proxy.String(), "/"), HTTP: &http.Client{Timeout: 30 * time.Second, Transport: rt},
		Via: fmt.Sprintf("service %s/%s:%d through %s (kubeconfig %s)", svc.Namespace, svc.Name, svc.Port, server.Host, from)}, nil
}

// headerTransport adds the kubeconfig user's Authorization header.
type headerTransport struct {
	header http.Header
	next   http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.header {
		r.Header[k] = v
	}
	return h.next.RoundTrip(r)
}
