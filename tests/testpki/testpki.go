// Package testpki owns the certificates tests make for themselves: a CA and the serving and
// client certificates it signs (ECDSA P-256, PEM-encoded), as kubeadm's PKI has them. The local
// control plane (tests/localcluster) and the API server stand-in of `simlab campaign`'s tests
// (simulator/campaign/campaigntest) issue theirs here.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyPair is a certificate and its private key, PEM-encoded, with the parsed forms that sign
// further certificates.
type KeyPair struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
	Key             *ecdsa.PrivateKey
}

// Spec describes a certificate: its subject, names and addresses, and what it is for — a CA, a
// serving certificate (Server) or else a client certificate.
type Spec struct {
	CN       string
	Orgs     []string
	DNS      []string
	IPs      []net.IP
	CA       bool
	Server   bool
	Validity time.Duration // from an hour ago (clock skew) to now + Validity
}

// Issue makes a key and a certificate for s, signed by parent (nil: self-signed).
func Issue(parent *KeyPair, s Spec) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generating key for %s: %w", s.CN, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return KeyPair{}, fmt.Errorf("serial for %s: %w", s.CN, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.CN, Organization: s.Orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(s.Validity),
		DNSNames:     s.DNS,
		IPAddresses:  s.IPs,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	switch {
	case s.CA:
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	case s.Server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return KeyPair{}, fmt.Errorf("signing certificate for %s: %w", s.CN, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("parsing certificate for %s: %w", s.CN, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encoding key for %s: %w", s.CN, err)
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		Cert:    cert,
		Key:     key,
	}, nil
}
