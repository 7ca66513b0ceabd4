package nodes_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/ignition"
	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/nodes"
	"github.com/simlab/simlab/infra/pulumimock"
)

const (
	typRemote = "command:remote:Command"
	typLocal  = "command:local:Command"
	typNode   = "simlab:nodes:Node"
)

const testSnippet = `variant: fcos
version: 1.6.0
storage:
  files:
    - path: /etc/simlab-test
      contents:
        inline: %s
`

func manifest(t *testing.T) *artifacts.Manifest {
	t.Helper()
	m, err := artifacts.LoadManifest(filepath.Join("..", "..", "ignition", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func loadStack(t *testing.T, name string) *config.Config {
	t.Helper()
	l, err := config.LoadStackFile(filepath.Join("..", "..", "stacks", "Pulumi."+name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return &l.Config
}

// outputs are what the mocked commands print.
func outputs(args pulumi.MockResourceArgs) resource.PropertyMap {
	if args.TypeToken != typRemote && args.TypeToken != typLocal {
		return nil
	}
	out := ""
	switch n := args.Name; {
	case strings.HasSuffix(n, "-domain"):
		out = "uuid-of-" + n + "\n"
	case strings.HasSuffix(n, "-address"):
		out = "192.168.122.77\n"
	case strings.HasSuffix(n, "-ssh"):
		out = "machine-id\n"
	}
	return resource.PropertyMap{"stdout": resource.NewProperty(out), "stderr": resource.NewProperty("")}
}

// deploy runs the nodes layer for c under the mock monitor, with a sink
// resource that takes every node's address as input.
func deploy(t *testing.T, c *config.Config, opts ...func(*pulumimock.Recorder)) *pulumimock.Recorder {
	t.Helper()
	return deployWith(t, c, manifest(t), opts...)
}

// deployWith is deploy with a given artifact manifest.
func deployWith(t *testing.T, c *config.Config, man *artifacts.Manifest, opts ...func(*pulumimock.Recorder)) *pulumimock.Recorder {
	t.Helper()
	m, err := pulumimock.Run("simlab", "test", func(ctx *pulumi.Context) error {
		ns, err := nodes.New(ctx, "nodes", &nodes.Args{
			Cluster: c.Cluster, Provider: c.Provider, Nodes: c.Nodes(), Controllers: c.Controllers, Workers: c.Workers,
			Libvirt: c.Libvirt, Metal: c.Metal, SSH: c.SSH,
			SSHPrivateKey: pulumi.ToSecret(pulumi.String("TESTONLY-key")).(pulumi.StringOutput),
			Artifacts:     c.Artifacts, Versions: c.Versions, Ignition: c.Ignition, Manifest: man,
		})
		if err != nil {
			return err
		}
		addrs := pulumi.StringMap{}
		for _, n := range ns.Nodes {
			addrs[n.Name] = n.Address
		}
		var sink pulumi.CustomResourceState
		return ctx.RegisterResource("test:index:Sink", "sink", pulumi.Map{"addresses": addrs}, &sink)
	}, append([]func(*pulumimock.Recorder){pulumimock.WithState(outputs)}, opts...)...)
	if err != nil {
		t.Fatalf("nodes layer failed under mocks: %v", err)
	}
	return m
}

func find(t *testing.T, m *pulumimock.Recorder, typ, name string) pulumimock.Resource {
	t.Helper()
	r, ok := m.Find(typ, name)
	if !ok {
		t.Fatalf("no %s %s", typ, name)
	}
	return r
}

func triggers(r pulumimock.Resource) string { return fmt.Sprint(r.Inputs["triggers"]) }

func TestMockLibvirtNodesAndTheirChildren(t *testing.T) {
	c := loadStack(t, "dev")
	m := deploy(t, c)
	img := find(t, m, typRemote, "dev-fcos-image-42.20251012.3.0")
	qemu, _ := manifest(t).Get(artifacts.FCOSQemu)
	if create := pulumimock.String(img.Inputs, "create"); !strings.Contains(create, qemu.SHA512) ||
		!strings.Contains(create, "sha512sum -c") || !strings.Contains(create, c.Artifacts.URL+"/"+qemu.Path) {
		t.Errorf("base image is not fetched from the artifact server and checked:\n%s", create)
	}
	for _, n := range c.Nodes() {
		node := find(t, m, typNode, n.Name)
		for _, child := range []string{"-ignition", "-disks", "-domain", "-address", "-ssh"} {
			r := find(t, m, typRemote, n.Name+child)
			if r.Parent != node.URN {
				t.Errorf("%s%s is parented to %s, want the node", n.Name, child, r.Parent)
			}
		}
		guard := find(t, m, typLocal, n.Name+"-guard")
		if guard.Parent != node.URN {
			t.Errorf("%s-guard is parented to %s, want the node", n.Name, guard.Parent)
		}
		for _, child := range []string{"-ignition", "-disks", "-domain"} {
			if !find(t, m, typRemote, n.Name+child).DependsOn(guard) {
				t.Errorf("%s%s must wait for the node's guard", n.Name, child)
			}
		}
		disks := pulumimock.String(find(t, m, typRemote, n.Name+"-disks").Inputs, "create")
		if !strings.Contains(disks, "-b '/var/lib/libvirt/images/simlab-dev/fedora-coreos-42.20251012.3.0-qemu.x86_64.qcow2'") {
			t.Errorf("%s: overlay is not on the base image:\n%s", n.Name, disks)
		}
		hasCeph := strings.Contains(disks, "-ceph.raw")
		if hasCeph != (n.Role == config.RoleWorker) {
			t.Errorf("%s (%s): Ceph data disk present=%v", n.Name, n.Role, hasCeph)
		}
		domain := pulumimock.String(find(t, m, typRemote, n.Name+"-domain").Inputs, "create")
		pool := c.Controllers
		if n.Role == config.RoleWorker {
			pool = c.Workers
		}
		for _, want := range []string{
			"-fw_cfg name=opt/com.coreos/config,file=/var/lib/libvirt/images/simlab-dev/" + n.Name + ".ign",
			fmt.Sprintf("--vcpus %d --memory %d", pool.CPUs, pool.MemoryMiB),
			"network='default',mac=" + config.LibvirtMAC("dev", n.Name),
		} {
			if !strings.Contains(domain, want) {
				t.Errorf("%s domain lacks %q:\n%s", n.Name, want, domain)
			}
		}
		del := pulumimock.String(find(t, m, typRemote, n.Name+"-domain").Inputs, "delete")
		if !strings.Contains(del, "undefine '"+n.Name+"'") {
			t.Errorf("%s: deleting does not undefine the domain:\n%s", n.Name, del)
		}
		if d := pulumimock.String(find(t, m, typRemote, n.Name+"-disks").Inputs, "delete"); !strings.Contains(d, n.Name+".qcow2") {
			t.Errorf("%s: deleting does not remove its disk: %s", n.Name, d)
		}
	}
	sink := find(t, m, "test:index:Sink", "sink")
	if got := fmt.Sprint(sink.Inputs["addresses"]); !strings.Contains(got, "192.168.122.77") {
		t.Errorf("DHCP lease is not the node address: %s", got)
	}
}

func TestMockStaticLibvirtAddressNeedsNoLease(t *testing.T) {
	c := loadStack(t, "dev")
	c.Libvirt.Addresses = map[string]string{"dev-worker-1": "192.168.122.51"}
	c.Libvirt.Gateway = "192.168.122.1"
	m := deploy(t, c)
	if _, ok := m.Find(typRemote, "dev-worker-1-address"); ok {
		t.Error("a static node must not wait for a DHCP lease")
	}
	if _, ok := m.Find(typRemote, "dev-worker-2-address"); !ok {
		t.Error("a DHCP node must read its lease")
	}
	sink := find(t, m, "test:index:Sink", "sink")
	if got := fmt.Sprint(sink.Inputs["addresses"]); !strings.Contains(got, "192.168.122.51") {
		t.Errorf("static address not exported: %s", got)
	}
	ign := pulumimock.String(find(t, m, typRemote, "dev-worker-1-ignition").Inputs, "stdin")
	if !strings.Contains(ign, "simlab-static.nmconnection") {
		t.Errorf("static node's Ignition has no static network")
	}
}

// Ignition runs once: a changed Ignition recreates a worker, but a
// controller only when the stack opts in (typhoon PR #335).
func TestMockIgnitionDriftReplacesWorkersButNotControllers(t *testing.T) {
	base := loadStack(t, "dev")
	changed := loadStack(t, "dev")
	changed.Ignition.Controller = []string{fmt.Sprintf(testSnippet, "changed")}
	changed.Ignition.Worker = []string{fmt.Sprintf(testSnippet, "changed")}
	optIn := loadStack(t, "dev")
	optIn.Libvirt.ReplaceControllersOnIgnitionChange = true
	optInChanged := loadStack(t, "dev")
	optInChanged.Libvirt.ReplaceControllersOnIgnitionChange = true
	optInChanged.Ignition.Controller = changed.Ignition.Controller

	a, b := deploy(t, base), deploy(t, changed)
	ctrlIgn := find(t, a, typRemote, "dev-controller-1-ignition")
	if strings.Join(ctrlIgn.IgnoreChanges, ",") != "stdin" {
		t.Errorf("controller Ignition file must ignore drift, ignoreChanges=%v", ctrlIgn.IgnoreChanges)
	}
	if len(find(t, a, typRemote, "dev-worker-1-ignition").IgnoreChanges) != 0 {
		t.Error("worker Ignition file must follow changes")
	}
	for _, r := range []string{"dev-controller-1-disks", "dev-controller-1-domain"} {
		if triggers(find(t, a, typRemote, r)) != triggers(find(t, b, typRemote, r)) {
			t.Errorf("%s would be replaced by an Ignition change", r)
		}
	}
	if triggers(find(t, a, typRemote, "dev-worker-1-disks")) == triggers(find(t, b, typRemote, "dev-worker-1-disks")) {
		t.Error("a worker's Ignition change must recreate its disk")
	}
	if !find(t, a, typRemote, "dev-worker-1-disks").DeleteBeforeReplace {
		t.Error("disks are replaced delete-before-replace (same file names)")
	}
	c, d := deploy(t, optIn), deploy(t, optInChanged)
	if triggers(find(t, c, typRemote, "dev-controller-1-disks")) == triggers(find(t, d, typRemote, "dev-controller-1-disks")) {
		t.Error("with replaceControllersOnIgnitionChange a controller follows its Ignition")
	}
	if len(find(t, c, typRemote, "dev-controller-1-ignition").IgnoreChanges) != 0 {
		t.Error("with the opt-in the controller Ignition file follows changes")
	}
}

// Scaling adds exactly the new workers' resources; every existing resource,
// workers included, keeps its inputs, and only the sink of all addresses
// changes.
func TestMockScalingWorkersTouchesOnlyWorkers(t *testing.T) {
	small := loadStack(t, "dev")
	large := loadStack(t, "dev")
	large.Workers.Count = 50
	plan := pulumimock.Diff(deploy(t, small, pulumimock.WithReplacementIDs()), deploy(t, large, pulumimock.WithReplacementIDs()))
	newNodes := 0
	for key, op := range plan {
		name := key[strings.LastIndex(key, "::")+2:]
		isNew := false
		for i := 3; i <= 50; i++ {
			w := fmt.Sprintf("dev-worker-%d", i)
			isNew = isNew || name == w || strings.HasPrefix(name, w+"-")
		}
		switch {
		case op == pulumimock.OpCreate && isNew:
			if strings.HasPrefix(key, typNode+"::") {
				newNodes++
			}
		case op == pulumimock.OpUpdate && key == "test:index:Sink::sink":
		default:
			t.Errorf("scaling workers would %s %s", op, key)
		}
	}
	if newNodes != 48 {
		t.Errorf("want 48 new nodes, got %d", newNodes)
	}
}

func TestMockMetalNodesAreCheckedOnTheArtifactServer(t *testing.T) {
	c := loadStack(t, "lab")
	m := deploy(t, c)
	for _, r := range m.Resources() {
		if strings.HasSuffix(r.Name, "-domain") || strings.Contains(r.Name, "-fcos-image") {
			t.Errorf("metal stack has libvirt resource %s", r.Name)
		}
	}
	for _, n := range c.Nodes() {
		want, err := ignition.RenderNode(c, n, manifest(t))
		if err != nil {
			t.Fatal(err)
		}
		pxe := find(t, m, typLocal, n.Name+"-pxe")
		env := pxe.Inputs["environment"].ObjectValue()
		if got := env["SIMLAB_IGNITION_SHA256"].StringValue(); got != sha(want) {
			t.Errorf("%s: checks sha256 %s, want that of its Ignition %s", n.Name, got, sha(want))
		}
		ssh := find(t, m, typRemote, n.Name+"-ssh")
		if !ssh.DependsOn(pxe) || ssh.Parent != find(t, m, typNode, n.Name).URN {
			t.Errorf("%s: SSH wait must follow the PXE check, under the node", n.Name)
		}
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The PXE check runs for real against the artifact server's handler on
// loopback: it passes for the Ignition the server renders, and fails with
// a message naming the node for any other.
func TestServedCheckScriptAgainstTheArtifactServer(t *testing.T) {
	c := loadStack(t, "lab")
	m := manifest(t)
	r, err := ignition.NewRenderer(c, m)
	if err != nil {
		t.Fatal(err)
	}
	var served []artifacts.ServedNode
	for _, n := range c.Nodes() {
		served = append(served, artifacts.ServedNode{Name: n.Name, Role: n.Role, MAC: n.MAC})
	}
	byName := map[string]config.Node{}
	for _, n := range c.Nodes() {
		byName[n.Name] = n
	}
	srv := httptest.NewServer(nil)
	srv.Config.Handler = artifacts.Handler(artifacts.ServerOptions{Dir: t.TempDir(), Manifest: m, BaseURL: srv.URL,
		Nodes: served, InstallDisk: c.Metal.InstallDisk,
		Ignition: func(name string) ([]byte, error) { return r.Render(byName[name]) }})
	defer srv.Close()

	node := c.NodesByRole(config.RoleWorker)[0]
	ign, err := r.Render(node)
	if err != nil {
		t.Fatal(err)
	}
	run := func(hash string) (string, error) {
		cmd := exec.Command("sh", "-c", nodes.ServedCheckScript(srv.URL, node.Name, node.MAC))
		cmd.Env = append(os.Environ(), "SIMLAB_IGNITION_SHA256="+hash)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(sha(ign)); err != nil {
		t.Fatalf("check failed for the served Ignition: %v\n%s", err, out)
	}
	out, err := run(sha([]byte("something else")))
	if err == nil || !strings.Contains(out, node.Name) || !strings.Contains(out, "different Ignition") {
		t.Errorf("check must fail naming %s, got %v: %s", node.Name, err, out)
	}
}

// Every generated shell script parses.
func TestMockScriptsParse(t *testing.T) {
	for _, stack := range []string{"dev", "lab"} {
		m := deploy(t, loadStack(t, stack))
		for _, r := range m.Resources() {
			for _, k := range []string{"create", "update", "delete"} {
				s := pulumimock.String(r.Inputs, k)
				if s == "" {
					continue
				}
				if out, err := exec.Command("sh", "-n", "-c", s).CombinedOutput(); err != nil {
					t.Errorf("%s %s: %v\n%s\n%s", r.Name, k, err, out, s)
				}
			}
		}
	}
}

// fakeVirsh is a virsh for one domain whose state lives in files of $FAKE:
// it answers uri, dominfo, domstate and domuuid, records every call, and applies
// --config vCPUs and memory when the domain starts.
const fakeVirsh = `#!/bin/sh
shift 2 # --connect URI
cmd=$1; shift
d=$FAKE
echo "$cmd $*" >> "$d/log"
case $cmd in
dominfo) printf 'CPU(s):         %s\nMax memory:     %s KiB\n' "$(cat "$d/cpus")" "$(($(cat "$d/mem") * 1024))" ;;
domstate) cat "$d/state" ;;
setvcpus) case "$*" in *--maximum*) ;; *) echo "$2" > "$d/next-cpus" ;; esac ;;
setmem) echo "${2%M}" > "$d/next-mem" ;;
setmaxmem) ;;
shutdown) echo "shut off" > "$d/state" ;;
start) echo running > "$d/state"; cp "$d/next-cpus" "$d/cpus"; cp "$d/next-mem" "$d/mem" ;;
domuuid) echo uuid-of-the-domain ;;
uri) echo qemu:///system ;;
*) echo "fake virsh: unexpected $cmd" >&2; exit 1 ;;
esac
`

// Changing a node's cpus or memory updates its domain in place: the update
// script sets the persistent config, restarts the running domain and prints
// the same UUID; run again it changes nothing.
func TestMockResizeIsInPlaceAndRestartsOnce(t *testing.T) {
	c := loadStack(t, "dev")
	c.Controllers.CPUs, c.Controllers.MemoryMiB = 4, 6144
	m := deploy(t, c)
	script := pulumimock.String(find(t, m, typRemote, "dev-controller-1-domain").Inputs, "update")

	bin, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "virsh"), []byte(fakeVirsh), 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"cpus": "2", "mem": "4096", "state": "running"} {
		if err := os.WriteFile(filepath.Join(state, f), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func() (string, string) {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE="+state)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("update script: %v\n%s", err, script)
		}
		log, _ := os.ReadFile(filepath.Join(state, "log"))
		os.Remove(filepath.Join(state, "log"))
		return string(out), string(log)
	}
	out, log := run()
	want := "uri \ndominfo dev-controller-1\nsetvcpus dev-controller-1 4 --config --maximum\nsetvcpus dev-controller-1 4 --config\n" +
		"setmaxmem dev-controller-1 6144M --config\nsetmem dev-controller-1 6144M --config\n" +
		"domstate dev-controller-1\nshutdown dev-controller-1\ndomstate dev-controller-1\nstart dev-controller-1\ndomuuid dev-controller-1\n"
	if log != want {
		t.Errorf("virsh calls:\n%s\nwant:\n%s", log, want)
	}
	if out != "uuid-of-the-domain\n" {
		t.Errorf("the update prints %q, want the domain's UUID", out)
	}
	if out, log := run(); log != "uri \ndominfo dev-controller-1\ndomuuid dev-controller-1\n" || out != "uuid-of-the-domain\n" {
		t.Errorf("a second run must only check: %q, %q", log, out)
	}
}

// fakeQemuImg answers `qemu-img info [-U --output=json] FILE` with the
// backing file recorded for FILE's name in $BACKING (none: no backing file).
const fakeQemuImg = `#!/bin/sh
[ "$1" = info ] || { echo "fake qemu-img: unexpected $1" >&2; exit 1; }
for f; do :; done
b=$BACKING/$(basename "$f")
if [ -f "$b" ]; then printf '{\n    "backing-filename": "%s",\n    "format": "qcow2"\n}\n' "$(cat "$b")"; else echo '{}'; fi
`

// An FCOS bump keeps the old base image while any overlay uses it: deleting
// the old release's resource keeps the file, each node's disks delete
// removes it once no overlay is left on it, and destroying the current
// release's resource removes its image and the directory.
func TestMockOldBaseImageGoesWithItsLastOverlay(t *testing.T) {
	dir, bin, backing := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "qemu-img"), []byte(fakeQemuImg), 0o755); err != nil {
		t.Fatal(err)
	}
	sh := func(script string) {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "BACKING="+backing)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s\n%s", err, out, script)
		}
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	c := loadStack(t, "dev")
	c.Libvirt.ImageDir = dir
	oldMan := manifest(t)
	old := deployWith(t, c, oldMan)
	newMan := manifest(t)
	qemu := newMan.Artifacts[artifacts.FCOSQemu]
	qemu.Path = strings.ReplaceAll(qemu.Path, "42.20251012.3.0", "43.20251101.3.0")
	newMan.Artifacts[artifacts.FCOSQemu] = qemu
	bumped := deployWith(t, c, newMan)

	base42 := filepath.Join(dir, "fedora-coreos-42.20251012.3.0-qemu.x86_64.qcow2")
	base43 := filepath.Join(dir, "fedora-coreos-43.20251101.3.0-qemu.x86_64.qcow2")
	// The lab before the bump: the base image and one overlay on it per node.
	write(base42, "base")
	write(filepath.Join(dir, ".simlab-base"), base42+"\n")
	for _, n := range c.Nodes() {
		write(filepath.Join(dir, n.Name+".qcow2"), "overlay")
		write(filepath.Join(backing, n.Name+".qcow2"), base42)
	}
	// The bump: the new release's image (already downloaded) becomes current...
	write(base43, "base")
	sh(pulumimock.String(find(t, bumped, typRemote, "dev-fcos-image-43.20251101.3.0").Inputs, "create"))
	// ...and the old release's resource is deleted: its image stays.
	sh(pulumimock.String(find(t, old, typRemote, "dev-fcos-image-42.20251012.3.0").Inputs, "delete"))
	if !exists(base42) || !exists(base43) {
		t.Fatal("the old base image was removed while overlays use it")
	}
	nodes := c.Nodes()
	for i, n := range nodes {
		sh(pulumimock.String(find(t, old, typRemote, n.Name+"-disks").Inputs, "delete"))
		if last := i == len(nodes)-1; exists(base42) == last {
			t.Fatalf("after deleting %s's disks the old base image exists=%v, want %v", n.Name, exists(base42), !last)
		}
		if !exists(base43) {
			t.Fatal("the current base image was removed")
		}
	}
	sh(pulumimock.String(find(t, bumped, typRemote, "dev-fcos-image-43.20251101.3.0").Inputs, "delete"))
	if exists(dir) {
		entries, _ := os.ReadDir(dir)
		t.Errorf("destroying the current base image left %v", entries)
	}
}
