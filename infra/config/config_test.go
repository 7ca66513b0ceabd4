package config_test

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/simlab/simlab/infra/config"
)

func committedStacks(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../stacks/Pulumi.*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no committed stack files found: %v", err)
	}
	return files
}

func TestCommittedStacksValidate(t *testing.T) {
	for _, f := range committedStacks(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := config.LoadStackFile(f); err != nil {
				t.Fatalf("committed stack must validate:\n%v", err)
			}
		})
	}
}

func TestCommittedStackShapes(t *testing.T) {
	want := map[string]struct {
		provider           string
		controllers, works int
	}{
		"dev":   {config.ProviderLibvirt, 1, 2},
		"lab":   {config.ProviderMetal, 1, 6},
		"local": {config.ProviderExisting, 0, 0},
	}
	for name, w := range want {
		l, err := config.LoadStackFile("../../stacks/Pulumi." + name + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		if l.Provider != w.provider {
			t.Errorf("%s: provider %q, want %q", name, l.Provider, w.provider)
		}
		if got := len(l.NodesByRole(config.RoleController)); got != w.controllers {
			t.Errorf("%s: %d controllers, want %d", name, got, w.controllers)
		}
		if got := len(l.NodesByRole(config.RoleWorker)); got != w.works {
			t.Errorf("%s: %d workers, want %d", name, got, w.works)
		}
	}
}

// problems parses a stack document and returns its problems as lines.
func problems(t *testing.T, doc string) []string {
	t.Helper()
	_, err := config.ParseStackFile("Pulumi.test.yaml", []byte(doc))
	if err == nil {
		return nil
	}
	var errs *config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *config.Errors, got %T: %v", err, err)
	}
	return errs.Lines()
}

func contains(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

const validLibvirt = `config:
  simlab:provider: libvirt
  simlab:libvirt:
    host: hv.example.internal
  simlab:ssh:
    authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmKp4tXx6Wk test"]
    privateKeyPath: ~/.ssh/id_ed25519
  simlab:artifacts:
    url: http://10.0.0.1:8080
  simlab:simulator:
    sut:
      address: sut.example.internal:9000
`

func TestMinimalLibvirtStackIsValidWithDefaults(t *testing.T) {
	l, err := config.ParseStackFile("x.yaml", []byte(validLibvirt))
	if err != nil {
		t.Fatal(err)
	}
	if l.Cluster.PodCIDR != "10.244.0.0/16" || l.Workers.Count != 2 || l.Libvirt.URI != "qemu:///system" {
		t.Fatalf("defaults not applied: %+v", l.Config)
	}
	if l.Versions != config.DefaultVersions() {
		t.Fatalf("versions differ from defaults: %+v", l.Versions)
	}
}

func TestMisspelledKeyIsNamedWithLineAndSuggestion(t *testing.T) {
	doc := strings.Replace(validLibvirt, "  simlab:libvirt:\n", "  simlab:workers:\n    cout: 3\n  simlab:libvirt:\n", 1)
	lines := problems(t, doc)
	if len(lines) != 1 {
		t.Fatalf("want exactly one problem, got %q", lines)
	}
	want := `Pulumi.test.yaml:4: simlab:workers.cout: unknown key; did you mean "count"?`
	if !strings.HasPrefix(lines[0], want) {
		t.Fatalf("got %q\nwant prefix %q", lines[0], want)
	}
}

func TestUnknownTopLevelKeyIsRejected(t *testing.T) {
	lines := problems(t, validLibvirt+"  simlab:wrokers:\n    count: 3\n")
	if !contains(lines, `simlab:wrokers: unknown key; did you mean "workers"?`) {
		t.Fatalf("got %q", lines)
	}
}

func TestOtherNamespacesAreLeftAlone(t *testing.T) {
	if lines := problems(t, validLibvirt+"  kubernetes:context: foo\n  command:x: y\n"); lines != nil {
		t.Fatalf("keys outside simlab: must be ignored, got %q", lines)
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	doc := `config:
  simlab:provider: libvirt
  simlab:cluster:
    name: Bad_Name
    podCIDR: 10.96.0.0/12
  simlab:controllers:
    count: 2
  simlab:workers:
    count: -1
    cpus: "four"
  simlab:libvirt:
    host: ""
  simlab:artifacts:
    url: ftp://nope
  simlab:simulator:
    minWorkers: 3
    maxWorkers: 2
    sources:
      - {type: a, instances: 0, protocol: udp}
      - {type: a, instances: 1, protocol: tcp}
`
	lines := problems(t, doc)
	for _, want := range []string{
		`simlab:cluster.name: must be a lowercase DNS label`,
		`simlab:cluster.serviceCIDR: must not overlap simlab:cluster.podCIDR`,
		`simlab:controllers.count: must be odd (etcd needs a majority), got 2`,
		`simlab:workers.count: must be >= 0, got -1`,
		`Pulumi.test.yaml:10: simlab:workers.cpus: must be an integer, got string "four"`,
		`simlab:libvirt.host: must name the hypervisor host`,
		`simlab:ssh.authorizedKeys: must list at least one public key`,
		`simlab:ssh.privateKeyPath: must be set unless the secret simlab:sshPrivateKey is`,
		`simlab:artifacts.url: must be the http(s) base URL of the artifact server, got "ftp://nope"`,
		`simlab:simulator.maxWorkers: must be >= simlab:simulator.minWorkers (3), got 2`,
		`simlab:simulator.sources[0].instances: must be >= 1, got 0`,
		`simlab:simulator.sources[0].protocol: must be tcp or sftp, got "udp"`,
		`simlab:simulator.sources[1].type: "a" is also the type of simulator.sources[0]`,
		`simlab:simulator.sut.address: must be host:port`,
	} {
		if !contains(lines, want) {
			t.Errorf("missing problem %q in:\n  %s", want, strings.Join(lines, "\n  "))
		}
	}
}

func TestControllerCounts(t *testing.T) {
	for count, want := range map[int]string{
		0: "must be >= 1, got 0",
		2: "must be odd",
		3: "must be 1: highly available control planes are not supported yet",
	} {
		doc := validLibvirt + "  simlab:controllers:\n    count: " + itoa(count) + "\n"
		if lines := problems(t, doc); !contains(lines, "simlab:controllers.count: "+want) {
			t.Errorf("count %d: got %q", count, lines)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMetalCountsComeFromMachines(t *testing.T) {
	l, err := config.LoadStackFile("../../stacks/Pulumi.lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if l.Controllers.Count != 1 || l.Workers.Count != 6 {
		t.Fatalf("counts %d/%d, want 1/6", l.Controllers.Count, l.Workers.Count)
	}
	doc := `config:
  simlab:provider: metal
  simlab:workers: {count: 3}
  simlab:metal:
    machines:
      - {name: c1, role: controller, mac: "52:54:00:00:00:01", ip: 10.0.0.1}
      - {name: w1, role: worker, mac: "52:54:00:00:00:01", ip: 10.0.0.1}
      - {name: w2, role: boss, mac: "zz", ip: 10.0.0.300}
  simlab:ssh: {authorizedKeys: ["ssh-ed25519 AAAAC3Nza test"], privateKeyPath: /k}
  simlab:artifacts: {url: "http://10.0.0.2:8080"}
  simlab:simulator: {sut: {address: "s:1"}}
`
	lines := problems(t, doc)
	for _, want := range []string{
		`simlab:workers.count: is 3 but metal.machines lists 1 workers`,
		`simlab:metal.machines[1].mac: 52:54:00:00:00:01 is also the MAC of metal.machines[0]`,
		`simlab:metal.machines[1].ip: 10.0.0.1 is also the IP of metal.machines[0]`,
		`simlab:metal.machines[2].role: must be controller or worker, got "boss"`,
		`simlab:metal.machines[2].mac: must be a MAC address`,
		`simlab:metal.machines[2].ip: must be an IPv4 address, got "10.0.0.300"`,
	} {
		if !contains(lines, want) {
			t.Errorf("missing %q in:\n  %s", want, strings.Join(lines, "\n  "))
		}
	}
}

func TestSecureValueIsAcceptedAsPresent(t *testing.T) {
	doc := strings.Replace(validLibvirt, "    privateKeyPath: ~/.ssh/id_ed25519\n", "", 1) +
		"  simlab:sshPrivateKey:\n    secure: v1:AAAABBBBCCCC\n"
	l, err := config.ParseStackFile("x.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if l.SSHPrivateKey == "" {
		t.Fatal("secure value not taken as set")
	}
}

func TestFromPulumiEngineConfig(t *testing.T) {
	values := map[string]string{
		"simlab:provider":      "libvirt",
		"simlab:libvirt":       `{"host":"hv"}`,
		"simlab:ssh":           `{"authorizedKeys":["ssh-ed25519 AAAAC3Nza test"]}`,
		"simlab:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
		"simlab:artifacts":     `{"url":"http://10.0.0.1:8080"}`,
		"simlab:workers":       `{"count":5}`,
		"simlab:simulator":     `{"sut":{"address":"sut:9000"}}`,
		"kubernetes:context":   "ignored",
	}
	l, err := config.FromPulumi(values)
	if err != nil {
		t.Fatal(err)
	}
	if l.Workers.Count != 5 || l.SSHPrivateKey == "" || len(l.NodesByRole(config.RoleWorker)) != 5 {
		t.Fatalf("unexpected: workers=%d", l.Workers.Count)
	}

	values["simlab:workerz"] = `{"count":1}`
	values["simlab:workers"] = `{"count":"5"}`
	_, err = config.FromPulumi(values)
	var errs *config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want config errors, got %v", err)
	}
	lines := errs.Lines()
	if !contains(lines, `simlab:workerz: unknown key; did you mean "workers"?`) ||
		!contains(lines, `simlab:workers.count: must be an integer, got string "5"`) {
		t.Fatalf("got %q", lines)
	}
}

func TestSecretNeverAppearsInErrors(t *testing.T) {
	values := map[string]string{
		"simlab:provider":      "libvirt",
		"simlab:sshPrivateKey": "TOP-SECRET-KEY-MATERIAL",
	}
	_, err := config.FromPulumi(values)
	if err == nil {
		t.Fatal("want errors for the incomplete stack")
	}
	if strings.Contains(err.Error(), "TOP-SECRET") {
		t.Fatalf("secret leaked into error text: %v", err)
	}
}

func TestNodeNamesAreStableAcrossScaling(t *testing.T) {
	a := config.Default()
	a.Cluster.Name = "dev"
	b := a
	b.Workers.Count = 50
	na, nb := a.Nodes(), b.Nodes()
	for i := range na {
		if na[i] != nb[i] {
			t.Fatalf("node %d renamed when scaling: %v -> %v", i, na[i], nb[i])
		}
	}
	if len(nb) != 51 || nb[len(nb)-1].Name != "dev-worker-50" {
		t.Fatalf("got %d nodes, last %v", len(nb), nb[len(nb)-1])
	}
}

// engineConfig is a Pulumi context's view of config: a map of "simlab:key".
type engineConfig map[string]string

func (e engineConfig) GetConfig(key string) (string, bool) { v, ok := e[key]; return v, ok }

func TestFromEngineAsksForEveryKey(t *testing.T) {
	t.Setenv("PULUMI_CONFIG", "")
	e := engineConfig{
		"simlab:provider":  "existing",
		"simlab:existing":  `{"kubeconfig":"/tmp/kc"}`,
		"simlab:simulator": `{"maxWorkers":7,"sut":{"address":"sut:9000"}}`,
		"simlab:workerz":   `{"count":1}`, // invisible: the SDK cannot list keys
	}
	l, err := config.FromEngine(e)
	if err != nil {
		t.Fatal(err)
	}
	if l.Provider != config.ProviderExisting || l.Existing.Kubeconfig != "/tmp/kc" || l.Simulator.MaxWorkers != 7 {
		t.Fatalf("config not read through the engine: provider=%q existing=%+v maxWorkers=%d",
			l.Provider, l.Existing, l.Simulator.MaxWorkers)
	}
}

func TestFromEngineReportsUnknownKeysFromTheEnvironment(t *testing.T) {
	e := engineConfig{"simlab:provider": "existing", "simlab:existing": `{"kubeconfig":"/tmp/kc"}`}
	t.Setenv("PULUMI_CONFIG", `{"simlab:provider":"existing","simlab:simulater":"{}"}`)
	_, err := config.FromEngine(e)
	var errs *config.Errors
	if !errors.As(err, &errs) || !contains(errs.Lines(), `simlab:simulater: unknown key; did you mean "simulator"?`) {
		t.Fatalf("want the typo named, got %v", err)
	}
}

// The day-2 acknowledgement keys (docs/DAY2.md) are ordinary keys of the
// stack file, off by default.
func TestDay2AcknowledgementKeys(t *testing.T) {
	l, err := config.ParseStackFile("x.yaml", []byte(validLibvirt))
	if err != nil {
		t.Fatal(err)
	}
	if l.Controllers.Replace || l.Workers.Replace {
		t.Fatal("replacing machines must be off by default")
	}
	doc := validLibvirt + "  simlab:controllers:\n    replace: true\n  simlab:workers:\n    replace: true\n"
	if l, err = config.ParseStackFile("x.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if !l.Controllers.Replace || !l.Workers.Replace {
		t.Fatalf("simlab:controllers.replace / simlab:workers.replace not read: %+v %+v", l.Controllers, l.Workers)
	}
	if p := problems(t, validLibvirt+"  simlab:controllers:\n    replce: true\n"); !contains(p, `simlab:controllers.replce: unknown key; did you mean "replace"?`) {
		t.Errorf("a misspelt acknowledgement must be named: %v", p)
	}
}

// Your own Kafka and dataset claim replace the layer's, and only when it is off.
func TestOwnKafkaAndDatasetClaim(t *testing.T) {
	own := validLibvirt + `  simlab:storage:
    kafka: {enabled: false, bootstrap: "kafka.example:9092,kafka-2.example:9092"}
    nfs: {enabled: false, existingClaim: my-datasets}
`
	if lines := problems(t, own); lines != nil {
		t.Fatalf("your own Kafka and claim refused: %q", lines)
	}
	for doc, want := range map[string]string{
		validLibvirt + "  simlab:storage:\n    kafka: {enabled: false}\n":                           "simlab:simulator.enabled: needs simlab:storage.kafka.enabled or your own Kafka in simlab:storage.kafka.bootstrap",
		validLibvirt + "  simlab:storage:\n    nfs: {enabled: false}\n":                             "simlab:simulator.enabled: needs simlab:storage.nfs.enabled or your own dataset claim in simlab:storage.nfs.existingClaim",
		validLibvirt + "  simlab:storage:\n    kafka: {enabled: true, bootstrap: \"k:9092\"}\n":     "simlab:storage.kafka.bootstrap: is your own Kafka, only with simlab:storage.kafka.enabled false",
		validLibvirt + "  simlab:storage:\n    kafka: {enabled: false, bootstrap: \"k:9092,k2\"}\n": `simlab:storage.kafka.bootstrap: must be host:port[,host:port...], got "k:9092,k2"`,
		validLibvirt + "  simlab:storage:\n    nfs: {enabled: true, existingClaim: mine}\n":         "simlab:storage.nfs.existingClaim: is your own dataset claim, only with simlab:storage.nfs.enabled false",
		validLibvirt + "  simlab:storage:\n    nfs: {enabled: false, existingClaim: My_Claim}\n":    `simlab:storage.nfs.existingClaim: must be a PersistentVolumeClaim name (lowercase DNS subdomain), got "My_Claim"`,
	} {
		if lines := problems(t, doc); !contains(lines, want) {
			t.Errorf("want a problem %q, got %q", want, lines)
		}
	}
}

// SFTP passwords are named by environment variable, a host key must parse, and a stack with an
// sftp source needs a host key or an SSH key to derive one from.
func TestSFTPSettings(t *testing.T) {
	sftp := `    sources:
      - {type: files, instances: 2, protocol: sftp}
`
	existing := `config:
  simlab:provider: existing
  simlab:existing: {kubeconfig: /tmp/kc}
  simlab:simulator:
` + sftp
	ok := validLibvirt + sftp + `    sftp:
      passwords:
        ROUTER_PASSWORD: {secure: AAABAxyz}
      hostKey: {secure: AAABAabc}
`
	if lines := problems(t, ok); lines != nil {
		t.Fatalf("secret passwords and host key refused: %q", lines)
	}
	l, err := config.ParseStackFile("x.yaml", []byte(validLibvirt+sftp))
	if err != nil {
		t.Fatalf("an sftp source with the stack's SSH key (to derive the host key from): %v", err)
	}
	if !l.Simulator.HasSFTP() {
		t.Error("HasSFTP is false for a stack with an sftp source")
	}
	for doc, want := range map[string]string{
		validLibvirt + sftp + "    sftp:\n      passwords: {9LIVES: x}\n": "simlab:simulator.sftp.passwords.9LIVES: must be named like an environment variable",
		validLibvirt + sftp + "    sftp:\n      hostKey: not-a-key\n":     "simlab:simulator.sftp.hostKey: must be an unencrypted private key (OpenSSH or PEM)",
		existing: "simlab:simulator.sftp.hostKey: must be set when a source uses sftp and the stack has no SSH private key",
		validLibvirt + sftp + "    sftp:\n      hostkey: x\n": `simlab:simulator.sftp.hostkey`,
	} {
		if lines := problems(t, doc); !contains(lines, want) {
			t.Errorf("want a problem %q, got %q", want, lines)
		}
	}
	if lines := problems(t, existing+"    sftp:\n      hostKey: {secure: AAABAabc}\n"); lines != nil {
		t.Errorf("an existing cluster with its own host key refused: %q", lines)
	}
}

func TestScaleDownWindow(t *testing.T) {
	l, err := config.ParseStackFile("x.yaml", []byte(validLibvirt))
	if err != nil {
		t.Fatal(err)
	}
	if l.Simulator.ScaleDownSeconds != 300 {
		t.Errorf("default scale-down window %d s, want Kubernetes' 300", l.Simulator.ScaleDownSeconds)
	}
	doc := validLibvirt + "    scaleDownStabilizationSeconds: 4000\n"
	if lines := problems(t, doc); !contains(lines, "simlab:simulator.scaleDownStabilizationSeconds: must be 0-3600") {
		t.Errorf("got %q", lines)
	}
}

// How long and for what `pulumi up` waits on the storage layer's operators.
func TestStorageReadiness(t *testing.T) {
	l, err := config.ParseStackFile("x.yaml", []byte(validLibvirt))
	if err != nil {
		t.Fatal(err)
	}
	if l.Storage.ReadyTimeout() != config.DefaultReadyTimeoutMinutes*60 || l.Storage.Ceph.ReadyHealth != "" {
		t.Fatalf("defaults: timeout %d s, readyHealth %q", l.Storage.ReadyTimeout(), l.Storage.Ceph.ReadyHealth)
	}
	doc := validLibvirt + "  simlab:storage:\n    readyTimeoutMinutes: 45\n    ceph:\n      enabled: true\n      readyHealth: HEALTH_WARN\n"
	if l, err = config.ParseStackFile("x.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if l.Storage.ReadyTimeout() != 45*60 || l.Storage.Ceph.ReadyHealth != config.CephHealthWarn {
		t.Fatalf("read: timeout %d s, readyHealth %q", l.Storage.ReadyTimeout(), l.Storage.Ceph.ReadyHealth)
	}
	bad := validLibvirt + "  simlab:storage:\n    readyTimeoutMinutes: -1\n    ceph:\n      enabled: true\n      readyHealth: HEALTH_ERR\n"
	p := problems(t, bad)
	if !contains(p, `simlab:storage.ceph.readyHealth: must be HEALTH_OK or HEALTH_WARN, got "HEALTH_ERR"`) ||
		!contains(p, `simlab:storage.readyTimeoutMinutes: must be >= 0 (0: 20), got -1`) {
		t.Errorf("bad readiness settings: %v", p)
	}
}
