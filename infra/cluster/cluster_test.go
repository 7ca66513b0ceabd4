package cluster_test

import (
	"encoding/base64"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/cluster"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/nodes"
	"github.com/simlab/simlab/infra/pulumimock"
)

const fakePrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nTESTONLY-ssh-key-0123456789\n-----END OPENSSH PRIVATE KEY-----\n"

const typRemote = "command:remote:Command"

// The token the cluster derives from the key, and the CA hash of the
// kubeconfig the mocked controller hands out.
var (
	fakeToken      = cluster.DeriveToken(fakePrivateKey, "dev")
	fakeKubeconfig string
	fakeCAHash     string
)

func init() {
	var ca []byte
	fakeKubeconfig, ca = pulumimock.Kubeconfig()
	var err error
	if fakeCAHash, err = cluster.CACertHash(ca); err != nil {
		panic(err)
	}
}

func stackConfig(workers int) *config.Config {
	c := config.Default()
	c.Cluster.Name = "dev"
	c.Workers.Count = workers
	c.Libvirt = &config.Libvirt{Host: "hv.example", Port: 22, User: "root", URI: "qemu:///system",
		Network: "default", ImageDir: "/var/lib/libvirt/images/simlab-dev", PrefixLength: 24}
	c.Artifacts.URL = "http://192.168.122.1:8080"
	return &c
}

// testMetricsServerManifest is where infra would find metrics-server's
// manifest in the mirror (mocks read no file).
const testMetricsServerManifest = "/mirror/manifests/metrics-server.yaml"

// manifest is the ignition package's test manifest (hashes of the pinned
// artifacts); the nodes layer renders real Ignition with it.
func manifest(t *testing.T) *artifacts.Manifest {
	t.Helper()
	m, err := artifacts.LoadManifest(filepath.Join("..", "..", "ignition", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// deploy runs the nodes and cluster layers for c under the mock monitor; a
// sink resource takes the cluster's exported outputs as inputs, so the
// record shows whether they arrive as secrets.
func deploy(t *testing.T, c *config.Config) *pulumimock.Recorder {
	t.Helper()
	m, err := deployE(manifest(t), c)
	if err != nil {
		t.Fatalf("program failed under mocks: %v", err)
	}
	return m
}

func deployE(man *artifacts.Manifest, c *config.Config) (*pulumimock.Recorder, error) {
	return pulumimock.Run("simlab", "test", func(ctx *pulumi.Context) error {
		key := pulumi.ToSecret(pulumi.String(fakePrivateKey)).(pulumi.StringOutput)
		ns, err := nodes.New(ctx, "nodes", &nodes.Args{
			Cluster: c.Cluster, Provider: c.Provider, Nodes: c.Nodes(), Controllers: c.Controllers, Workers: c.Workers,
			Libvirt: c.Libvirt, Metal: c.Metal, SSH: c.SSH, SSHPrivateKey: key, Artifacts: c.Artifacts,
			Versions: c.Versions, Manifest: man,
		})
		if err != nil {
			return err
		}
		cl, err := cluster.New(ctx, "cluster", &cluster.Args{Cluster: c.Cluster, Nodes: ns.Nodes,
			SSHPrivateKey: key, Versions: c.Versions, MetricsServerManifest: testMetricsServerManifest},
			pulumi.DependsOn([]pulumi.Resource{ns}))
		if err != nil {
			return err
		}
		var sink pulumi.CustomResourceState
		return ctx.RegisterResource("test:index:Sink", "sink", pulumi.Map{
			"kubeconfig": cl.Kubeconfig, "controllerConnection": ns.Nodes[0].Connection,
		}, &sink)
	}, pulumimock.WithState(pulumimock.CommandOutputs))
}

func TestMockOneInitAndAJoinPerWorker(t *testing.T) {
	for _, workers := range []int{2, 50} {
		t.Run(fmt.Sprintf("1+%d", workers), func(t *testing.T) {
			m := deploy(t, stackConfig(workers))
			inits := m.Select(typRemote, "-kubeadm-init")
			if len(inits) != 1 || inits[0].Name != "dev-controller-1-kubeadm-init" {
				t.Fatalf("want one kubeadm init on dev-controller-1, got %v", names(inits))
			}
			joins := m.Select(typRemote, "-kubeadm-join")
			if len(joins) != workers {
				t.Fatalf("want %d joins, got %d", workers, len(joins))
			}
			for i := 1; i <= workers; i++ {
				j, ok := m.Find(typRemote, fmt.Sprintf("dev-worker-%d-kubeadm-join", i))
				if !ok {
					t.Fatalf("no join for dev-worker-%d", i)
				}
				if !j.DependsOn(inits[0]) {
					t.Errorf("%s does not depend on the init", j.Name)
				}
				ssh, _ := m.Find(typRemote, fmt.Sprintf("dev-worker-%d-ssh", i))
				if !j.DependsOn(ssh) {
					t.Errorf("%s does not wait for its node's SSH", j.Name)
				}
			}
			ds, ok := m.Find("kubernetes:apps/v1:DaemonSet", "kube-flannel-ds")
			if !ok || !ds.DependsOn(inits[0]) {
				t.Errorf("Flannel must be deployed after init (found %v, deps %v)", ok, ds.Dependencies)
			}
			ms, ok := m.Find("kubernetes:yaml/v2:ConfigFile", "metrics-server")
			if !ok || !ms.DependsOn(inits[0]) {
				t.Errorf("metrics-server must be deployed after init")
			}
		})
	}
}

func names(rs []pulumimock.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestMockSecretsStaySecret(t *testing.T) {
	m := deploy(t, stackConfig(2))
	// No secret value appears in any plain-text input or output.
	needles := map[string]string{
		"bootstrap token": fakeToken, "token secret half": strings.Split(fakeToken, ".")[1],
		"SSH private key": "TESTONLY-ssh-key", "admin kubeconfig": base64.StdEncoding.EncodeToString([]byte(pulumimock.ClientKeyMarker)),
		"CA hash": strings.TrimPrefix(fakeCAHash, "sha256:"),
	}
	for what, needle := range needles {
		if hits := m.FindPlain(needle); len(hits) > 0 {
			t.Errorf("%s in plain text at %v", what, hits)
		}
	}
	// The values themselves are secrets where they live.
	secret := []struct{ typ, name, side, key string }{
		{typRemote, "dev-controller-1-admin-kubeconfig", "out", "stdout"},
		{typRemote, "dev-controller-1-kubeadm-init", "in", "stdin"},
		{typRemote, "dev-worker-1-kubeadm-join", "in", "stdin"},
		{typRemote, "dev-worker-2-join-token", "in", "stdin"},
		{typRemote, "dev-worker-2-kubeadm-join", "in", "connection"},
		{"pulumi:providers:kubernetes", "cluster", "in", "kubeconfig"},
		{"test:index:Sink", "sink", "in", "kubeconfig"},
		{"test:index:Sink", "sink", "in", "controllerConnection"},
	}
	for _, s := range secret {
		r, ok := m.Find(s.typ, s.name)
		if !ok {
			t.Errorf("no %s %s", s.typ, s.name)
			continue
		}
		pm := r.Inputs
		if s.side == "out" {
			pm = r.Outputs
		}
		if !pulumimock.IsSecret(pm, s.key) {
			t.Errorf("%s %s: %s is not a secret", s.name, s.side, s.key)
		}
	}
	// And they carry the right content: the token and CA hash reach the join config.
	join, _ := m.Find(typRemote, "dev-worker-1-kubeadm-join")
	cfg := pulumimock.String(join.Inputs, "stdin")
	for _, want := range []string{"token: " + fakeToken, fakeCAHash, "name: dev-worker-1", "apiServerEndpoint: 192.168.122."} {
		if !strings.Contains(cfg, want) {
			t.Errorf("join config lacks %q:\n%s", want, cfg)
		}
	}
	kc, _ := m.Find("test:index:Sink", "sink")
	if pulumimock.String(kc.Inputs, "kubeconfig") != fakeKubeconfig {
		t.Errorf("the exported kubeconfig is not the controller's admin.conf")
	}
}

// Adding a worker adds exactly one node and one join, and changes nothing
// that exists; deploying the same config twice yields identical inputs
// (stable triggers: a second `up` changes nothing).
func TestMockAddingAWorkerAddsOneNodeAndOneJoin(t *testing.T) {
	a := deploy(t, stackConfig(2))
	again := deploy(t, stackConfig(2))
	b := deploy(t, stackConfig(3))
	index := func(m *pulumimock.Recorder) map[string]pulumimock.Resource {
		out := map[string]pulumimock.Resource{}
		for _, r := range m.Resources() {
			out[r.Key()] = r
		}
		return out
	}
	before, same := index(a), index(again)
	for k, r := range before {
		if !r.Inputs.DeepEquals(same[k].Inputs) {
			t.Errorf("a second run changed the inputs of %s", k)
		}
	}
	var added []pulumimock.Resource
	for k, r := range index(b) {
		old, ok := before[k]
		if !ok {
			added = append(added, r)
			continue
		}
		if !old.Inputs.DeepEquals(r.Inputs) {
			t.Errorf("adding a worker changed the inputs of %s", k)
		}
	}
	if len(index(b)) < len(before) {
		t.Errorf("adding a worker removed resources")
	}
	count := map[string]int{}
	for _, r := range added {
		switch {
		case r.Type == "simlab:nodes:Node":
			count["node"]++
		case r.Type == typRemote && strings.HasSuffix(r.Name, "-kubeadm-join"):
			count["join"]++
		}
		if !strings.HasPrefix(r.Name, "dev-worker-3") {
			t.Errorf("adding dev-worker-3 added %s", r.Key())
		}
	}
	if count["node"] != 1 || count["join"] != 1 {
		t.Errorf("want exactly one new node and one new join, got %v (added %v)", count, names(added))
	}
}

// A worker removed from config is drained and its Node deleted (the admit
// command's delete, which runs first because it depends on the join), then
// reset (the join's delete).
func TestMockRemovedWorkerIsDrainedDeletedAndReset(t *testing.T) {
	m := deploy(t, stackConfig(2))
	for _, w := range []string{"dev-worker-1", "dev-worker-2"} {
		admit, ok := m.Find(typRemote, w+"-admit")
		join, _ := m.Find(typRemote, w+"-kubeadm-join")
		if !ok || !admit.DependsOn(join) {
			t.Fatalf("%s-admit must exist and depend on the join (so it is deleted first)", w)
		}
		del := pulumimock.String(admit.Inputs, "delete")
		for _, want := range []string{"drain " + w, "delete node " + w} {
			if !strings.Contains(del, want) {
				t.Errorf("%s-admit delete lacks %q:\n%s", w, want, del)
			}
		}
		if !strings.Contains(pulumimock.String(join.Inputs, "delete"), "kubeadm reset -f") {
			t.Errorf("%s join delete does not reset the node", w)
		}
		if !strings.Contains(pulumimock.String(admit.Inputs, "create"), "certificate approve") {
			t.Errorf("%s-admit does not approve the kubelet serving certificate", w)
		}
	}
	init, _ := m.Find(typRemote, "dev-controller-1-kubeadm-init")
	if !strings.Contains(pulumimock.String(init.Inputs, "delete"), "kubeadm reset -f") {
		t.Errorf("destroy must reset the controller")
	}
	if c := pulumimock.String(init.Inputs, "create"); !strings.Contains(c, "test -f /etc/kubernetes/admin.conf") {
		t.Errorf("init must skip an existing cluster:\n%s", c)
	}
}

func TestMockFlannelFollowsPodCIDR(t *testing.T) {
	c := stackConfig(1)
	c.Cluster.PodCIDR = "10.50.0.0/16"
	m := deploy(t, c)
	cm, ok := m.Find("kubernetes:core/v1:ConfigMap", "kube-flannel-cfg")
	if !ok {
		t.Fatal("no flannel ConfigMap")
	}
	data := cm.Inputs["data"].ObjectValue()
	net := data["net-conf.json"].StringValue()
	if !strings.Contains(net, `"Network":"10.50.0.0/16"`) || !strings.Contains(net, `"Type":"vxlan"`) {
		t.Errorf("net-conf.json = %s", net)
	}
	init, _ := m.Find(typRemote, "dev-controller-1-kubeadm-init")
	if !strings.Contains(pulumimock.String(init.Inputs, "stdin"), "podSubnet: 10.50.0.0/16") {
		t.Errorf("kubeadm podSubnet does not follow the config")
	}
	ds, _ := m.Find("kubernetes:apps/v1:DaemonSet", "kube-flannel-ds")
	if s := fmt.Sprint(ds.Inputs); !strings.Contains(s, "ghcr.io/flannel-io/flannel:"+c.Versions.Flannel) {
		t.Errorf("flannel image is not the pinned version")
	}
}

// Every generated shell script parses.
func TestMockClusterScriptsParse(t *testing.T) {
	m := deploy(t, stackConfig(2))
	n := 0
	for _, r := range m.Resources() {
		for _, k := range []string{"create", "update", "delete"} {
			s := pulumimock.String(r.Inputs, k)
			if s == "" {
				continue
			}
			n++
			if out, err := exec.Command("sh", "-n", "-c", s).CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s\n%s", r.Name, k, err, out, s)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d scripts found", n)
	}
}

func TestDeriveTokenIsStableAndPerClusterAndSeed(t *testing.T) {
	a := cluster.DeriveToken("seed-1", "dev")
	if !cluster.ValidToken(a) {
		t.Fatalf("%q is not a kubeadm token", a)
	}
	if a != cluster.DeriveToken("seed-1", "dev") {
		t.Error("the token must be the same on every run")
	}
	if a == cluster.DeriveToken("seed-2", "dev") || a == cluster.DeriveToken("seed-1", "lab") {
		t.Error("the token must depend on the seed and the cluster")
	}
}

// BenchmarkMockDeploy measures registering the nodes and cluster layers
// (rendering every node's Ignition and kubeadm configs) under the mock
// engine: the program's own cost per `up`/`preview`, per cluster size.
func BenchmarkMockDeploy(b *testing.B) {
	man, err := artifacts.LoadManifest(filepath.Join("..", "..", "ignition", "testdata"))
	if err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{2, 50, 200} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			c := stackConfig(workers)
			for i := 0; i < b.N; i++ {
				m, err := deployE(man, c)
				if err != nil {
					b.Fatal(err)
				}
				if len(m.Select(typRemote, "-kubeadm-join")) != workers {
					b.Fatal("wrong number of joins")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/float64(workers+1), "ms/node")
		})
	}
}

func TestMockMetalStackJoinsAndKeepsSecrets(t *testing.T) {
	l, err := config.LoadStackFile(filepath.Join("..", "..", "stacks", "Pulumi.lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := deploy(t, &l.Config)
	inits := m.Select(typRemote, "-kubeadm-init")
	joins := m.Select(typRemote, "-kubeadm-join")
	if len(inits) != 1 || len(joins) != len(l.NodesByRole(config.RoleWorker)) {
		t.Fatalf("want 1 init and %d joins, got %v and %v", len(l.NodesByRole(config.RoleWorker)), names(inits), names(joins))
	}
	for _, j := range joins {
		if !j.DependsOn(inits[0]) {
			t.Errorf("%s does not depend on the init", j.Name)
		}
		if cfg := pulumimock.String(j.Inputs, "stdin"); !strings.Contains(cfg, "apiServerEndpoint: 10.20.0.10:6443") {
			t.Errorf("%s does not join the controller's static address:\n%s", j.Name, cfg)
		}
	}
	token := cluster.DeriveToken(fakePrivateKey, "lab")
	for _, needle := range []string{token, "TESTONLY-ssh-key", base64.StdEncoding.EncodeToString([]byte(pulumimock.ClientKeyMarker))} {
		if hits := m.FindPlain(needle); len(hits) > 0 {
			t.Errorf("secret %q in plain text at %v", needle[:8], hits)
		}
	}
}

func TestMockEmptyKeyIsRefused(t *testing.T) {
	c := stackConfig(1)
	_, err := pulumimock.Run("simlab", "test", func(ctx *pulumi.Context) error {
		key := pulumi.ToSecret(pulumi.String("")).(pulumi.StringOutput)
		ns, err := nodes.New(ctx, "nodes", &nodes.Args{
			Cluster: c.Cluster, Provider: c.Provider, Nodes: c.Nodes(), Controllers: c.Controllers, Workers: c.Workers,
			Libvirt: c.Libvirt, SSH: c.SSH, SSHPrivateKey: key, Artifacts: c.Artifacts, Versions: c.Versions, Manifest: manifest(t),
		})
		if err != nil {
			return err
		}
		_, err = cluster.New(ctx, "cluster", &cluster.Args{Cluster: c.Cluster, Nodes: ns.Nodes, SSHPrivateKey: key,
			Versions: c.Versions, MetricsServerManifest: testMetricsServerManifest})
		return err
	}, pulumimock.WithState(pulumimock.CommandOutputs))
	if err == nil || !strings.Contains(err.Error(), "SSH private key is empty") {
		t.Fatalf("an empty key must be refused (it would make the token predictable), got %v", err)
	}
}
