package localcluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simlab/simlab/infra/config"
)

// TestLocalCluster starts a real control plane with three simulated nodes and
// checks what other tests rely on: a healthy API server of the pinned version,
// Ready nodes, a Deployment that becomes Available, and simulated CPU that the
// metrics API reports after a test sets it (up and down).
func TestLocalCluster(t *testing.T) {
	t.Parallel()
	c := StartT(t, Options{Nodes: 3, WaitForMetrics: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var version struct{ GitVersion string }
	if err := c.Get(ctx, "/version", &version); err != nil {
		t.Fatal(err)
	}
	v, err := ReadVersions(mustRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if version.GitVersion != v.Kubernetes {
		t.Errorf("API server reports %q, want %q", version.GitVersion, v.Kubernetes)
	}
	if err := c.Get(ctx, "/livez", nil); err != nil {
		t.Errorf("livez: %v", err)
	}

	out, err := c.Kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(out)
	want := []string{"kwok-node-0=True", "kwok-node-1=True", "kwok-node-2=True"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("nodes: got %v, want %v", got, want)
	}

	const deploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
        resources: {requests: {cpu: 100m, memory: 64Mi}}
`
	if err := c.Apply(ctx, []byte(deploy)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitDeploymentsReady(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Deployment(ctx, "default", "web"); err != nil || d.Available != 2 {
		t.Fatalf("deployment web: %+v, %v; want 2 available", d, err)
	}

	out, err = c.Kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	pod := strings.TrimSpace(out)
	for _, step := range []struct {
		cpu    string
		milli  int64
		margin int64
	}{{"750m", 750, 40}, {"200m", 200, 20}} {
		if err := c.SetPodCPU(ctx, "default", pod, step.cpu); err != nil {
			t.Fatal(err)
		}
		var last int64 = -1
		err := Poll(ctx, time.Second, fmt.Sprintf("metrics API to report %s for pod %s", step.cpu, pod), func(ctx context.Context) (bool, string, error) {
			m, err := c.PodCPU(ctx, "default", pod)
			if err != nil {
				return false, err.Error(), nil // not scraped yet
			}
			last = m
			return m >= step.milli-step.margin && m <= step.milli+step.margin, fmt.Sprintf("%dm", m), nil
		})
		if err != nil {
			t.Fatalf("%v (last %dm)", err, last)
		}
	}
	top, err := c.Kubectl("top", "pod", pod, "--no-headers")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(top); len(f) < 2 || f[0] != pod {
		t.Fatalf("kubectl top pod: unexpected output %q", top)
	} else if m, err := MilliCPU(f[1]); err != nil || m < 180 || m > 220 {
		t.Fatalf("kubectl top pod reports %q, want about 200m", f[1])
	}
}

// TestStopEndsExactlyItsProcesses checks that Stop leaves none of the
// cluster's PIDs running and removes the state directory it created.
func TestStopEndsExactlyItsProcesses(t *testing.T) {
	t.Parallel()
	RequireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Nodes: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	procs, err := readPIDs(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 6 {
		t.Errorf("PID file lists %d processes, want 6", len(procs))
	}
	for _, p := range procs {
		if !pidRuns(p.PID, p.Bin) {
			t.Errorf("%s (pid %d) is not running before Stop", p.Name, p.PID)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if pidRuns(p.PID, p.Bin) {
			t.Errorf("%s (pid %d) still runs after Stop", p.Name, p.PID)
		}
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s still exists after Stop (err %v)", c.Dir, err)
	}
}

// TestStopDirSparesReusedPIDs checks that StopDir signals a recorded PID only
// while it still runs the recorded binary, and stops it when it does.
func TestStopDirSparesReusedPIDs(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	sleep, _ = filepath.EvalSymlinks(sleep)
	cmd := exec.Command(sleep, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill() })

	dir := t.TempDir()
	// The PID now runs `sleep`, not the recorded binary: it must be left alone.
	line := fmt.Sprintf("%d etcd /nonexistent/etcd-v0\n", cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, PIDFile), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	stopped, err := StopDir(dir)
	if err != nil || len(stopped) != 0 {
		t.Fatalf("StopDir with a reused PID: stopped %v, err %v; want nothing", stopped, err)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("StopDir signalled a PID that no longer runs the recorded binary: %v", err)
	}

	line = fmt.Sprintf("%d sleeper %s\n", cmd.Process.Pid, sleep)
	if err := os.WriteFile(filepath.Join(dir, PIDFile), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	stopped, err = StopDir(dir)
	if err != nil || len(stopped) != 1 {
		t.Fatalf("StopDir: stopped %v, err %v; want the sleeper", stopped, err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the recorded process still runs after StopDir")
	}
	if _, err := os.Stat(filepath.Join(dir, PIDFile)); !os.IsNotExist(err) {
		t.Errorf("PID file not removed: %v", err)
	}
}

func TestReadPIDsRejectsBadLines(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, PIDFile), []byte("12 etcd /x\nnot-a-pid etcd /x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := readPIDs(dir)
	if err == nil || !strings.Contains(err.Error(), PIDFile+":2") {
		t.Fatalf("want an error naming %s:2, got %v", PIDFile, err)
	}
}

// TestToolVersionsMatchConfig keeps the kubeadm/kubectl the tests run at the
// Kubernetes version the stacks deploy.
func TestToolVersionsMatchConfig(t *testing.T) {
	v, err := ReadVersions(mustRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := config.DefaultVersions().Kubernetes; v.Kubernetes != want {
		t.Errorf("tests/tools/go.mod builds Kubernetes %s, infra/config pins %s", v.Kubernetes, want)
	}
	for name, got := range map[string]string{"etcd": v.Etcd, "kwok": v.Kwok, "metrics-server": v.MetricsServer, "helm": v.Helm} {
		if !strings.HasPrefix(got, "v") {
			t.Errorf("%s version %q does not look like a version", name, got)
		}
	}
}

func TestPKI(t *testing.T) {
	p, err := newPKI()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.CA.CertPEM)
	parse := func(kp keyPair) *x509.Certificate {
		b, _ := pem.Decode(kp.CertPEM)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, name := range []string{"127.0.0.1", "kubernetes.default.svc", "10.96.0.1"} {
		_, err := parse(p.APIServer).Verify(x509.VerifyOptions{Roots: roots, DNSName: name})
		if err != nil {
			t.Errorf("apiserver certificate for %s: %v", name, err)
		}
	}
	if _, err := parse(p.MetricsServer).Verify(x509.VerifyOptions{Roots: roots, DNSName: "metrics-server.kube-system.svc"}); err != nil {
		t.Errorf("metrics-server certificate: %v", err)
	}
	admin := parse(p.Admin)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin client certificate: %v", err)
	}
	if len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin organisation %v", admin.Subject.Organization)
	}
	// The front-proxy client must not be trusted as an ordinary client.
	if _, err := parse(p.FrontProxyClient).Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("front-proxy client certificate verifies against the cluster CA; want a separate CA")
	}
}

func TestMilliCPU(t *testing.T) {
	for in, want := range map[string]int64{"250m": 250, "1": 1000, "1500000n": 1, "750123456n": 750, "12000u": 12, "0": 0} {
		got, err := MilliCPU(in)
		if err != nil || got != want {
			t.Errorf("MilliCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := MilliCPU("lots"); err == nil {
		t.Error("MilliCPU(lots): want an error")
	}
}

func mustRoot(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestHPAScalesOnSimulatedCPU proves the control plane runs the HPA loop on
// simulated CPU: 300% of the request scales a Deployment to maxReplicas (and
// never beyond), 10% scales it back to minReplicas after the (shortened)
// downscale stabilisation window.
func TestHPAScalesOnSimulatedCPU(t *testing.T) {
	t.Parallel()
	c := StartT(t, Options{Nodes: 2, HPADownscaleStabilization: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const manifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: busy, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: busy}}
  template:
    metadata:
      labels: {app: busy}
      annotations: {"kwok.x-k8s.io/usage-cpu": "300m"}
    spec:
      containers:
      - {name: busy, image: registry.invalid/busy:1, resources: {requests: {cpu: 100m}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: busy, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: busy}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
`
	if err := c.Apply(ctx, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	maxSeen := 0
	replicas := func(want int) func(ctx context.Context) (bool, string, error) {
		return func(ctx context.Context) (bool, string, error) {
			d, err := c.Deployment(ctx, "default", "busy")
			if err != nil {
				return false, "", err
			}
			maxSeen = max(maxSeen, d.Replicas)
			return d.Replicas == want && d.Available == want, fmt.Sprintf("%+v", d), nil
		}
	}
	if err := Poll(ctx, time.Second, "scale-up to maxReplicas 3", replicas(3)); err != nil {
		t.Fatal(err)
	}
	out, err := c.Kubectl("annotate", "pods", "-l", "app=busy", "--overwrite", CPUAnnotation+"=10m")
	if err != nil {
		t.Fatal(err, out)
	}
	if err := Poll(ctx, time.Second, "scale-down to minReplicas 1", replicas(1)); err != nil {
		t.Fatal(err)
	}
	if maxSeen > 3 {
		t.Errorf("the Deployment reached %d replicas, above maxReplicas 3", maxSeen)
	}
	// Deleted pods must go away (kwok's delete stage), not stay Terminating.
	if err := Poll(ctx, 200*time.Millisecond, "one busy pod left", func(ctx context.Context) (bool, string, error) {
		out, err := c.KubectlContext(ctx, nil, "get", "pods", "-l", "app=busy", "-o", "name")
		if err != nil {
			return false, "", err
		}
		n := len(strings.Fields(out))
		return n == 1, fmt.Sprintf("%d pods", n), nil
	}); err != nil {
		t.Error(err)
	}
}

func TestPrepareDirRefusesForeignDirectories(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prepareDir(dir); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("prepareDir on a foreign directory: err %v, want a refusal", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("prepareDir removed a foreign file: %v", err)
	}
	// A directory an earlier run left (pki/ca.crt, no live PIDs) is cleared.
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pki", "ca.crt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prepareDir(dir); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("earlier run's state not cleared: %d entries left", len(entries))
	}
}
