package localcluster

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed kwok.yaml
var kwokConfig []byte

// CPUAnnotation is the pod annotation whose quantity (e.g. "750m") kwok
// reports as the CPU usage of each of the pod's containers; without it a
// container uses 1m. MemoryAnnotation does the same for memory (default 10Mi).
const (
	CPUAnnotation    = "kwok.x-k8s.io/usage-cpu"
	MemoryAnnotation = "kwok.x-k8s.io/usage-memory"
)

// NodeAnnotation marks the nodes kwok manages (all nodes of a local cluster).
const NodeAnnotation = "kwok.x-k8s.io/node"

// Options configure Start. The zero value is usable.
type Options struct {
	// Nodes is the number of simulated nodes (default 3), named
	// kwok-node-0 ... kwok-node-<Nodes-1>.
	Nodes int
	// NodeCPU, NodeMemory and NodePods are each node's capacity (defaults
	// "32", "256Gi", "110").
	NodeCPU, NodeMemory, NodePods string
	// Dir holds the state (certificates, kubeconfigs, etcd data, logs, the
	// PID file). Empty means a new temporary directory that Stop removes.
	// A Dir left by an earlier run is cleared first, unless its PID file
	// names a process that still runs; any other non-empty Dir is refused.
	Dir string
	// BinDir holds the binaries `make tools` built; empty means DefaultBinDir.
	BinDir string
	// Detach starts the processes in their own sessions so they outlive this
	// program (`make cluster-up`); stop them with StopDir. Otherwise they are
	// killed when this program dies, even without Stop.
	Detach bool
	// HPASyncPeriod is kube-controller-manager's
	// --horizontal-pod-autoscaler-sync-period (default 2s; Kubernetes: 15s).
	HPASyncPeriod time.Duration
	// HPADownscaleStabilization is its
	// --horizontal-pod-autoscaler-downscale-stabilization (default 5m, as in
	// Kubernetes; tests shorten it).
	HPADownscaleStabilization time.Duration
	// WaitForMetrics makes Start also wait until the metrics API reports
	// every node (metrics-server needs one or two scrapes, 10 s each).
	WaitForMetrics bool
	// ExtraArgs adds flags per component: keys "etcd", "kube-apiserver",
	// "kube-controller-manager", "kube-scheduler", "kwok", "metrics-server".
	ExtraArgs map[string][]string
	// Logf receives progress lines (e.g. t.Logf); nil discards them.
	Logf func(format string, args ...any)
}

// Cluster is a running local control plane.
type Cluster struct {
	// Kubeconfig is the path of the admin kubeconfig (certificates embedded).
	Kubeconfig string
	// Dir is the state directory.
	Dir string
	// Server is the API server URL, https://127.0.0.1:<port>.
	Server string
	// Nodes are the simulated nodes' names.
	Nodes []string
	// Bin are the binaries the cluster runs (Bin.Kubectl, Bin.Helm, Bin.Kubeadm
	// are there for tests to use).
	Bin Binaries
	// MetricsServerURL is where metrics-server serves (through the API server
	// it is /apis/metrics.k8s.io/v1beta1).
	MetricsServerURL string

	procs   []*proc
	api     *apiClient
	tempDir bool
	logf    func(string, ...any)
	stop    sync.Once
	stopErr error
}

func (o *Options) defaults() {
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.NodeCPU == "" {
		o.NodeCPU = "32"
	}
	if o.NodeMemory == "" {
		o.NodeMemory = "256Gi"
	}
	if o.NodePods == "" {
		o.NodePods = "110"
	}
	if o.HPASyncPeriod <= 0 {
		o.HPASyncPeriod = 2 * time.Second
	}
	if o.HPADownscaleStabilization <= 0 {
		o.HPADownscaleStabilization = 5 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// ports of one run.
type ports struct {
	etcd, etcdPeer, apiserver, kcm, scheduler, kwok, metrics int
}

// Start starts a control plane and returns once the API server is ready, the
// controller manager and scheduler are healthy, every simulated node is Ready
// and the default ServiceAccount exists (and, with WaitForMetrics, the metrics
// API reports every node). Bound the wait with ctx. On failure nothing started
// is left running and the error ends with the failing component's log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts.defaults()
	bin, err := FindBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Bin: bin, logf: opts.Logf}
	if opts.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "simlab-localcluster-"); err != nil {
			return nil, fmt.Errorf("creating the state directory: %w", err)
		}
		c.tempDir = true
	} else if c.Dir, err = prepareDir(opts.Dir); err != nil {
		return nil, err
	}
	// Ports are picked free but bound only by the components; another
	// program may take one in between. Then the component exits with
	// "address already in use" and Start tries again with new ports.
	for attempt := 1; ; attempt++ {
		err = c.start(ctx, opts)
		if err == nil {
			return c, nil
		}
		stopErr := c.stopProcs()
		if stopErr == nil && attempt < 3 && strings.Contains(err.Error(), "address already in use") && ctx.Err() == nil {
			c.logf("localcluster: port taken, retrying: %v", err)
			c.procs, c.Nodes = nil, nil
			if err := os.RemoveAll(filepath.Join(c.Dir, "etcd")); err != nil {
				return nil, fmt.Errorf("clearing etcd's data for a retry: %w", err)
			}
			continue
		}
		if stopErr != nil {
			err = errors.Join(err, stopErr)
		} else if c.tempDir {
			_ = os.RemoveAll(c.Dir)
		}
		return nil, err
	}
}

// prepareDir makes dir absolute and empty, refusing when its PID file names a
// process that still runs.
func prepareDir(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	if procs, err := readPIDs(dir); err == nil {
		for _, p := range procs {
			if pidRuns(p.PID, p.Bin) {
				return "", fmt.Errorf("a cluster already runs from %s (%s is pid %d); stop it first (make cluster-down)", dir, p.Name, p.PID)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	if len(entries) > 0 {
		// Clear only what a previous run left, never an unrelated directory.
		if _, err := os.Stat(filepath.Join(dir, "pki", "ca.crt")); err != nil {
			return "", fmt.Errorf("state directory %s is not empty and holds no earlier local cluster (no pki/ca.crt); refusing to clear it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("clearing %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	return dir, nil
}

func (c *Cluster) start(ctx context.Context, o Options) error {
	t0 := time.Now()
	pk, err := newPKI()
	if err != nil {
		return err
	}
	files, err := pk.write(c.Dir)
	if err != nil {
		return err
	}
	pl, err := freePorts(7)
	if err != nil {
		return err
	}
	p := ports{pl[0], pl[1], pl[2], pl[3], pl[4], pl[5], pl[6]}
	c.Server = "https://127.0.0.1:" + strconv.Itoa(p.apiserver)
	c.MetricsServerURL = "https://127.0.0.1:" + strconv.Itoa(p.metrics)
	kc := func(name, user string, kp keyPair) (string, error) {
		path := filepath.Join(c.Dir, name)
		if err := os.WriteFile(path, kubeconfig(c.Server, pk.CA.CertPEM, user, kp), 0o600); err != nil {
			return "", fmt.Errorf("writing %s: %w", path, err)
		}
		return path, nil
	}
	var kcfg = map[string]string{}
	for _, k := range []struct {
		file, user string
		kp         keyPair
	}{
		{"kubeconfig", "admin", pk.Admin},
		{"kube-controller-manager.kubeconfig", "kube-controller-manager", pk.ControllerManager},
		{"kube-scheduler.kubeconfig", "kube-scheduler", pk.Scheduler},
		{"kwok.kubeconfig", "kwok", pk.KwokClient},
		{"metrics-server.kubeconfig", "metrics-server", pk.MSClient},
	} {
		if kcfg[k.file], err = kc(k.file, k.user, k.kp); err != nil {
			return err
		}
	}
	c.Kubeconfig = kcfg["kubeconfig"]
	tc, err := tlsClient(pk.CA.CertPEM, pk.Admin)
	if err != nil {
		return err
	}
	c.api = newAPIClient(c.Server, tc)
	kwokPath := filepath.Join(c.Dir, "kwok.yaml")
	if err := os.WriteFile(kwokPath, kwokConfig, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", kwokPath, err)
	}
	extra := func(name string, args []string) []string { return append(args, o.ExtraArgs[name]...) }
	run := func(name, bin string, args []string, env ...string) (*proc, error) {
		pr, err := startProc(c.Dir, name, bin, extra(name, args), env, o.Detach)
		if err != nil {
			return nil, err
		}
		c.procs = append(c.procs, pr)
		if err := writePIDs(c.Dir, c.procs); err != nil {
			return nil, err
		}
		return pr, nil
	}

	// etcd
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(p.etcd)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(p.etcdPeer)
	etcd, err := run("etcd", c.Bin.Etcd, []string{
		"--name=local", "--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=local=" + peerURL, "--initial-cluster-state=new",
		"--unsafe-no-fsync=true", "--log-level=warn", "--quota-backend-bytes=4294967296",
	})
	if err != nil {
		return err
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := waitHTTP(ctx, etcd, "etcd health", func(ctx context.Context) (bool, string, error) {
		return probe(ctx, plain, etcdURL+"/health", `"health":"true"`)
	}); err != nil {
		return err
	}
	c.logf("localcluster: etcd ready after %v", time.Since(t0).Round(time.Millisecond))

	// kube-apiserver
	apiserver, err := run("kube-apiserver", c.Bin.APIServer, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(p.apiserver),
		"--cert-dir=" + filepath.Join(c.Dir, "pki"),
		"--tls-cert-file=" + files["apiserver.crt"], "--tls-private-key-file=" + files["apiserver.key"],
		"--client-ca-file=" + files["ca.crt"],
		"--service-account-key-file=" + files["sa.pub"], "--service-account-signing-key-file=" + files["sa.key"],
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC", "--allow-privileged=true",
		"--requestheader-client-ca-file=" + files["front-proxy-ca.crt"],
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + files["front-proxy-client.crt"], "--proxy-client-key-file=" + files["front-proxy-client.key"],
		"--profiling=false",
	})
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, apiserver, "kube-apiserver /readyz", func(ctx context.Context) (bool, string, error) {
		err := c.api.do(ctx, http.MethodGet, "/readyz", nil, nil)
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}); err != nil {
		return err
	}
	c.logf("localcluster: kube-apiserver ready after %v", time.Since(t0).Round(time.Millisecond))

	// Objects first, so kwok and metrics-server find them on their first list.
	if err := c.createNodes(ctx, o); err != nil {
		return err
	}
	if err := c.registerMetricsAPI(ctx, p.metrics, pk.CA.CertPEM); err != nil {
		return err
	}

	loopbackCert := []string{"--tls-cert-file=" + files["kwok.crt"], "--tls-private-key-file=" + files["kwok.key"]}
	kcm, err := run("kube-controller-manager", c.Bin.ControllerManager, append([]string{
		"--kubeconfig=" + kcfg["kube-controller-manager.kubeconfig"],
		"--authentication-kubeconfig=" + kcfg["kube-controller-manager.kubeconfig"],
		"--authorization-kubeconfig=" + kcfg["kube-controller-manager.kubeconfig"],
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(p.kcm),
		"--leader-elect=false",
		"--service-account-private-key-file=" + files["sa.key"], "--root-ca-file=" + files["ca.crt"],
		"--cluster-signing-cert-file=" + files["ca.crt"], "--cluster-signing-key-file=" + files["ca.key"],
		"--horizontal-pod-autoscaler-sync-period=" + o.HPASyncPeriod.String(),
		"--horizontal-pod-autoscaler-downscale-stabilization=" + o.HPADownscaleStabilization.String(),
	}, loopbackCert...))
	if err != nil {
		return err
	}
	sched, err := run("kube-scheduler", c.Bin.Scheduler, append([]string{
		"--kubeconfig=" + kcfg["kube-scheduler.kubeconfig"],
		"--authentication-kubeconfig=" + kcfg["kube-scheduler.kubeconfig"],
		"--authorization-kubeconfig=" + kcfg["kube-scheduler.kubeconfig"],
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(p.scheduler),
		"--leader-elect=false",
	}, loopbackCert...))
	if err != nil {
		return err
	}
	kwok, err := run("kwok", c.Bin.Kwok, append([]string{
		"--kubeconfig=" + kcfg["kwok.kubeconfig"], "--config=" + kwokPath,
		"--manage-nodes-with-annotation-selector=" + NodeAnnotation + "=fake",
		"--node-ip=127.0.0.1", "--node-port=" + strconv.Itoa(p.kwok),
		"--server-address=127.0.0.1:" + strconv.Itoa(p.kwok),
		"--cidr=10.244.0.0/16", "--node-lease-duration-seconds=40",
	}, loopbackCert...), "HOME="+c.Dir)
	if err != nil {
		return err
	}
	ms, err := run("metrics-server", c.Bin.MetricsServer, []string{
		"--kubeconfig=" + kcfg["metrics-server.kubeconfig"],
		"--authentication-kubeconfig=" + kcfg["metrics-server.kubeconfig"],
		"--authorization-kubeconfig=" + kcfg["metrics-server.kubeconfig"],
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(p.metrics),
		"--tls-cert-file=" + files["metrics-server.crt"], "--tls-private-key-file=" + files["metrics-server.key"],
		"--kubelet-certificate-authority=" + files["ca.crt"],
		"--kubelet-use-node-status-port", "--kubelet-preferred-address-types=InternalIP",
		"--metric-resolution=10s", "--kubelet-request-timeout=5s",
	})
	if err != nil {
		return err
	}

	watched := []*proc{etcd, apiserver, kcm, sched, kwok, ms}
	for _, w := range []struct {
		what string
		port int
	}{{"kube-controller-manager /healthz", p.kcm}, {"kube-scheduler /healthz", p.scheduler}} {
		url := "https://127.0.0.1:" + strconv.Itoa(w.port) + "/healthz"
		if err := waitAll(ctx, watched, w.what, func(ctx context.Context) (bool, string, error) {
			return probe(ctx, c.api.hc, url, "ok")
		}); err != nil {
			return err
		}
	}
	if err := waitAll(ctx, watched, fmt.Sprintf("%d nodes Ready", o.Nodes), c.nodesReady); err != nil {
		return err
	}
	if err := waitAll(ctx, watched, "the default ServiceAccount", func(ctx context.Context) (bool, string, error) {
		err := c.api.do(ctx, http.MethodGet, "/api/v1/namespaces/default/serviceaccounts/default", nil, nil)
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}); err != nil {
		return err
	}
	c.logf("localcluster: %d nodes Ready after %v", o.Nodes, time.Since(t0).Round(time.Millisecond))
	if o.WaitForMetrics {
		if err := waitAll(ctx, watched, "node metrics", c.nodeMetricsReady); err != nil {
			return err
		}
		c.logf("localcluster: metrics API ready after %v", time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

// waitHTTP polls cond while watching one process.
func waitHTTP(ctx context.Context, p *proc, what string, cond func(context.Context) (bool, string, error)) error {
	return waitAll(ctx, []*proc{p}, what, cond)
}

// waitAll polls cond until it holds, failing at once (with the log) if any of
// procs exits.
func waitAll(ctx context.Context, procs []*proc, what string, cond func(context.Context) (bool, string, error)) error {
	return Poll(ctx, 100*time.Millisecond, what, func(ctx context.Context) (bool, string, error) {
		for _, p := range procs {
			if gone, err := p.hasExited(); gone {
				return false, "", p.failure(err)
			}
		}
		return cond(ctx)
	})
}

// probe GETs url and reports whether the answer is 200 and contains want.
func probe(ctx context.Context, hc *http.Client, url, want string) (bool, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err.Error(), nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return false, err.Error(), nil
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return false, fmt.Sprintf("%s: HTTP %d %s", url, resp.StatusCode, strings.TrimSpace(string(body))), nil
	}
	return true, "", nil
}

// createNodes registers the simulated nodes; kwok then makes them Ready.
func (c *Cluster) createNodes(ctx context.Context, o Options) error {
	for i := range o.Nodes {
		name := "kwok-node-" + strconv.Itoa(i)
		res := map[string]string{"cpu": o.NodeCPU, "memory": o.NodeMemory, "pods": o.NodePods}
		node := map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{
				"name": name,
				"annotations": map[string]string{
					NodeAnnotation:                         "fake",
					"node.alpha.kubernetes.io/ttl":         "0",
					"metrics.k8s.io/resource-metrics-path": "/metrics/nodes/" + name + "/metrics/resource",
				},
				"labels": map[string]string{
					"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
					"type": "kwok",
				},
			},
			"status": map[string]any{"capacity": res, "allocatable": res},
		}
		if err := c.api.create(ctx, "/api/v1/nodes", node); err != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
		c.Nodes = append(c.Nodes, name)
	}
	return nil
}

// registerMetricsAPI points the aggregated metrics.k8s.io API at the local
// metrics-server: an ExternalName Service resolving to 127.0.0.1 and an
// APIService that verifies metrics-server's certificate with the cluster CA.
func (c *Cluster) registerMetricsAPI(ctx context.Context, port int, ca []byte) error {
	svc := map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "metrics-server", "namespace": "kube-system",
			"labels": map[string]string{"k8s-app": "metrics-server"}},
		"spec": map[string]any{"type": "ExternalName", "externalName": "127.0.0.1",
			"ports": []map[string]any{{"name": "https", "port": port, "protocol": "TCP"}}},
	}
	if err := c.api.create(ctx, "/api/v1/namespaces/kube-system/services", svc); err != nil {
		return fmt.Errorf("registering the metrics API: %w", err)
	}
	apisvc := map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1beta1.metrics.k8s.io"},
		"spec": map[string]any{
			"group": "metrics.k8s.io", "version": "v1beta1",
			"service":              map[string]any{"name": "metrics-server", "namespace": "kube-system", "port": port},
			"caBundle":             ca,
			"groupPriorityMinimum": 100, "versionPriority": 100,
		},
	}
	if err := c.api.create(ctx, "/apis/apiregistration.k8s.io/v1/apiservices", apisvc); err != nil {
		return fmt.Errorf("registering the metrics API: %w", err)
	}
	return nil
}

// nodesReady reports whether every simulated node has condition Ready=True.
func (c *Cluster) nodesReady(ctx context.Context) (bool, string, error) {
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := c.api.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &list); err != nil {
		return false, err.Error(), nil
	}
	ready := map[string]bool{}
	for _, n := range list.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == "True" {
				ready[n.Metadata.Name] = true
			}
		}
	}
	var notReady []string
	for _, n := range c.Nodes {
		if !ready[n] {
			notReady = append(notReady, n)
		}
	}
	if len(notReady) > 0 {
		return false, "not Ready: " + strings.Join(notReady, ", "), nil
	}
	return true, "", nil
}

// nodeMetricsReady reports whether the metrics API has a sample for every node.
func (c *Cluster) nodeMetricsReady(ctx context.Context) (bool, string, error) {
	var list struct {
		Items []struct{ Metadata struct{ Name string } }
	}
	if err := c.api.do(ctx, http.MethodGet, "/apis/metrics.k8s.io/v1beta1/nodes", nil, &list); err != nil {
		return false, err.Error(), nil
	}
	if len(list.Items) < len(c.Nodes) {
		return false, fmt.Sprintf("metrics for %d of %d nodes", len(list.Items), len(c.Nodes)), nil
	}
	return true, "", nil
}

// Get GETs an API path (e.g. "/api/v1/nodes") as the admin and decodes the
// JSON answer into out (nil: discard). A non-2xx answer is an *APIError.
func (c *Cluster) Get(ctx context.Context, path string, out any) error {
	return c.api.do(ctx, http.MethodGet, path, nil, out)
}

// Do sends a request with a JSON body (any value, or raw []byte) as the admin.
func (c *Cluster) Do(ctx context.Context, method, path string, body, out any) error {
	return c.api.do(ctx, method, path, body, out)
}

// PodCPU returns the CPU usage the metrics API reports for a pod, summed over
// its containers, in millicores.
func (c *Cluster) PodCPU(ctx context.Context, namespace, pod string) (int64, error) {
	var pm struct {
		Containers []struct {
			Usage map[string]string
		}
	}
	if err := c.Get(ctx, "/apis/metrics.k8s.io/v1beta1/namespaces/"+namespace+"/pods/"+pod, &pm); err != nil {
		return 0, fmt.Errorf("pod metrics of %s/%s: %w", namespace, pod, err)
	}
	var total int64
	for _, ct := range pm.Containers {
		m, err := MilliCPU(ct.Usage["cpu"])
		if err != nil {
			return 0, fmt.Errorf("pod metrics of %s/%s: %w", namespace, pod, err)
		}
		total += m
	}
	return total, nil
}

// MilliCPU parses a CPU quantity as the metrics API prints it ("250m",
// "1", "1500000n", "12u") into millicores, rounding down.
func MilliCPU(q string) (int64, error) {
	units := []struct {
		suffix string
		div    float64
	}{{"n", 1e6}, {"u", 1e3}, {"m", 1}, {"", 1e-3}}
	for _, u := range units {
		if u.suffix != "" && !strings.HasSuffix(q, u.suffix) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(q, u.suffix), 64)
		if err != nil {
			return 0, fmt.Errorf("CPU quantity %q: %w", q, err)
		}
		return int64(v / u.div), nil
	}
	return 0, fmt.Errorf("CPU quantity %q: unknown unit", q)
}

// Stop stops every process the cluster started (SIGTERM, then SIGKILL after
// a grace period), exactly those PIDs, in reverse start order, and removes
// Dir if Start created it. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stop.Do(func() {
		c.stopErr = c.stopProcs()
		if c.stopErr == nil && c.tempDir {
			if err := os.RemoveAll(c.Dir); err != nil {
				c.stopErr = fmt.Errorf("removing %s: %w", c.Dir, err)
			}
		}
	})
	return c.stopErr
}

// stopProcs stops the started processes in reverse order and, if all are
// gone, removes the PID file.
func (c *Cluster) stopProcs() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		if err := c.procs[i].stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(filepath.Join(c.Dir, PIDFile))
	}
	return errors.Join(errs...)
}

// StopDir stops the processes recorded in dir's PID file by a detached Start
// (`make cluster-down`): only PIDs that still run the recorded binary are
// signalled. It returns the names of the processes it stopped.
func StopDir(dir string) ([]string, error) {
	procs, err := readPIDs(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var stopped []string
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if !pidRuns(p.PID, p.Bin) {
			continue
		}
		if err := p.stop(10 * time.Second); err != nil {
			errs = append(errs, err)
			continue
		}
		stopped = append(stopped, fmt.Sprintf("%s (pid %d)", p.Name, p.PID))
	}
	if len(errs) > 0 {
		return stopped, errors.Join(errs...)
	}
	if err := os.Remove(filepath.Join(dir, PIDFile)); err != nil {
		return stopped, fmt.Errorf("removing the PID file: %w", err)
	}
	return stopped, nil
}

// Info is what a detached cluster records in Dir/cluster.json for other
// programs (kubeconfig path, server URL, node names).
type Info struct {
	Kubeconfig string   `json:"kubeconfig"`
	Server     string   `json:"server"`
	Nodes      []string `json:"nodes"`
}

// WriteInfo records c's Info in c.Dir/cluster.json.
func (c *Cluster) WriteInfo() error {
	data, err := json.MarshalIndent(Info{Kubeconfig: c.Kubeconfig, Server: c.Server, Nodes: c.Nodes}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(c.Dir, "cluster.json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
