// Package campaigntest owns the test stand-in for the Kubernetes API server's service proxy that
// `simlab campaign --stack` goes through, and the PKI behind it (issued by tests/testpki): a CA,
// a serving certificate for 127.0.0.1 and a client certificate, the shape of kubeadm's
// admin.conf. It stands in for
// kube-apiserver only in unit tests on loopback; the rehearsal (tests/rehearse) goes through the
// real API server to a real controller pod.
package campaigntest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simlab/simlab/tests/testpki"
)

// PKI is a CA with a serving certificate for 127.0.0.1 and a client certificate for
// kubernetes-admin, all PEM.
type PKI struct {
	ca                    testpki.KeyPair
	server                tls.Certificate
	CA                    []byte
	ClientCert, ClientKey []byte
}

// NewPKI makes a PKI valid for an hour.
func NewPKI(t *testing.T) *PKI {
	t.Helper()
	issue := func(parent *testpki.KeyPair, s testpki.Spec) testpki.KeyPair {
		s.Validity = time.Hour
		kp, err := testpki.Issue(parent, s)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	ca := issue(nil, testpki.Spec{CN: "kubernetes", CA: true})
	srv := issue(&ca, testpki.Spec{CN: "kube-apiserver", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	client := issue(&ca, testpki.Spec{CN: "kubernetes-admin", Orgs: []string{"kubeadm:cluster-admins"}})
	server, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{ca: ca, server: server, CA: ca.CertPEM, ClientCert: client.CertPEM, ClientKey: client.KeyPEM}
}

// Request is what the stand-in saw of one request: its path, the client certificate's common
// name and the Authorization header.
type Request struct {
	Path, User, Auth string
}

// APIServer is the stand-in: TLS on 127.0.0.1 with the PKI's serving certificate, client
// certificates of the PKI's CA accepted. It answers GET <proxy>/v1/status with a controller
// status of stage "empty", where <proxy> is
// /api/v1/namespaces/NS/services/http:simulator-controller:8080/proxy, and 404 to anything else.
type APIServer struct {
	URL string
	mu  sync.Mutex
	saw []Request
}

// StartAPIServer starts a stand-in for namespace ns, closed when the test ends.
func StartAPIServer(t *testing.T, p *PKI, ns string) *APIServer {
	t.Helper()
	a := &APIServer{}
	status := "/api/v1/namespaces/" + ns + "/services/http:simulator-controller:8080/proxy/v1/status"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := Request{Path: r.URL.Path, Auth: r.Header.Get("Authorization")}
		if len(r.TLS.PeerCertificates) > 0 {
			req.User = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		a.mu.Lock()
		a.saw = append(a.saw, req)
		a.mu.Unlock()
		if req.Path != status {
			http.Error(w, `{"kind":"Status","message":"not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"stage":"empty"}`)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// Requests returns what the stand-in has seen so far.
func (a *APIServer) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.saw...)
}

// Base64 is how a kubeconfig holds inline data.
func Base64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Kubeconfig is a kubeconfig whose one context "lab" (the current one) names cluster "c" at
// server with the cluster lines given, and user "u" with the user lines given.
func Kubeconfig(server, cluster, user string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: lab
clusters:
- name: c
  cluster:
    server: %s
%s
contexts:
- name: lab
  context: {cluster: c, user: u}
users:
- name: u
  user:
%s
`, server, indent(cluster, "    "), indent(user, "    "))
}

// AdminKubeconfig is Kubeconfig with the PKI's CA and client certificate inline, as kubeadm
// writes admin.conf.
func (p *PKI) AdminKubeconfig(server string) string {
	return Kubeconfig(server, "certificate-authority-data: "+Base64(p.CA),
		"client-certificate-data: "+Base64(p.ClientCert)+"\nclient-key-data: "+Base64(p.ClientKey))
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n")
}
