//go:build rehearse

// Package rehearse is `make rehearse` (docs/REHEARSAL.md): the stack's nodes
// and cluster for real on this machine. Each node is a runc container with
// its own systemd, containerd, kubelet and sshd (node.sh), provisioned by the
// real Ignition with the config `simlab artifacts serve` renders for it;
// then the program's own commands — taken from the mock engine's record, in
// an order the engine could run them, each command's real output fed to the
// commands after it — run on those nodes over SSH: kubeadm init, the join
// token, join, kubelet serving-certificate approval; and on destroy the
// drain and reset scripts. run.sh sets the environment.
package rehearse

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"golang.org/x/crypto/ssh"

	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/tests/localcluster"
	"github.com/simlab/simlab/tests/standin"
)

// env is what run.sh prepared.
type env struct {
	work, base, bin, simlab, ignition, pause, bridge, gateway string
	flanneld, flannelCNI, busybox, coredns                    string
	prefix                                                    int
	kube                                                      string // the Kubernetes version
}

func loadEnv(t *testing.T) *env {
	t.Helper()
	get := func(k string) string {
		v := os.Getenv(k)
		if v == "" {
			t.Fatalf("%s is not set: run the rehearsal with `make rehearse` (tests/rehearse/run.sh)", k)
		}
		return v
	}
	e := &env{work: get("REHEARSE_WORK"), base: get("REHEARSE_BASE"), bin: get("REHEARSE_BIN"),
		simlab: get("REHEARSE_SIMLAB"), ignition: get("REHEARSE_IGNITION"), pause: get("REHEARSE_PAUSE"),
		bridge: get("REHEARSE_BRIDGE"), gateway: get("REHEARSE_GATEWAY"),
		flanneld: get("REHEARSE_FLANNELD"), flannelCNI: get("REHEARSE_FLANNEL_CNI"), busybox: get("REHEARSE_BUSYBOX"), coredns: get("REHEARSE_COREDNS")}
	var err error
	if e.prefix, err = strconv.Atoi(get("REHEARSE_PREFIX")); err != nil {
		t.Fatalf("REHEARSE_PREFIX: %v", err)
	}
	return e
}

func (e *env) kubeBin(name string) string { return filepath.Join(e.bin, name+"-"+e.kube) }
func (e *env) etcdBin() string {
	m, _ := filepath.Glob(filepath.Join(e.bin, "etcd-v*"))
	if len(m) == 0 {
		return filepath.Join(e.bin, "etcd-missing")
	}
	return m[len(m)-1]
}

// The rehearsal lab: one controller and one worker on the bridge.
const (
	clusterName = "rh"
	serverPort  = "8080"
)

var machines = []struct{ name, role, mac, ip string }{
	{"rh-controller-1", config.RoleController, "52:54:00:21:40:10", "10.214.0.10"},
	{"rh-worker-1", config.RoleWorker, "52:54:00:21:40:21", "10.214.0.21"},
}

// stackFile is the rehearsal's stack: the metal provider (machines by MAC
// and IP, booted from the artifact server), Ceph and Kafka off.
func stackFile(e *env, pub, mirror string) string {
	var ms strings.Builder
	for _, m := range machines {
		fmt.Fprintf(&ms, "      - {name: %s, role: %s, mac: %q, ip: %s}\n", m.name, m.role, m.mac, m.ip)
	}
	return fmt.Sprintf(`# The rehearsal's stack (tests/rehearse): real nodes on this machine.
config:
  simlab:cluster:
    name: %s
  simlab:provider: metal
  simlab:metal:
    installDisk: /dev/vda
    gateway: %s
    prefixLength: %d
    nameservers: [%s]
    machines:
%s  simlab:ssh:
    user: core
    authorizedKeys:
      - %q
    privateKeyPath: %s
  simlab:artifacts:
    url: http://%s:%s
    dir: %s
%s`, clusterName, e.gateway, e.prefix, e.gateway, ms.String(), pub, filepath.Join(e.work, "id_ed25519"), e.gateway, serverPort, mirror,
		simulatorStackConfig(true))
}

// writeKey makes the stack's SSH key pair.
func writeKey(t *testing.T, dir string) (priv []byte, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, "simlab rehearsal")
	if err != nil {
		t.Fatal(err)
	}
	priv = pem.EncodeToMemory(block)
	spk, err := ssh.NewPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	return priv, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk))) + " simlab-rehearsal"
}

// timings are the steps' durations, printed for docs/BENCHMARKS.md.
type timings struct {
	t     *testing.T
	start time.Time
	lines []string
}

func (tm *timings) mark(step string, since time.Time) {
	line := fmt.Sprintf("%-40s %7.1f s (at %6.1f s)", step, time.Since(since).Seconds(), time.Since(tm.start).Seconds())
	tm.lines = append(tm.lines, line)
	tm.t.Log("timing: " + line)
}

func TestRehearsal(t *testing.T) {
	e := loadEnv(t)
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tm := &timings{t: t, start: time.Now()}
	ctx := context.Background()
	stacks, mirror := filepath.Join(e.work, "stacks"), filepath.Join(e.work, "mirror")
	for _, d := range []string{stacks, mirror} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	priv, pub := writeKey(t, e.work)
	stackPath := filepath.Join(stacks, "Pulumi.rehearsal.yaml")
	if err := os.WriteFile(stackPath, []byte(stackFile(e, pub, mirror)), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := config.LoadStackFile(stackPath)
	if err != nil {
		t.Fatalf("the rehearsal stack: %v", err)
	}
	l.SSHPrivateKey = string(priv)
	if err := l.Config.Validate(); err != nil {
		t.Fatalf("the rehearsal stack is invalid: %v", err)
	}
	e.kube = l.Versions.Kubernetes

	// The mirror: images built here, copied by the mirror's own image step;
	// the node binaries built here; stand-ins for the deploy artifacts.
	t0 := time.Now()
	kubeadmRefs, err := artifacts.KubeadmImages(ctx, e.kubeBin("kubeadm"), e.kube)
	if err != nil {
		t.Fatal(err)
	}
	imgs, standins, err := kubeadmImages(e, kubeadmRefs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range standins {
		t.Logf("stand-in image: %s", s)
	}
	fl, err := flannelImages(e, l.Versions.FlannelImage(), l.Versions.FlannelCNIImage())
	if err != nil {
		t.Fatal(err)
	}
	for ref, img := range fl {
		imgs[ref] = img
	}
	msRef := metricsServerRef(l.Versions.MetricsServer)
	if imgs[msRef], err = metricsServerImage(e); err != nil {
		t.Fatalf("building %s: %v", msRef, err)
	}
	mv := artifacts.VersionsFor(l.Versions)
	mirrored := mirrorImages(ctx, t, mirror, mv, imgs)
	m, err := standin.Mirror(root, mirror, l.Versions)
	if err != nil {
		t.Fatal(err)
	}
	// metrics-server's manifest, written here (metrics_test.go), replaces
	// standin.Mirror's placeholder: the real metrics-server runs from it.
	if err := standin.Put(mirror, m, artifacts.ManifestMetricsServer, []byte(metricsServerManifest(msRef)),
		"written by tests/rehearse (metrics_test.go): a stand-in for the release's components.yaml"); err != nil {
		t.Fatal(err)
	}
	simImage := buildSimulatorImage(ctx, t, root, mirror, l)
	m.Images = mirrored
	putNodeArtifacts(t, e, mirror, m)
	if err := m.Write(mirror); err != nil {
		t.Fatal(err)
	}
	tm.mark("mirror written", t0)

	// The artifact server, as a lab runs it: the CLI, this stack.
	serverURL := "http://" + e.gateway + ":" + serverPort
	serverLog := &syncBuffer{}
	srv := exec.Command(e.simlab, "artifacts", "serve", "--dir", mirror, "--stack", "rehearsal",
		"--stacks-dir", stacks, "--listen", e.gateway+":"+serverPort)
	srv.Stdout, srv.Stderr = serverLog, serverLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	waitHTTP(t, serverURL+"/manifest.json", serverLog)

	// The nodes: Ignition from the server, then systemd.
	for _, mc := range machines {
		mc := mc
		t0 := time.Now()
		t.Cleanup(func() { nodeSh(t, e, serverURL, "down", mc.name) })
		if out, err := nodeSh(t, e, serverURL, "up", mc.name, mc.ip, mc.mac); err != nil {
			t.Fatalf("booting %s: %v\n%s\nartifact server:\n%s", mc.name, err, out, serverLog.String())
		}
		tm.mark("node "+mc.name+" provisioned and booted", t0)
	}

	// The program's commands on them.
	run := newRunner(t, l, priv)
	t0 = time.Now()
	run.createAll(tm)
	tm.mark("all creates", t0)

	ctrl := run.ssh(machines[0].ip)
	k := "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf "

	// A rehearsal difference (docs/REHEARSAL.md): nf_conntrack_max is
	// writable only from the machine's first network namespace, which a node
	// container is not in; kube-proxy leaves it alone with maxPerCore 0
	// (as kind's nodes do). A lab's kube-proxy keeps kubeadm's default.
	mustSSH(t, ctrl, k+`-n kube-system get cm kube-proxy -o yaml | sed 's/maxPerCore: null/maxPerCore: 0/' | `+
		k+`apply -f - >/dev/null && `+k+`-n kube-system rollout restart ds/kube-proxy >/dev/null && `+
		k+`-n kube-system rollout status ds/kube-proxy --timeout=120s`)

	// The cluster layer's own objects (Flannel), applied server-side as the
	// Kubernetes provider does (here by kubectl on the controller: the
	// provider is not run against these nodes); then every node Ready.
	t0 = time.Now()
	objs := run.clusterObjects()
	if len(objs) < 5 {
		t.Fatalf("the cluster layer declares only %d Kubernetes objects", len(objs))
	}
	list, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sshIn(ctrl, k+"apply --server-side --field-manager simlab-rehearsal -f -", list); err != nil {
		t.Fatalf("applying the cluster layer's objects: %v\n%s", err, out)
	}
	mustSSH(t, ctrl, k+"-n kube-flannel rollout status ds/kube-flannel-ds --timeout=180s")
	mustSSH(t, ctrl, k+"wait --for=condition=Ready node --all --timeout=180s")
	tm.mark("flannel rolled out, nodes Ready", t0)
	rehearseMetricsServer(t, run, ctrl, k, tm)
	rehearseUpgradeDryRun(t, run, tm)
	nodesOut := mustSSH(t, ctrl, k+"get nodes -o custom-columns=NAME:.metadata.name --no-headers")
	for _, mc := range machines {
		if !strings.Contains(nodesOut, mc.name) {
			t.Errorf("node %s is not in the cluster: kubectl get nodes says\n%s", mc.name, nodesOut)
		}
	}
	pods := mustSSH(t, ctrl, k+"get pods -n kube-system --no-headers -o custom-columns=NAME:.metadata.name,PHASE:.status.phase")
	t.Logf("kube-system pods:\n%s", pods)
	for _, p := range []string{"kube-apiserver-", "kube-controller-manager-", "kube-scheduler-", "etcd-"} {
		if !podRunning(pods, p+machines[0].name) {
			t.Errorf("static pod %s%s is not Running", p, machines[0].name)
		}
	}
	// Every file a node's Ignition names came from the artifact server.
	for _, name := range artifacts.NodeArtifacts {
		if p := m.Artifacts[name].Path; !strings.Contains(serverLog.String(), "GET /"+p+" 200") {
			t.Errorf("the artifact server never served %s (%s); its log:\n%s", name, p, serverLog.String())
		}
	}
	// Every image a node pulled came from the artifact server's registry.
	for _, img := range []string{"kube-apiserver", "pause"} {
		if !strings.Contains(serverLog.String(), "/v2/"+img+"/") {
			t.Errorf("the artifact server never served image %s; its log:\n%s", img, serverLog.String())
		}
	}

	// The pod network and Services for real: CoreDNS (built here) answers,
	// through kube-proxy's Service rules and Flannel's vxlan, a pod on the
	// worker (busybox from the CNI plugin image, which the nodes have). The
	// pod asks until the worker's kube-proxy has the Service's endpoints.
	t0 = time.Now()
	mustSSH(t, ctrl, k+"-n kube-system rollout status deploy/coredns --timeout=180s")
	dns := fmt.Sprintf(`%[1]s run dns-check --image=%[2]s --restart=Never --overrides='{"spec":{"nodeName":"%[3]s"}}' --command -- /bin/busybox sh -c 'for i in $(seq 60); do busybox nslookup kubernetes.default.svc.cluster.local && exit 0; sleep 1; done; exit 1' >/dev/null
%[1]s wait --for=jsonpath='{.status.phase}'=Succeeded pod/dns-check --timeout=120s >/dev/null || { %[1]s describe pod dns-check; %[1]s logs dns-check; exit 1; }
%[1]s logs dns-check; %[1]s delete pod dns-check --wait=false >/dev/null`, strings.TrimSpace(k), l.Versions.FlannelCNIImage(), machines[1].name)
	if out := mustSSH(t, ctrl, dns); !strings.Contains(out, "10.96.0.1") {
		t.Errorf("a pod on %s did not resolve kubernetes.default through CoreDNS:\n%s", machines[1].name, out)
	}
	tm.mark("CoreDNS answered a pod on the worker", t0)

	// The simulator in real pods: chart, stand-ins, a campaign to the sink.
	rehearseWorkloads(t, e, root, run, ctrl, simImage, tm)

	// Day 2: the worker leaves (its admit's delete drains and deletes the
	// Node, its join's delete resets it), then comes back (join, approval).
	w := machines[1]
	t0 = time.Now()
	run.deleteWhere(func(c pulumimock.Command) bool { return strings.HasPrefix(c.Name, w.name+"-") })
	if out := mustSSH(t, ctrl, k+"get nodes --no-headers -o custom-columns=NAME:.metadata.name"); strings.Contains(out, w.name) {
		t.Errorf("%s is still a Node after its delete scripts:\n%s", w.name, out)
	}
	if out := mustSSH(t, run.ssh(w.ip), "sudo ls /etc/kubernetes/kubelet.conf 2>/dev/null; true"); strings.TrimSpace(out) != "" {
		t.Errorf("%s was not reset: %s", w.name, out)
	}
	tm.mark("worker removed (drain, delete, reset)", t0)
	// A lab adds a machine back minutes later, when the pod garbage collector
	// has removed the old Node's pods (its DaemonSet pods stay through the
	// drain). Joined again while they are still bound to its name, the node
	// would keep the old Flannel pod, whose init containers wrote the CNI
	// config the reset removed, and stay NotReady.
	t0 = time.Now()
	mustSSH(t, ctrl, fmt.Sprintf(`for i in $(seq 1 120); do
  [ -z "$(%[1]s get pods -A --field-selector spec.nodeName=%[2]s -o name)" ] && exit 0
  sleep 1
done
echo "the pods of Node %[2]s were not collected within 120 s" >&2; exit 1`, strings.TrimSpace(k), w.name))
	tm.mark("old Node's pods collected", t0)
	t0 = time.Now()
	run.createAll(tm)
	mustSSH(t, ctrl, k+"wait --for=condition=Ready node/"+w.name+" --timeout=180s")
	tm.mark("worker joined again and Ready", t0)

	// Destroy: the delete scripts in reverse order; nodes left clean.
	t0 = time.Now()
	run.deleteAll()
	tm.mark("all deletes", t0)
	for _, mc := range machines {
		c := run.ssh(mc.ip)
		if out := mustSSH(t, c, "sudo ls -A /etc/kubernetes/manifests 2>/dev/null; sudo ls /etc/kubernetes/*.conf 2>/dev/null; true"); strings.TrimSpace(out) != "" {
			t.Errorf("%s: kubeadm reset left %q", mc.name, out)
		}
	}
	t.Logf("timings (docs/BENCHMARKS.md):\n%s", strings.Join(tm.lines, "\n"))
}

// syncBuffer is a bytes.Buffer a process writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// podRunning says whether the NAME PHASE listing shows pod name Running.
func podRunning(pods, name string) bool {
	for _, line := range strings.Split(pods, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name && f[1] == "Running" {
			return true
		}
	}
	return false
}

// waitHTTP polls url until it answers 200 (the server is a separate process).
func waitHTTP(t *testing.T, url string, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within 30 s (%v); server log:\n%s", url, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeSh runs node.sh with the rehearsal's environment.
func nodeSh(t *testing.T, e *env, serverURL string, args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{"node.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "WORK="+e.work, "BASE="+e.base, "IGNITION="+e.ignition,
		"ARTIFACTS_URL="+serverURL, "BRIDGE="+e.bridge, "GATEWAY="+e.gateway, "PREFIX="+strconv.Itoa(e.prefix))
	out, err := cmd.CombinedOutput()
	if len(out) > 0 {
		t.Logf("node.sh %s:\n%s", strings.Join(args, " "), out)
	}
	return string(out), err
}

// runner runs the program's commands as pulumi-command would, feeding each
// one's real stdout to the program before the next is taken: the program
// runs again under the mock engine with the outputs so far, so inputs
// computed from outputs (the CA hash in the join config) are the real ones.
type runner struct {
	t       *testing.T
	l       *config.Loaded
	signer  ssh.Signer
	stdout  map[string]string
	done    []pulumimock.Command
	last    *pulumimock.Recorder
	clients map[string]*ssh.Client
}

func newRunner(t *testing.T, l *config.Loaded, priv []byte) *runner {
	s, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, l: l, signer: s, stdout: map[string]string{}, clients: map[string]*ssh.Client{}}
	t.Cleanup(func() {
		for _, c := range r.clients {
			c.Close()
		}
	})
	return r
}

// commands runs the program under the mock engine with the outputs so far.
func (r *runner) commands() []pulumimock.Command {
	r.t.Helper()
	rec, err := pulumimock.Run("simlab", "rehearsal", func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, r.l)
		return err
	}, pulumimock.WithState(func(args pulumi.MockResourceArgs) resource.PropertyMap {
		out := pulumimock.CommandOutputs(args)
		if s, ok := r.stdout[args.Name]; ok {
			if out == nil {
				out = resource.PropertyMap{}
			}
			out["stdout"] = resource.NewStringProperty(s)
		}
		return out
	}))
	if err != nil {
		r.t.Fatalf("the program under the mock engine: %v", err)
	}
	r.last = rec
	return rec.Commands()
}

// clusterObjects are the Kubernetes objects the cluster layer declares
// itself (Flannel's), as the program last recorded them: the inputs the
// Kubernetes provider would apply, namespaces first.
func (r *runner) clusterObjects() []map[string]any {
	r.t.Helper()
	var comp string
	for _, res := range r.last.Resources() {
		if res.Type == "simlab:cluster:Cluster" {
			comp = res.URN
		}
	}
	var nss, rest []map[string]any
	for _, res := range r.last.Resources() {
		if !res.Custom || res.Parent != comp || !strings.HasPrefix(res.Type, "kubernetes:") ||
			strings.HasPrefix(res.Type, "kubernetes:yaml") {
			continue
		}
		obj := res.Inputs.Mappable()
		if obj["apiVersion"] == nil || obj["kind"] == nil {
			r.t.Fatalf("%s %s: the recorded inputs have no apiVersion/kind", res.Type, res.Name)
		}
		if obj["kind"] == "Namespace" {
			nss = append(nss, obj)
		} else {
			rest = append(rest, obj)
		}
	}
	return append(nss, rest...)
}

// createAll creates every command of the nodes and cluster layers, one at a
// time, in the program's order.
func (r *runner) createAll(tm *timings) {
	r.t.Helper()
	for {
		var next *pulumimock.Command
		for _, c := range r.commands() {
			if _, done := r.stdout[c.Name]; !done && r.ours(c) {
				c := c
				next = &c
				break
			}
		}
		if next == nil {
			return
		}
		t0 := time.Now()
		out, err := r.exec(*next, next.Create)
		if err != nil {
			r.t.Fatalf("create %s: %v\n%s", next.Name, err, out)
		}
		if last := tail(out, 600); last != "" && !strings.Contains(next.Name, "kubeconfig") {
			r.t.Logf("%s printed: %s", next.Name, last)
		}
		r.stdout[next.Name] = out
		r.done = append(r.done, *next)
		tm.mark("create "+next.Name, t0)
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// ours: the commands that reach the rehearsal's nodes (SSH) or check the
// artifact server (the metal provider's local check).
func (r *runner) ours(c pulumimock.Command) bool {
	if c.Remote {
		for _, m := range machines {
			if c.Host == m.ip {
				return true
			}
		}
		return false
	}
	return strings.HasPrefix(c.Name, clusterName+"-") && (strings.HasSuffix(c.Name, "-pxe") || strings.HasSuffix(c.Name, "-guard"))
}

// deleteAll runs the delete scripts in reverse creation order.
func (r *runner) deleteAll() { r.deleteWhere(func(pulumimock.Command) bool { return true }) }

// deleteWhere deletes the created commands match selects, in reverse
// creation order, as the engine does for resources leaving the program; a
// later createAll creates them again.
func (r *runner) deleteWhere(match func(pulumimock.Command) bool) {
	var kept []pulumimock.Command
	for i := len(r.done) - 1; i >= 0; i-- {
		c := r.done[i]
		if !match(c) {
			kept = append([]pulumimock.Command{c}, kept...)
			continue
		}
		delete(r.stdout, c.Name)
		if c.Delete == "" {
			continue
		}
		if out, err := r.exec(c, c.Delete); err != nil {
			r.t.Errorf("delete %s: %v\n%s", c.Name, err, out)
		}
	}
	r.done = kept
}

func (r *runner) ssh(host string) *ssh.Client {
	r.t.Helper()
	if c, ok := r.clients[host]; ok {
		return c
	}
	cfg := &ssh.ClientConfig{User: r.l.SSH.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(r.signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	var c *ssh.Client
	var err error
	// sshd starts with the node's systemd: retry while it comes up, as
	// pulumi-command's dialErrorLimit does.
	for i := 0; i < 100; i++ {
		if c, err = ssh.Dial("tcp", host+":22", cfg); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("ssh %s: %v", host, err)
	}
	r.clients[host] = c
	return c
}

// exec runs one script as pulumi-command's providers do: remote on one SSH
// session with stdin piped and the environment set; local with sh -c.
func (r *runner) exec(c pulumimock.Command, script string) (string, error) {
	if !c.Remote {
		cmd := exec.Command("sh", "-c", script)
		cmd.Stdin = strings.NewReader(c.Stdin)
		cmd.Env = os.Environ()
		for k, v := range c.Environment {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
		}
		return string(out), nil
	}
	s, err := r.ssh(c.Host).NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	for k, v := range c.Environment {
		if err := s.Setenv(k, v); err != nil {
			return "", fmt.Errorf("setenv %s: %w", k, err)
		}
	}
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if c.Stdin != "" {
		s.Stdin = strings.NewReader(c.Stdin)
	}
	if err := s.Run(script); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// sshIn runs script with stdin on c.
func sshIn(c *ssh.Client, script string, stdin []byte) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	s.Stdin = bytes.NewReader(stdin)
	out, err := s.CombinedOutput(script)
	return string(out), err
}

func mustSSH(t *testing.T, c *ssh.Client, script string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}
