//go:build libvirt

// Package libvirt_test runs the nodes layer's libvirt commands, exactly as
// the program declares them (pulumimock.Recorder.Commands), against a real
// libvirtd and qemu on this machine, reached over SSH on loopback as the
// stack's simlab:libvirt block says. `make test-libvirt` (tests/libvirt/run.sh)
// starts the hypervisor in a network namespace of its own and runs this test
// there; docs/LAB-SETUP.md says what it proves.
//
// The base image is a STAND-IN for Fedora CoreOS (standin-image.sh): Debian's
// kernel and an initramfs with the real Ignition, which takes the node's
// config from fw_cfg, downloads its files from the artifact server over the
// libvirt network and applies them to a scratch root, then reports on the
// serial console. It leaves unproven everything FCOS itself does after
// Ignition (systemd units running, kubelet, rpm-ostree).
package libvirt_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ign "github.com/coreos/ignition/v2/config/v3_5"
	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"golang.org/x/crypto/ssh"

	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/nodes"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/tests/localcluster"
	"github.com/simlab/simlab/tests/standin"
)

// hv is the hypervisor run.sh started: sshd on loopback, libvirtd, a network.
type hv struct {
	port                      int
	key                       []byte
	hostKey                   ssh.PublicKey
	network, hostIP, imageDir string
	baseImage                 string
	client                    *ssh.Client
}

func mustEnv(t *testing.T, k string) string {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		t.Fatalf("%s is not set: run this test with `make test-libvirt` (tests/libvirt/run.sh starts the hypervisor)", k)
	}
	return v
}

func hypervisor(t *testing.T) *hv {
	t.Helper()
	h := &hv{network: mustEnv(t, "SIMLAB_LIBVIRT_NETWORK"), hostIP: mustEnv(t, "SIMLAB_LIBVIRT_HOST_IP"),
		imageDir: mustEnv(t, "SIMLAB_LIBVIRT_IMAGEDIR"), baseImage: mustEnv(t, "SIMLAB_LIBVIRT_BASE")}
	var err error
	if h.port, err = strconv.Atoi(mustEnv(t, "SIMLAB_LIBVIRT_SSH_PORT")); err != nil {
		t.Fatal(err)
	}
	if h.key, err = os.ReadFile(mustEnv(t, "SIMLAB_LIBVIRT_SSH_KEY")); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(mustEnv(t, "SIMLAB_LIBVIRT_HOST_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	if h.hostKey, _, _, _, err = ssh.ParseAuthorizedKey(pub); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(h.key)
	if err != nil {
		t.Fatal(err)
	}
	h.client, err = ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)), &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(h.hostKey),
		Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("hypervisor on 127.0.0.1:%d: %v", h.port, err)
	}
	t.Cleanup(func() { h.client.Close() })
	return h
}

// run runs a script on the hypervisor as pulumi-command's remote provider
// does: one SSH session, the script as its command, stdin piped, the
// environment set on the session.
func (h *hv) run(script, stdin string, env map[string]string) (string, error) {
	s, err := h.client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	for k, v := range env {
		if err := s.Setenv(k, v); err != nil {
			return "", fmt.Errorf("setenv %s: %w", k, err)
		}
	}
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if stdin != "" {
		s.Stdin = strings.NewReader(stdin)
	}
	if err := s.Run(script); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// sh runs a command on the hypervisor and fails the test on error.
func (h *hv) sh(t *testing.T, script string) string {
	t.Helper()
	out, err := h.run(script, "", nil)
	if err != nil {
		t.Fatalf("hypervisor: %s: %v", script, err)
	}
	return out
}

// labStack is the committed dev stack pointed at this hypervisor: one
// controller and one worker, sized for TCG.
func labStack(t *testing.T, h *hv, root, mirror, artifactsURL string) *config.Loaded {
	t.Helper()
	l, err := config.LoadStackFile(filepath.Join(root, "stacks", "Pulumi.dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l.Cluster.Name = "lvt"
	l.Libvirt.Host, l.Libvirt.Port, l.Libvirt.User = "127.0.0.1", h.port, "root"
	l.Libvirt.URI, l.Libvirt.Network, l.Libvirt.ImageDir = "qemu:///system", h.network, h.imageDir
	l.Controllers.CPUs, l.Controllers.MemoryMiB, l.Controllers.DiskGiB = 2, 2048, 10
	l.Workers.Count, l.Workers.CPUs, l.Workers.MemoryMiB, l.Workers.DiskGiB, l.Workers.CephDiskGiB = 1, 1, 1024, 10, 5
	l.Artifacts.URL, l.Artifacts.Dir = artifactsURL, mirror
	l.SSHPrivateKey = string(h.key)
	if err := l.Config.Validate(); err != nil {
		t.Fatalf("the test stack is invalid: %v", err)
	}
	return l
}

// writeMirror is the stand-in mirror (charts, CRDs) with real node files:
// small stand-ins for the binaries, and the stand-in base image, xz'd as the
// FCOS qemu image is, each with its sha512 in the manifest.
func writeMirror(t *testing.T, h *hv, root, dir string, v config.Versions) *artifacts.Manifest {
	t.Helper()
	m, err := standin.Mirror(root, dir, v)
	if err != nil {
		t.Fatal(err)
	}
	put := func(name string, data []byte) {
		if err := standin.Put(dir, m, name, data, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range artifacts.NodeArtifacts {
		put(name, []byte("#!/bin/sh\n# stand-in "+name+" for the libvirt test\n"))
	}
	xz, err := exec.Command("xz", "-1", "-T0", "-c", h.baseImage).Output()
	if err != nil {
		t.Fatalf("xz %s: %v", h.baseImage, err)
	}
	put(artifacts.FCOSQemu, xz)
	if err := m.Write(dir); err != nil {
		t.Fatal(err)
	}
	return m
}

// domainXML is what the test reads of `virsh dumpxml`.
type domainXML struct {
	Name   string `xml:"name"`
	UUID   string `xml:"uuid"`
	Type   string `xml:"type,attr"`
	Memory struct {
		Unit  string `xml:"unit,attr"`
		Value int64  `xml:",chardata"`
	} `xml:"memory"`
	VCPU    int `xml:"vcpu"`
	Devices struct {
		Disks []struct {
			Device string `xml:"device,attr"`
			Driver struct {
				Type string `xml:"type,attr"`
			} `xml:"driver"`
			Source struct {
				File string `xml:"file,attr"`
			} `xml:"source"`
			Serial string `xml:"serial"`
		} `xml:"disk"`
		Interfaces []struct {
			MAC struct {
				Address string `xml:"address,attr"`
			} `xml:"mac"`
			Source struct {
				Network string `xml:"network,attr"`
			} `xml:"source"`
			Model struct {
				Type string `xml:"type,attr"`
			} `xml:"model"`
		} `xml:"interface"`
	} `xml:"devices"`
	QemuArgs []struct {
		Value string `xml:"value,attr"`
	} `xml:"commandline>arg"`
}

// report is what the stand-in printed on its serial console.
type report struct {
	status string
	files  map[string][2]string // path -> mode, sha512
	dirs   map[string]string    // path -> mode
	links  map[string]string    // path -> target
	passwd []string
	// boot is the kernel's boot ID, the CPUs it sees and its MemTotal (KiB).
	boot         string
	cpus, memKiB int
}

// readReport reads the domain's serial console (its pty) until one whole
// report arrived. The stand-in repeats it every few seconds, so a reader that
// attaches late still gets one.
func readReport(t *testing.T, h *hv, domain string, within time.Duration) (report, time.Duration) {
	t.Helper()
	start := time.Now()
	pty := strings.TrimSpace(h.sh(t, "virsh --connect qemu:///system ttyconsole "+domain))
	if out, err := exec.Command("stty", "-F", pty, "raw", "-echo").CombinedOutput(); err != nil {
		t.Fatalf("stty %s: %v: %s", pty, err, out)
	}
	f, err := os.Open(pty)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   report
		err error
	}
	done := make(chan result, 1)
	go func() {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var r *report
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			switch {
			case strings.HasPrefix(line, "SIMLAB-REPORT-BEGIN"):
				r = &report{status: strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(line, "SIMLAB-REPORT-BEGIN")), "status="),
					files: map[string][2]string{}, dirs: map[string]string{}, links: map[string]string{}}
			case r == nil:
			case line == "SIMLAB-REPORT-END":
				done <- result{r: *r}
				return
			default:
				fs := strings.Fields(line)
				switch {
				case len(fs) == 4 && fs[0] == "file":
					r.files[fs[1]] = [2]string{fs[2], fs[3]}
				case len(fs) == 3 && fs[0] == "dir":
					r.dirs[fs[1]] = fs[2]
				case len(fs) == 3 && fs[0] == "link":
					r.links[fs[1]] = fs[2]
				case len(fs) >= 2 && fs[0] == "passwd":
					r.passwd = append(r.passwd, fs[1])
				case len(fs) == 4 && fs[0] == "boot":
					r.boot = fs[1]
					r.cpus, _ = strconv.Atoi(fs[2])
					r.memKiB, _ = strconv.Atoi(fs[3])
				case fs[0] == "log:":
					t.Logf("%s: %s", domain, line)
				}
			}
		}
		done <- result{err: fmt.Errorf("console closed: %v", sc.Err())}
	}()
	select {
	case res := <-done:
		f.Close()
		if res.err != nil {
			t.Fatalf("%s: %v", domain, res.err)
		}
		return res.r, time.Since(start)
	case <-time.After(within):
		f.Close()
		t.Fatalf("%s: no report on the serial console within %s", domain, within)
	}
	return report{}, 0
}

// dataURL decodes an Ignition data: URL (percent or base64, as Butane writes).
func dataURL(t *testing.T, s string) []byte {
	t.Helper()
	meta, data, ok := strings.Cut(strings.TrimPrefix(s, "data:"), ",")
	if !ok {
		t.Fatalf("not a data URL: %.40q", s)
	}
	if strings.HasSuffix(meta, ";base64") {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := url.PathUnescape(data)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(b)
}

func sha512hex(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }

func octal(mode *int, def int) string {
	m := def
	if mode != nil {
		m = *mode
	}
	return strconv.FormatInt(int64(m), 8)
}

// checkApplied checks that every file, directory, link, unit and user of the
// node's rendered Ignition arrived in the stand-in's root as configured.
func checkApplied(t *testing.T, node string, cfg igntypes.Config, r report) {
	t.Helper()
	if r.status != "applied" {
		t.Errorf("%s: Ignition status %q, want applied", node, r.status)
	}
	for _, f := range cfg.Storage.Files {
		got, ok := r.files[f.Path]
		if !ok {
			t.Errorf("%s: file %s not written", node, f.Path)
			continue
		}
		want := ""
		switch src := ""; {
		case f.Contents.Source != nil && strings.HasPrefix(*f.Contents.Source, "data:"):
			src = *f.Contents.Source
			data := dataURL(t, src)
			if f.Contents.Compression != nil && *f.Contents.Compression == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				if data, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			want = sha512hex(data)
		case f.Contents.Source != nil:
			if f.Contents.Verification.Hash == nil || !strings.HasPrefix(*f.Contents.Verification.Hash, "sha512-") {
				t.Errorf("%s: remote file %s has no sha512 verification", node, f.Path)
				continue
			}
			want = strings.TrimPrefix(*f.Contents.Verification.Hash, "sha512-")
		default:
			want = sha512hex(nil)
		}
		if got[1] != want {
			t.Errorf("%s: %s has sha512 %.16s..., want %.16s...", node, f.Path, got[1], want)
		}
		if m := octal(f.Mode, 0o644); got[0] != m {
			t.Errorf("%s: %s mode %s, want %s", node, f.Path, got[0], m)
		}
	}
	for _, d := range cfg.Storage.Directories {
		if got, ok := r.dirs[d.Path]; !ok || got != octal(d.Mode, 0o755) {
			t.Errorf("%s: directory %s is %q (present %v), want mode %s", node, d.Path, got, ok, octal(d.Mode, 0o755))
		}
	}
	for _, l := range cfg.Storage.Links {
		if got := r.links[l.Path]; l.Target == nil || got != *l.Target {
			t.Errorf("%s: link %s -> %q, want %v", node, l.Path, got, l.Target)
		}
	}
	preset := ""
	for p, f := range r.files {
		if strings.HasPrefix(p, "/etc/systemd/system-preset/") {
			preset += p + " " + f[1]
		}
	}
	for _, u := range cfg.Systemd.Units {
		p := "/etc/systemd/system/" + u.Name
		if u.Contents != nil {
			if got, ok := r.files[p]; !ok || got[1] != sha512hex([]byte(*u.Contents)) {
				t.Errorf("%s: unit %s not written with its contents (%v)", node, p, ok)
			}
		}
		for _, d := range u.Dropins {
			dp := p + ".d/" + d.Name
			if d.Contents != nil {
				if got, ok := r.files[dp]; !ok || got[1] != sha512hex([]byte(*d.Contents)) {
					t.Errorf("%s: drop-in %s not written with its contents", node, dp)
				}
			}
		}
		if u.Enabled != nil && *u.Enabled && preset == "" {
			t.Errorf("%s: unit %s is enabled but Ignition wrote no preset", node, u.Name)
		}
	}
	for _, u := range cfg.Passwd.Users {
		found := false
		for _, p := range r.passwd {
			found = found || strings.HasPrefix(p, u.Name+":")
		}
		if !found {
			t.Errorf("%s: user %s not in /etc/passwd", node, u.Name)
		}
		if len(u.SSHAuthorizedKeys) > 0 {
			home := "/var/home/" + u.Name
			if u.Name == "root" {
				home = "/root"
			}
			if _, ok := r.files[home+"/.ssh/authorized_keys.d/ignition"]; !ok {
				t.Errorf("%s: %s's SSH keys not written (%s/.ssh/authorized_keys.d/ignition)", node, u.Name, home)
			}
		}
	}
}

func TestLibvirtNodesForReal(t *testing.T) {
	h := hypervisor(t)
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The artifact server, on the libvirt network's host address.
	ln, err := net.Listen("tcp", net.JoinHostPort(h.hostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	artifactsURL := "http://" + ln.Addr().String()
	mirror := t.TempDir()
	l := labStack(t, h, root, mirror, artifactsURL)
	m := writeMirror(t, h, root, mirror, l.Versions)
	var served bytes.Buffer
	srv := &http.Server{Handler: artifacts.Handler(artifacts.ServerOptions{Dir: mirror, Manifest: m, BaseURL: artifactsURL, Log: &served})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	rec, err := pulumimock.Run("simlab", "libvirttest", func(ctx *pulumi.Context) error {
		_, err := infra.Deploy(ctx, l)
		return err
	}, pulumimock.WithState(pulumimock.CommandOutputs))
	if err != nil {
		t.Fatalf("the program under the mock engine: %v", err)
	}
	// The commands that reach the hypervisor, and the local guards before
	// them; the node SSH waits and the cluster layer need a real node OS.
	var cmds []pulumimock.Command
	for _, c := range rec.Commands() {
		if (c.Remote && c.Host == "127.0.0.1") || (!c.Remote && strings.HasSuffix(c.Name, "-guard") && strings.HasPrefix(c.Name, l.Cluster.Name+"-")) {
			cmds = append(cmds, c)
		}
	}
	if len(cmds) < 8 {
		t.Fatalf("only %d hypervisor commands: %v", len(cmds), cmds)
	}
	stdout := map[string]string{}
	exec1 := func(c pulumimock.Command, script string) (string, error) {
		if c.Remote {
			return h.run(script, c.Stdin, c.Environment)
		}
		cmd := exec.Command("sh", "-c", script)
		cmd.Stdin = strings.NewReader(c.Stdin)
		cmd.Env = os.Environ()
		for k, v := range c.Environment {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.Output()
		return string(out), err
	}
	t.Cleanup(func() {
		// Whatever happens, undo in reverse order (the delete scripts are idempotent).
		for i := len(cmds) - 1; i >= 0; i-- {
			if cmds[i].Delete != "" {
				exec1(cmds[i], cmds[i].Delete)
			}
		}
	})

	defined := map[string]time.Time{}
	start := time.Now()
	for _, c := range cmds {
		t0 := time.Now()
		out, err := exec1(c, c.Create)
		if err != nil {
			t.Fatalf("create %s: %v\n%s", c.Name, err, out)
		}
		stdout[c.Name] = out
		if strings.HasSuffix(c.Name, "-domain") {
			defined[strings.TrimSuffix(c.Name, "-domain")] = t0
		}
		t.Logf("create %-28s %6.1f s", c.Name, time.Since(t0).Seconds())
	}
	t.Logf("all creates: %.1f s", time.Since(start).Seconds())

	booted := map[string]report{} // each node's first report
	for _, n := range l.Nodes() {
		n := n
		t.Run(n.Name, func(t *testing.T) {
			pool := l.Controllers
			if n.Role == config.RoleWorker {
				pool = l.Workers
			}
			var d domainXML
			if err := xml.Unmarshal([]byte(h.sh(t, "virsh --connect qemu:///system dumpxml "+n.Name)), &d); err != nil {
				t.Fatal(err)
			}
			if uuid := strings.TrimSpace(stdout[n.Name+"-domain"]); d.UUID != uuid {
				t.Errorf("domain create printed %q, dumpxml says %q", uuid, d.UUID)
			}
			if d.VCPU != pool.CPUs || d.Memory.Value != int64(pool.MemoryMiB)*1024 || d.Memory.Unit != "KiB" {
				t.Errorf("domain has %d vCPUs and %d %s, want %d and %d MiB", d.VCPU, d.Memory.Value, d.Memory.Unit, pool.CPUs, pool.MemoryMiB)
			}
			mac := config.LibvirtMAC(l.Cluster.Name, n.Name)
			if len(d.Devices.Interfaces) != 1 || d.Devices.Interfaces[0].MAC.Address != mac ||
				d.Devices.Interfaces[0].Source.Network != h.network || d.Devices.Interfaces[0].Model.Type != "virtio" {
				t.Errorf("interfaces %+v, want one virtio NIC with MAC %s on %s", d.Devices.Interfaces, mac, h.network)
			}
			overlay := path.Join(h.imageDir, n.Name+".qcow2")
			var disks []string
			for _, dk := range d.Devices.Disks {
				if dk.Device == "disk" {
					disks = append(disks, dk.Source.File+":"+dk.Driver.Type+":"+dk.Serial)
				}
			}
			want := []string{overlay + ":qcow2:"}
			if n.Role == config.RoleWorker && pool.CephDiskGiB > 0 {
				want = append(want, path.Join(h.imageDir, n.Name+"-ceph.raw")+":raw:ceph")
			}
			if strings.Join(disks, " ") != strings.Join(want, " ") {
				t.Errorf("disks %v, want %v", disks, want)
			}
			var info struct {
				VirtualSize     int64  `json:"virtual-size"`
				BackingFilename string `json:"backing-filename"`
			}
			if err := json.Unmarshal([]byte(h.sh(t, "qemu-img info -U --output=json "+overlay)), &info); err != nil {
				t.Fatal(err)
			}
			if base := nodes.BaseImagePath(h.imageDir, m.Artifacts[artifacts.FCOSQemu]); info.BackingFilename != base || info.VirtualSize != int64(pool.DiskGiB)<<30 {
				t.Errorf("overlay backed by %q, %d bytes; want %s, %d GiB", info.BackingFilename, info.VirtualSize, base, pool.DiskGiB)
			}
			fwcfg := false
			for _, a := range d.QemuArgs {
				fwcfg = fwcfg || a.Value == "name=opt/com.coreos/config,file="+path.Join(h.imageDir, n.Name+".ign")
			}
			if !fwcfg {
				t.Errorf("no fw_cfg opt/com.coreos/config in the domain's qemu arguments: %+v", d.QemuArgs)
			}
			// What the node received, and applied.
			var ignCmd pulumimock.Command
			for _, c := range cmds {
				if c.Name == n.Name+"-ignition" {
					ignCmd = c
				}
			}
			cfg, _, err := ign.Parse([]byte(ignCmd.Stdin))
			if err != nil {
				t.Fatalf("the node's Ignition: %v", err)
			}
			r, waited := readReport(t, h, n.Name, 5*time.Minute)
			booted[n.Name] = r
			checkApplied(t, n.Name, cfg, r)
			t.Logf("%s: defined -> Ignition applied (report read) %.1f s after its domain create began (read took %.1f s)",
				n.Name, time.Since(defined[n.Name]).Seconds(), waited.Seconds())
		})
	}
	// Every remote file a node's Ignition names came from the artifact server.
	for _, name := range artifacts.NodeArtifacts {
		if p := m.Artifacts[name].Path; !strings.Contains(served.String(), p) {
			t.Errorf("the artifact server never served %s (%s); its log:\n%s", name, p, served.String())
		}
	}

	// A second create of a domain is a no-op: same UUID, nothing redefined.
	for _, c := range cmds {
		if strings.HasSuffix(c.Name, "-domain") {
			out, err := exec1(c, c.Create)
			if err != nil || out != stdout[c.Name] {
				t.Errorf("second create of %s printed %q (%v), want %q", c.Name, out, err, stdout[c.Name])
			}
		}
	}

	// A worker resized in place (docs/DAY2.md): its domain's update, as the
	// program declares it for the new size, shuts the machine down over
	// ACPI, sets the new vCPUs and memory and starts it again, keeping its
	// UUID (nothing keyed on it runs again); the node boots anew with them.
	// Run again, it changes nothing.
	t.Run("a worker resized in place restarts with its new size and UUID", func(t *testing.T) {
		worker := l.NodesByRole(config.RoleWorker)[0].Name
		bigger := *l
		bigger.Workers.CPUs, bigger.Workers.MemoryMiB = l.Workers.CPUs+1, l.Workers.MemoryMiB+256
		rec, err := pulumimock.Run("simlab", "libvirttest", func(ctx *pulumi.Context) error {
			_, err := infra.Deploy(ctx, &bigger)
			return err
		}, pulumimock.WithState(pulumimock.CommandOutputs))
		if err != nil {
			t.Fatal(err)
		}
		var domain pulumimock.Command
		for _, c := range rec.Commands() {
			if c.Name == worker+"-domain" {
				domain = c
			}
		}
		before, ok := booted[worker]
		if domain.Update == "" || !ok {
			t.Fatalf("no update script for %s-domain, or no first report of %s", worker, worker)
		}
		t0 := time.Now()
		out, err := exec1(domain, domain.Update)
		if err != nil {
			t.Fatalf("the domain's update: %v\n%s", err, out)
		}
		t.Logf("%s resized and restarted in %.1f s", worker, time.Since(t0).Seconds())
		if strings.TrimSpace(out) != strings.TrimSpace(stdout[worker+"-domain"]) {
			t.Errorf("the update printed %q, want the domain's UUID %q", out, stdout[worker+"-domain"])
		}
		var d domainXML
		if err := xml.Unmarshal([]byte(h.sh(t, "virsh --connect qemu:///system dumpxml "+worker)), &d); err != nil {
			t.Fatal(err)
		}
		if d.VCPU != bigger.Workers.CPUs || d.Memory.Value != int64(bigger.Workers.MemoryMiB)*1024 {
			t.Errorf("after the resize the domain has %d vCPUs and %d KiB, want %d and %d MiB", d.VCPU, d.Memory.Value, bigger.Workers.CPUs, bigger.Workers.MemoryMiB)
		}
		after, _ := readReport(t, h, worker, 5*time.Minute)
		if after.boot == "" || after.boot == before.boot {
			t.Errorf("boot ID %q after the resize, %q before: the machine did not boot again", after.boot, before.boot)
		}
		if after.cpus != bigger.Workers.CPUs || after.memKiB <= before.memKiB {
			t.Errorf("the node sees %d CPUs and %d KiB after the resize (%d and %d before), want %d CPUs and more memory",
				after.cpus, after.memKiB, before.cpus, before.memKiB, bigger.Workers.CPUs)
		}
		if out, err := exec1(domain, domain.Update); err != nil {
			t.Errorf("a second update: %v\n%s", err, out)
		}
		if again, _ := readReport(t, h, worker, time.Minute); again.boot != after.boot {
			t.Errorf("a second update restarted the machine (boot %s -> %s)", after.boot, again.boot)
		}
	})

	// The base image stays while an overlay uses it (docs/DAY2.md): its
	// delete run first, with both nodes' overlays still there, keeps it.
	basePath := nodes.BaseImagePath(h.imageDir, m.Artifacts[artifacts.FCOSQemu])
	for _, c := range cmds {
		if strings.HasPrefix(c.Name, l.Cluster.Name+"-fcos-image") {
			if out, err := exec1(c, c.Delete); err != nil {
				t.Errorf("delete %s with overlays on it: %v\n%s", c.Name, err, out)
			}
		}
	}
	if _, err := h.run("test -s "+basePath, "", nil); err != nil {
		t.Errorf("the base image %s went while overlays still use it", basePath)
	}

	// Delete, in reverse order, leaves no domain, disk, Ignition file or base image.
	t0 := time.Now()
	for i := len(cmds) - 1; i >= 0; i-- {
		c := cmds[i]
		if c.Delete == "" {
			continue
		}
		if out, err := exec1(c, c.Delete); err != nil {
			t.Errorf("delete %s: %v\n%s", c.Name, err, out)
		}
	}
	t.Logf("all deletes: %.1f s", time.Since(t0).Seconds())
	if left := strings.TrimSpace(h.sh(t, "virsh --connect qemu:///system list --all --name")); left != "" {
		t.Errorf("domains left after delete: %s", left)
	}
	if left := strings.TrimSpace(h.sh(t, "ls -A "+h.imageDir+" 2>/dev/null || true")); left != "" {
		t.Errorf("files left in %s after delete: %s", h.imageDir, left)
	}

	// Faults: each a clear error naming the node or artifact, nothing half-made left.
	byName := map[string]pulumimock.Command{}
	for _, c := range cmds {
		byName[c.Name] = c
	}
	t.Run("a domain of the node's name that is not the node is refused", func(t *testing.T) {
		node := l.Nodes()[0].Name
		xmlFile := path.Join(h.imageDir + "-foreign.xml")
		h.sh(t, fmt.Sprintf(`cat > %s <<'XML'
<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os>
<devices><interface type='network'><source network='%s'/><mac address='52:54:00:00:00:01'/></interface></devices></domain>
XML
virsh --connect qemu:///system define %s >/dev/null && rm -f %s`, xmlFile, node, h.network, xmlFile, xmlFile))
		defer h.run("virsh --connect qemu:///system undefine "+node, "", nil)
		_, err := exec1(byName[node+"-domain"], byName[node+"-domain"].Create)
		if err == nil || !strings.Contains(err.Error(), "domain "+node+" already exists on hypervisor 127.0.0.1 but is not this node") {
			t.Fatalf("create over a foreign domain: %v", err)
		}
		if mem := h.sh(t, "virsh --connect qemu:///system dominfo "+node); !strings.Contains(mem, "65536 KiB") {
			t.Errorf("the foreign domain was changed:\n%s", mem)
		}
	})
	t.Run("a base image missing from the artifact server leaves nothing", func(t *testing.T) {
		img := filepath.Join(mirror, filepath.FromSlash(m.Artifacts[artifacts.FCOSQemu].Path))
		if err := os.Rename(img, img+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(img+".away", img)
		var base pulumimock.Command
		for _, c := range cmds {
			if strings.HasPrefix(c.Name, l.Cluster.Name+"-fcos-image") {
				base = c
			}
		}
		_, err := exec1(base, base.Create)
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Fatalf("base image create with the image missing upstream: %v, want curl's 404", err)
		}
		if left := strings.TrimSpace(h.sh(t, "ls -A "+h.imageDir+" 2>/dev/null || true")); left != "" {
			t.Errorf("left in %s after a failed download: %s", h.imageDir, left)
		}
		exec1(base, base.Delete)
	})

	var controller, worker string
	for _, n := range l.Nodes() {
		if n.Role == config.RoleWorker && worker == "" {
			worker = n.Name
		} else if n.Role == config.RoleController && controller == "" {
			controller = n.Name
		}
	}
	var baseCmd pulumimock.Command
	for _, c := range cmds {
		if strings.HasPrefix(c.Name, l.Cluster.Name+"-fcos-image") {
			baseCmd = c
		}
	}
	mustRun := func(t *testing.T, c pulumimock.Command, script string) {
		t.Helper()
		if out, err := exec1(c, script); err != nil {
			t.Fatalf("%s: %v\n%s", c.Name, err, out)
		}
	}
	lsImages := func(t *testing.T) string {
		t.Helper()
		return strings.Join(strings.Fields(h.sh(t, "ls -A "+h.imageDir+" 2>/dev/null || true")), " ")
	}
	domains := func(t *testing.T) string {
		t.Helper()
		return strings.TrimSpace(h.sh(t, "virsh --connect qemu:///system list --all --name"))
	}

	t.Run("a domain whose qemu cannot start is not left defined", func(t *testing.T) {
		// The disks are there, the Ignition file is not: libvirt defines the
		// domain, qemu refuses to start without its fw_cfg file.
		mustRun(t, baseCmd, baseCmd.Create)
		defer exec1(baseCmd, baseCmd.Delete)
		disks := byName[controller+"-disks"]
		mustRun(t, disks, disks.Create)
		defer exec1(disks, disks.Delete)
		_, err := exec1(byName[controller+"-domain"], byName[controller+"-domain"].Create)
		t.Logf("the error: %v", err)
		if err == nil || !strings.Contains(err.Error(), "hypervisor 127.0.0.1: virt-install of node "+controller+" failed") {
			t.Fatalf("domain create without its Ignition file: %v", err)
		}
		if left := domains(t); left != "" {
			t.Errorf("a failed virt-install left domains defined: %s", left)
		}
	})

	// A full disk: a small tmpfs over the image directory (sshd runs in this
	// mount namespace, so the hypervisor's scripts see it).
	fill := func(t *testing.T, sizeKiB int64, keep ...string) {
		t.Helper()
		h.sh(t, fmt.Sprintf("mkdir -p %[1]s && mount -t tmpfs -o size=%[2]dk,mode=0755 simlab-full %[1]s", h.imageDir, sizeKiB))
		t.Cleanup(func() { h.run("umount "+h.imageDir+" && rmdir "+h.imageDir, "", nil) })
		for _, f := range keep {
			h.sh(t, "cp "+f+" "+h.imageDir+"/")
		}
	}
	fillUp := func(t *testing.T) {
		t.Helper()
		h.sh(t, "dd if=/dev/zero of="+h.imageDir+"/filler bs=64k 2>/dev/null || test -s "+h.imageDir+"/filler")
	}
	full := func(t *testing.T, err error, what string) {
		t.Helper()
		t.Logf("the error: %v", err)
		if err == nil || !strings.Contains(err.Error(), "hypervisor 127.0.0.1: "+what) || !strings.Contains(err.Error(), "No space left on device") ||
			!strings.Contains(err.Error(), "0 MiB free in "+h.imageDir) {
			t.Errorf("on a full disk: %v, want an error with %q, ENOSPC and the free space", err, what)
		}
	}
	t.Run("a full disk fails the Ignition write, naming node and host, and leaves nothing", func(t *testing.T) {
		fill(t, 1024)
		fillUp(t)
		c := byName[controller+"-ignition"]
		_, err := exec1(c, c.Create)
		full(t, err, "writing node "+controller+"'s Ignition to "+path.Join(h.imageDir, controller+".ign")+" failed")
		if left := lsImages(t); left != "filler" {
			t.Errorf("left in %s: %s, want only the filler", h.imageDir, left)
		}
	})
	t.Run("a full disk fails the disks, naming node and host, and leaves nothing", func(t *testing.T) {
		base := nodes.BaseImagePath(h.imageDir, m.Artifacts[artifacts.FCOSQemu])
		st, err := os.Stat(h.baseImage)
		if err != nil {
			t.Fatal(err)
		}
		fill(t, st.Size()/1024+1024)
		h.sh(t, "cp "+h.baseImage+" "+base)
		fillUp(t)
		c := byName[worker+"-disks"]
		_, err = exec1(c, c.Create)
		full(t, err, "creating node "+worker+"'s disks in "+h.imageDir+" failed")
		if left, want := lsImages(t), path.Base(base)+" filler"; left != want {
			t.Errorf("left in %s: %s, want only %s", h.imageDir, left, want)
		}
	})
	for _, tc := range []struct{ name, what string }{
		{"download", "the download of"},
		{"decompressed image", "decompressed"},
	} {
		t.Run("too little space for the base image's "+tc.name+" is refused before writing", func(t *testing.T) {
			st, err := os.Stat(h.baseImage)
			if err != nil {
				t.Fatal(err)
			}
			xzSize := m.Artifacts[artifacts.FCOSQemu].Size
			size := xzSize / 2048 // half the download
			if tc.name != "download" {
				size = (xzSize + st.Size()/2) / 1024 // the download and half the image
			}
			fill(t, size)
			_, err = exec1(baseCmd, baseCmd.Create)
			t.Logf("the error: %v", err)
			if err == nil || !strings.Contains(err.Error(), "hypervisor 127.0.0.1: not enough space in "+h.imageDir+" for") ||
				!strings.Contains(err.Error(), tc.what) || !strings.Contains(err.Error(), "downloading base image") {
				t.Errorf("base image create with %d KiB: %v", size, err)
			}
			if left := lsImages(t); left != "" {
				t.Errorf("left in %s: %s", h.imageDir, left)
			}
		})
	}

	// libvirtd down (SSH still answers): creates and deletes fail naming
	// node and host, and a delete no longer passes with the domain there.
	t.Run("libvirtd stopped: the domain's create and delete fail naming node and host", func(t *testing.T) {
		h.sh(t, `pid=$(cat /run/libvirtd.pid); kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done`)
		defer h.sh(t, `libvirtd -d
for i in $(seq 1 100); do virsh --connect qemu:///system version >/dev/null 2>&1 && exit 0; sleep 0.1; done
virsh --connect qemu:///system version`)
		c := byName[controller+"-domain"]
		for _, step := range []struct{ name, script, consequence string }{
			{"create", c.Create, "node " + controller + " not created"},
			{"delete", c.Delete, "node " + controller + " not deleted"},
		} {
			_, err := exec1(c, step.script)
			t.Logf("%s: %v", step.name, err)
			if err == nil || !strings.Contains(err.Error(), "hypervisor 127.0.0.1: cannot reach libvirt at qemu:///system (is libvirtd running there?)") ||
				!strings.Contains(err.Error(), step.consequence) || !strings.Contains(err.Error(), "libvirt-sock") {
				t.Errorf("domain %s with libvirtd stopped: %v", step.name, err)
			}
		}
	})
	if left := domains(t); left != "" {
		t.Errorf("domains left after the faults: %s", left)
	}
}
