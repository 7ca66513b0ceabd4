package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current renderer")

// Placeholders of the golden files: a fixed token and CA hash, and an address
// from TEST-NET-1 for nodes whose IP comes from DHCP.
const (
	goldenToken       = "abcdef.0123456789abcdef"
	goldenDHCPAddress = "192.0.2.10"
)

var goldenCAHash = func() string {
	s := sha256.Sum256([]byte("simlab golden CA"))
	return "sha256:" + hex.EncodeToString(s[:])
}()

// committedStacks returns the stacks with nodes (libvirt or metal).
func committedStacks(t *testing.T) map[string]*config.Loaded {
	t.Helper()
	files, err := filepath.Glob("../../stacks/Pulumi.*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no committed stacks found: %v", err)
	}
	out := map[string]*config.Loaded{}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml")
		l, err := config.LoadStackFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if l.Provider == config.ProviderExisting {
			continue
		}
		out[name] = l
	}
	return out
}

// goldenConfigs renders a stack's init config (for its controller) and join
// config (for its first worker) with the golden placeholders.
func goldenConfigs(t *testing.T, c *config.Config) (initYAML, joinYAML []byte) {
	t.Helper()
	ctrl := c.NodesByRole(config.RoleController)
	workers := c.NodesByRole(config.RoleWorker)
	if len(ctrl) == 0 || len(workers) == 0 {
		t.Fatalf("stack %s needs a controller and a worker", c.Cluster.Name)
	}
	addr := ctrl[0].IP
	if addr == "" {
		addr = goldenDHCPAddress
	}
	initYAML, err := RenderInit(InitParams{Cluster: c.Cluster, KubernetesVersion: c.Versions.Kubernetes,
		NodeName: ctrl[0].Name, AdvertiseAddress: addr, Token: goldenToken})
	if err != nil {
		t.Fatal(err)
	}
	joinYAML, err = RenderJoin(JoinParams{NodeName: workers[0].Name, ControllerAddress: addr,
		Token: goldenToken, CACertHash: goldenCAHash})
	if err != nil {
		t.Fatal(err)
	}
	return initYAML, joinYAML
}

func TestGoldenKubeadmConfigs(t *testing.T) {
	for name, l := range committedStacks(t) {
		initYAML, joinYAML := goldenConfigs(t, &l.Config)
		for suffix, got := range map[string][]byte{"init": initYAML, "join": joinYAML} {
			path := filepath.Join("testdata", "golden", name+"-"+suffix+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (regenerate with `make golden-cluster`)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the renderer's output; review and run `make golden-cluster`\n--- got:\n%s", path, got)
			}
		}
	}
}

func TestRenderedInitCarriesTheStackSettings(t *testing.T) {
	c := config.Default()
	c.Cluster.PodCIDR = "10.50.0.0/16"
	out, err := RenderInit(InitParams{Cluster: c.Cluster, KubernetesVersion: "v1.34.4", NodeName: "x-controller-1",
		AdvertiseAddress: "10.0.0.5", Token: goldenToken})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"podSubnet: 10.50.0.0/16", "serviceSubnet: 10.96.0.0/12", "kubernetesVersion: v1.34.4",
		"cgroupDriver: systemd", "serverTLSBootstrap: true", "volumePluginDir: /var/lib/kubelet/volumeplugins",
		"value: /var/lib/kubelet/volumeplugins", "advertiseAddress: 10.0.0.5", "name: x-controller-1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("init config lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderRejectsBadInputs(t *testing.T) {
	c := config.Default()
	cases := map[string]error{}
	_, cases["short token"] = RenderInit(InitParams{Cluster: c.Cluster, NodeName: "n", AdvertiseAddress: "10.0.0.1", Token: "abc.def"})
	_, cases["hostname as address"] = RenderInit(InitParams{Cluster: c.Cluster, NodeName: "n", AdvertiseAddress: "n.example", Token: goldenToken})
	_, cases["bad hash"] = RenderJoin(JoinParams{NodeName: "w", ControllerAddress: "10.0.0.1", Token: goldenToken, CACertHash: "md5:00"})
	_, cases["join without controller"] = RenderJoin(JoinParams{NodeName: "w", Token: goldenToken, CACertHash: goldenCAHash})
	for name, err := range cases {
		if err == nil {
			t.Errorf("%s: want an error", name)
		} else if !strings.Contains(err.Error(), "config for") {
			t.Errorf("%s: error should name the config and node: %v", name, err)
		}
	}
}

// kubeadmBinary finds the real kubeadm that `make tools` builds into
// .cache/bin (SIMLAB_KUBEADM overrides). Missing: a failure in CI, a skip locally.
func kubeadmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SIMLAB_KUBEADM"); p != "" {
		return p
	}
	want := "kubeadm-" + config.DefaultVersions().Kubernetes
	p, err := filepath.Abs(filepath.Join("..", "..", ".cache", "bin", want))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		others, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "kubeadm-*"))
		msg := fmt.Sprintf("real kubeadm %s (simlab:versions.kubernetes) not found at %s: run `make tools` "+
			"(builds it from k8s.io/kubernetes in tests/tools/go.mod, which must pin the same version); found %v", want, p, others)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

func runKubeadm(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("kubeadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestKubeadmAcceptsGeneratedConfigs runs the real kubeadm on every committed
// stack's configs: validate both, then generate certificates and an admin
// kubeconfig from the init config in a temp dir. The join config is validated
// again with the hash of the CA kubeadm just generated, proving that
// CACertHash computes what kubeadm expects.
func TestKubeadmAcceptsGeneratedConfigs(t *testing.T) {
	bin := kubeadmBinary(t)
	for name, l := range committedStacks(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			initYAML, joinYAML := goldenConfigs(t, &l.Config)
			initPath, joinPath := filepath.Join(dir, "init.yaml"), filepath.Join(dir, "join.yaml")
			if err := os.WriteFile(initPath, initYAML, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(joinPath, joinYAML, 0o600); err != nil {
				t.Fatal(err)
			}
			runKubeadm(t, bin, "config", "validate", "--config", initPath)
			runKubeadm(t, bin, "config", "validate", "--config", joinPath)
			// kubeadm takes the cert dir from the config (flags and --config don't mix), so point a copy at ours.
			certs, kubeconfigs := filepath.Join(dir, "pki"), filepath.Join(dir, "kubeconfig")
			withCerts := bytes.Replace(initYAML, []byte("kind: ClusterConfiguration\n"),
				[]byte("kind: ClusterConfiguration\ncertificatesDir: "+certs+"\n"), 1)
			if bytes.Equal(withCerts, initYAML) {
				t.Fatal("init config has no ClusterConfiguration")
			}
			if err := os.WriteFile(initPath, withCerts, 0o600); err != nil {
				t.Fatal(err)
			}
			runKubeadm(t, bin, "init", "phase", "certs", "all", "--config", initPath)
			runKubeadm(t, bin, "init", "phase", "kubeconfig", "admin", "--config", initPath, "--kubeconfig-dir", kubeconfigs)
			admin, err := os.ReadFile(filepath.Join(kubeconfigs, "admin.conf"))
			if err != nil {
				t.Fatalf("kubeadm wrote no admin.conf: %v", err)
			}
			fromKubeconfig, err := CACertHashFromKubeconfig(string(admin))
			if err != nil {
				t.Fatal(err)
			}
			caPEM, err := os.ReadFile(filepath.Join(certs, "ca.crt"))
			if err != nil {
				t.Fatal(err)
			}
			fromCA, err := CACertHash(caPEM)
			if err != nil {
				t.Fatal(err)
			}
			if fromKubeconfig != fromCA {
				t.Errorf("hash from admin.conf %s != hash of ca.crt %s", fromKubeconfig, fromCA)
			}
			ctrl := l.NodesByRole(config.RoleController)[0]
			addr := ctrl.IP
			if addr == "" {
				addr = goldenDHCPAddress
			}
			if !strings.Contains(string(admin), "server: https://"+addr+":6443") {
				t.Errorf("admin.conf does not point at the controller %s:\n%s", addr, admin)
			}
			real, err := RenderJoin(JoinParams{NodeName: l.NodesByRole(config.RoleWorker)[0].Name, ControllerAddress: addr,
				Token: goldenToken, CACertHash: fromCA})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(joinPath, real, 0o600); err != nil {
				t.Fatal(err)
			}
			runKubeadm(t, bin, "config", "validate", "--config", joinPath)
		})
	}
}

// TestMirrorCopiesTheImagesKubeadmPullsForTheStack: the artifact mirror asks
// kubeadm for its images by release (`config images list
// --kubernetes-version`); the real kubeadm, given each stack's rendered init
// config, must name exactly those, or an air-gapped init would pull an image
// the mirror lacks.
func TestMirrorCopiesTheImagesKubeadmPullsForTheStack(t *testing.T) {
	bin := kubeadmBinary(t)
	for name, l := range committedStacks(t) {
		t.Run(name, func(t *testing.T) {
			initYAML, _ := goldenConfigs(t, &l.Config)
			initPath := filepath.Join(t.TempDir(), "init.yaml")
			if err := os.WriteFile(initPath, initYAML, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "config", "images", "list", "--config", initPath).Output()
			if err != nil {
				t.Fatalf("kubeadm config images list --config: %v", err)
			}
			stack := strings.Fields(string(out))
			mirrored, err := artifacts.KubeadmImages(context.Background(), bin, l.Versions.Kubernetes)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(stack, " ") != strings.Join(mirrored, " ") {
				t.Errorf("kubeadm pulls for the stack's config:\n  %s\nthe mirror copies:\n  %s", strings.Join(stack, "\n  "), strings.Join(mirrored, "\n  "))
			}
			if !strings.Contains(string(out), "registry.k8s.io/pause:") {
				t.Errorf("no pause image in kubeadm's list:\n%s", out)
			}
		})
	}
}
