package localcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/simlab/simlab/tests/testpki"
)

// certValidity is how long the per-run certificates are valid: long enough for
// a cluster started with `make cluster-up` to live through a working week.
const certValidity = 30 * 24 * time.Hour

// keyPair is a certificate and its private key (testpki issues them).
type keyPair = testpki.KeyPair

// pki is the per-run set of CAs, serving and client certificates.
type pki struct {
	CA, FrontProxyCA                 keyPair
	APIServer, Kwok, MetricsServer   keyPair // serving
	Admin, ControllerManager         keyPair // clients
	Scheduler, KwokClient, MSClient  keyPair
	FrontProxyClient                 keyPair
	ServiceAccountKey, ServiceAccPub []byte
}

func newCA(cn string) (keyPair, error) {
	return newCert(nil, certSpec{cn: cn, isCA: true})
}

type certSpec struct {
	cn     string
	orgs   []string
	dns    []string
	ips    []net.IP
	isCA   bool
	server bool
}

func newCert(parent *keyPair, s certSpec) (keyPair, error) {
	return testpki.Issue(parent, testpki.Spec{CN: s.cn, Orgs: s.orgs, DNS: s.dns, IPs: s.ips, CA: s.isCA, Server: s.server, Validity: certValidity})
}

// serviceIP is the first address of the service range: the `kubernetes` Service.
var serviceIP = net.ParseIP("10.96.0.1")

// newPKI generates every certificate a run needs.
func newPKI() (*pki, error) {
	var p pki
	var err error
	if p.CA, err = newCA("simlab-localcluster-ca"); err != nil {
		return nil, err
	}
	if p.FrontProxyCA, err = newCA("simlab-localcluster-front-proxy-ca"); err != nil {
		return nil, err
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	specs := []struct {
		dst    *keyPair
		parent *keyPair
		spec   certSpec
	}{
		{&p.APIServer, &p.CA, certSpec{cn: "kube-apiserver", server: true, ips: append(loopback, serviceIP),
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}}},
		{&p.Kwok, &p.CA, certSpec{cn: "kwok", server: true, ips: loopback, dns: []string{"localhost"}}},
		{&p.MetricsServer, &p.CA, certSpec{cn: "metrics-server", server: true, ips: loopback,
			dns: []string{"localhost", "metrics-server.kube-system.svc", "metrics-server.kube-system.svc.cluster.local"}}},
		// Every component is a cluster admin: this is a disposable test cluster
		// and it keeps RBAC out of the way; each has its own name for audit.
		{&p.Admin, &p.CA, certSpec{cn: "kubernetes-admin", orgs: []string{"system:masters"}}},
		{&p.ControllerManager, &p.CA, certSpec{cn: "system:kube-controller-manager", orgs: []string{"system:masters"}}},
		{&p.Scheduler, &p.CA, certSpec{cn: "system:kube-scheduler", orgs: []string{"system:masters"}}},
		{&p.KwokClient, &p.CA, certSpec{cn: "kwok-controller", orgs: []string{"system:masters"}}},
		{&p.MSClient, &p.CA, certSpec{cn: "metrics-server", orgs: []string{"system:masters"}}},
		{&p.FrontProxyClient, &p.FrontProxyCA, certSpec{cn: "front-proxy-client"}},
	}
	for _, s := range specs {
		if *s.dst, err = newCert(s.parent, s.spec); err != nil {
			return nil, err
		}
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the service-account key: %w", err)
	}
	saDER, err := x509.MarshalECPrivateKey(sa)
	if err != nil {
		return nil, fmt.Errorf("encoding the service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding the service-account public key: %w", err)
	}
	p.ServiceAccountKey = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})
	p.ServiceAccPub = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	return &p, nil
}

// write stores the PKI under dir/pki and returns the file paths by name.
func (p *pki) write(dir string) (map[string]string, error) {
	dir = filepath.Join(dir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	files := map[string][]byte{
		"ca.crt": p.CA.CertPEM, "ca.key": p.CA.KeyPEM,
		"front-proxy-ca.crt": p.FrontProxyCA.CertPEM,
		"apiserver.crt":      p.APIServer.CertPEM, "apiserver.key": p.APIServer.KeyPEM,
		"kwok.crt": p.Kwok.CertPEM, "kwok.key": p.Kwok.KeyPEM,
		"metrics-server.crt": p.MetricsServer.CertPEM, "metrics-server.key": p.MetricsServer.KeyPEM,
		"front-proxy-client.crt": p.FrontProxyClient.CertPEM, "front-proxy-client.key": p.FrontProxyClient.KeyPEM,
		"sa.key": p.ServiceAccountKey, "sa.pub": p.ServiceAccPub,
	}
	paths := map[string]string{}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		paths[name] = path
	}
	return paths, nil
}

// kubeconfig renders a kubeconfig with everything embedded, so the file works
// when copied elsewhere.
func kubeconfig(server string, ca []byte, user string, client keyPair) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: simlab-local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: simlab-local
  context:
    cluster: simlab-local
    user: %s
current-context: simlab-local
`, server, b64(ca), user, b64(client.CertPEM), b64(client.KeyPEM), user))
}

// tlsClient returns a TLS config that trusts ca and presents client.
func tlsClient(ca []byte, client keyPair) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("parsing the cluster CA")
	}
	cert, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the admin client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
