package campaign

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simlab/simlab/simulator/campaign/campaigntest"
)

var testService = Service{Namespace: "sim", Name: "simulator-controller", Port: 8080}

func TestKubeClientGoesThroughTheServiceProxyWithTheClientCertificate(t *testing.T) {
	p := campaigntest.NewPKI(t)
	api := campaigntest.StartAPIServer(t, p, "sim")
	c, err := NewKubeClient([]byte(p.AdminKubeconfig(api.URL)), "admin.conf", "", testService)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Stage != "empty" {
		t.Errorf("stage %q, want empty", st.Stage)
	}
	got := api.Requests()
	if len(got) != 1 || got[0].User != "kubernetes-admin" || got[0].Auth != "" {
		t.Errorf("the API server saw %+v, want one request from kubernetes-admin by certificate", got)
	}
	// An error names the route, not only the proxy URL.
	_, err = c.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "service sim/simulator-controller:8080 through 127.0.0.1") || !strings.Contains(err.Error(), "admin.conf") {
		t.Errorf("error %v does not name the service and kubeconfig", err)
	}
}

func TestKubeClientReadsFilesBesideTheKubeconfigAndSendsItsToken(t *testing.T) {
	p := campaigntest.NewPKI(t)
	api := campaigntest.StartAPIServer(t, p, "sim")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), p.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := campaigntest.Kubeconfig(api.URL, "certificate-authority: ca.crt", "tokenFile: token")
	c, err := NewKubeClient([]byte(kc), filepath.Join(dir, "kubeconfig"), "lab", testService)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := api.Requests(); len(got) != 1 || got[0].Auth != "Bearer s3cret-token" || got[0].User != "" {
		t.Errorf("the API server saw %+v, want one request with the file's token and no certificate", got)
	}
}

func TestKubeClientRefusesAServerItsCADidNotSign(t *testing.T) {
	p, other := campaigntest.NewPKI(t), campaigntest.NewPKI(t)
	api := campaigntest.StartAPIServer(t, p, "sim")
	kc := campaigntest.Kubeconfig(api.URL, "certificate-authority-data: "+campaigntest.Base64(other.CA), "token: x")
	c, err := NewKubeClient([]byte(kc), "kc", "", testService)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("got %v, want a certificate verification error", err)
	}
	if got := api.Requests(); len(got) != 0 {
		t.Errorf("the request reached the server: %+v", got)
	}
}

func TestKubeClientNamesWhatIsWrongWithTheKubeconfig(t *testing.T) {
	ca := "certificate-authority-data: " + campaigntest.Base64(campaigntest.NewPKI(t).CA)
	kc := func(cluster, user string) string {
		return campaigntest.Kubeconfig("https://127.0.0.1:6443", cluster, user)
	}
	for _, tc := range []struct {
		name, kc, context, want string
	}{
		{"exec plugin", kc(ca, "exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}"), "",
			`user "u" gets its credentials from a plugin`},
		{"port-forward hint", kc(ca, "auth-provider: {name: oidc}"), "",
			"kubectl -n sim port-forward svc/simulator-controller 8080:8080"},
		{"no such context", kc(ca, "token: x"), "prod", `has no context "prod"`},
		{"no current context", strings.Replace(kc(ca, "token: x"), "current-context: lab", "", 1), "", "has no current-context"},
		{"missing cluster", strings.Replace(kc(ca, "token: x"), "- name: c\n", "- name: d\n", 1), "",
			`names cluster "c", which it does not have`},
		{"missing user", strings.Replace(kc(ca, "token: x"), "- name: u\n", "- name: v\n", 1), "",
			`names user "u", which it does not have`},
		{"bad base64", kc(ca, "client-certificate-data: '%%%'\nclient-key-data: eA=="), "", "client-certificate-data is not base64"},
		{"certificate without key", kc(ca, "client-certificate-data: eA=="), "", "client certificate without its key"},
		{"server", campaigntest.Kubeconfig("127.0.0.1:6443", ca, "token: x"), "", `server "127.0.0.1:6443" is not a URL`},
		{"missing CA file", kc("certificate-authority: nope.crt", "token: x"), "",
			"certificate-authority: open " + filepath.Join("dir", "nope.crt")},
		{"not YAML", "clusters: [", "", "kubeconfig " + filepath.Join("dir", "kubeconfig")},
	} {
		_, err := NewKubeClient([]byte(tc.kc), filepath.Join("dir", "kubeconfig"), tc.context, testService)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Join("dir", "kubeconfig")) {
			t.Errorf("%s: got %v, want an error naming the file and %q", tc.name, err, tc.want)
		}
	}
}
