package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/tests/localcluster"
)

// servingCSR is a kubelet serving certificate request as `node` would send it.
func servingCSR(t *testing.T, name, node string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		DNSNames: []string{node},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	req := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	return []byte(fmt.Sprintf(`apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: %s
spec:
  signerName: kubernetes.io/kubelet-serving
  usages: [digital signature, server auth]
  request: %s
`, name, req))
}

func csrCondition(t *testing.T, c *localcluster.Cluster, name string) string {
	t.Helper()
	out, err := c.Kubectl("get", "csr", name, "-o", "jsonpath={.status.conditions[*].type}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// TestAdmitAndDrainScriptsOnARealAPIServer runs the admit command's create
// (approve the node's kubelet serving CSR) and delete (drain and delete the
// Node) scripts against the local control plane (real kube-apiserver, kwok
// nodes): only the node's own serving request is approved, and the drained
// node is gone.
func TestAdmitAndDrainScriptsOnARealAPIServer(t *testing.T) {
	c := localcluster.StartT(t, localcluster.Options{Nodes: 2})
	node, other := c.Nodes[0], c.Nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for name, as := range map[string]string{"serving-mine": node, "serving-other": other} {
		_, err := c.KubectlContext(ctx, strings.NewReader(string(servingCSR(t, name, as))), "create", "-f", "-",
			"--as=system:node:"+as, "--as-group=system:nodes", "--as-group=system:authenticated")
		if err != nil {
			t.Fatalf("creating %s as %s: %v", name, as, err)
		}
	}
	kubectl := c.Bin.Kubectl + " --kubeconfig " + c.Kubeconfig
	run := func(script string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("script failed: %v\n%s\n--- script:\n%s", err, out, script)
		}
	}
	run(approveScriptWith(kubectl, node))
	if got := csrCondition(t, c, "serving-mine"); !strings.Contains(got, "Approved") {
		t.Errorf("the node's serving CSR is %q, want Approved", got)
	}
	if got := csrCondition(t, c, "serving-other"); got != "" {
		t.Errorf("another node's CSR must stay pending, got %q", got)
	}
	// Idempotent: a re-run finds the approved request and succeeds.
	run(approveScriptWith(kubectl, node))

	run(drainScriptWith(kubectl, node))
	if out, err := c.Kubectl("get", "nodes", "-o", "name"); err != nil || strings.Contains(out, "node/"+node+"\n") {
		t.Errorf("node %s still exists after drain+delete: %v\n%s", node, err, out)
	}
	// Deleting a node that is already gone succeeds (destroy never hangs).
	run(drainScriptWith(kubectl, node))
}

// TestTokenScriptOnARealAPIServer runs the join-token refresh with the real
// kubeadm against the local control plane: the first run creates the token,
// a second run (token exists) replaces it with a fresh TTL; kubeadm never
// gets the token (nor its secret half) as an argument, where `ps` would
// show it, and no copy of its config is left behind.
func TestTokenScriptOnARealAPIServer(t *testing.T) {
	real := kubeadmBinary(t)
	c := localcluster.StartT(t, localcluster.Options{Nodes: 1})
	token := DeriveToken("seed", "dev")
	id, secret, _ := strings.Cut(token, ".")
	// kubeadm as the script runs it, logging its arguments first.
	dir := t.TempDir()
	argv := filepath.Join(dir, "argv.log")
	kubeadm := filepath.Join(dir, "kubeadm")
	if err := os.WriteFile(kubeadm, []byte(fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n", argv, real)), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	config, err := RenderTokenRefresh("dev-worker-1", token, "v1.34.4")
	if err != nil {
		t.Fatal(err)
	}
	script := tokenScriptWith(kubeadm, "--kubeconfig "+c.Kubeconfig)
	expiry := func() string {
		out, err := c.Kubectl("-n", "kube-system", "get", "secret", "bootstrap-token-"+id, "-o", "jsonpath={.data.expiration}")
		if err != nil {
			t.Fatalf("the token secret does not exist: %v", err)
		}
		b, err := base64.StdEncoding.DecodeString(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for i := 1; i <= 2; i++ {
		cmd := exec.Command("sh", "-c", script)
		cmd.Stdin = strings.NewReader(string(config))
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		if strings.Contains(string(out), "internet") {
			t.Errorf("run %d: kubeadm looked for a release on the internet:\n%s", i, out)
		}
		exp, err := time.Parse(time.RFC3339, expiry())
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Until(exp); left < 50*time.Minute || left > 61*time.Minute {
			t.Errorf("run %d: token expires in %v, want about 1h", i, left)
		}
	}
	out, err := c.Kubectl("-n", "kube-system", "get", "secret", "bootstrap-token-"+id, "-o", "jsonpath={.data.description}")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := base64.StdEncoding.DecodeString(out); !strings.Contains(string(d), "dev-worker-1") {
		t.Errorf("token description %q does not name the worker", d)
	}
	args, err := os.ReadFile(argv)
	if err != nil || !strings.Contains(string(args), "token create --config ") {
		t.Fatalf("kubeadm was not run as expected (%v):\n%s", err, args)
	}
	if strings.Contains(string(args), secret) {
		t.Errorf("the token's secret is on kubeadm's command line:\n%s", args)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the script left %d file(s) in its scratch directory's parent (the token's config)", len(left))
	}
}
