// Package campaigntest owns the test stand-in for the Kubernetes API server's service proxy that
// `simlab campaign --stack` goes through, and the PKI behind it: a CA, a serving certificate for
// 127.0.0.1 and a client certificate, the shape of kubeadm's admin.conf. It stands in for
// kube-apiserver only in unit tests on loopback; the rehearsal (tests/rehearse) goes through the
// real API server to a real controller pod.
package campaigntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// PKI is a CA with a serving certificate for 127.0.0.1 and a client certificate for
// kubernetes-admin, all PEM.
type PKI struct {
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	server                tls.Certificate
	CA                    []byte
	ClientCert, ClientKey []byte
}

// NewPKI makes a PKI valid for an hour.
func NewPKI(t *testing.T) *PKI {
	t.Helper()
	p := &PKI{}
	var err error
	if p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	srvCert, srvKey := p.issue(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if p.server, err = tls.X509KeyPair(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	p.ClientCert, p.ClientKey = p.issue(t, &x509.Certificate{SerialNumber: big.NewInt(3),
		Subject:     pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"kubeadm:cluster-admins"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return p
}

// issue signs tmpl with the CA and returns the certificate and its key as PEM.
func (p *PKI) issue(t *testing.T, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
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
	pool.AddCert(p.ca)
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
