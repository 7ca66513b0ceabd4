//go:build rehearse

package rehearse

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"golang.org/x/crypto/ssh"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/image"
	"github.com/simlab/simlab/infra/workloads"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/sink"
	"github.com/simlab/simlab/tests/engine"
)

// The rehearsal's workloads (docs/REHEARSAL.md). The simulator runs from the
// repository's chart with the values the program gives it, its image built
// here; Kafka and the dataset share are stand-ins, since Strimzi's, Rook's and
// an NFS server's images cannot be had here: the stack uses its own-Kafka and
// own-claim keys (docs/STORAGE.md), so the storage layer registers nothing.
const (
	simNamespace = "simulator"
	// kafkaService is the stand-in Kafka: `simulator broker` (kfake, in
	// memory) in a pod, advertising its Service.
	kafkaService = "kafka"
	kafkaPort    = 9092
	// sinkService is the system under test: `simulator sink` in a pod.
	sinkService = "sink"
	sinkPort    = 7000
	// datasetClaim is the stand-in dataset share: a hostPath volume on the
	// worker, bound to the claim the stack names.
	datasetClaim = "rehearsal-datasets"
	datasetsDir  = "/var/lib/rehearsal/datasets"
	reportDir    = "/var/lib/rehearsal/sink"
	datasetName  = "rehearsal"
	// The dataset: one type of four TCP sources, 60,000 records each over
	// 60 s, and one of two SFTP sources (the sink pulls their files), 30 each.
	simType       = "type1"
	simInstances  = 4
	simRecords    = 60000
	simSpan       = 60 * time.Second
	sftpType      = "files1"
	sftpInstances = 2
	sftpRecords   = 30
	sftpPort      = 2222 // the chart's workers.sftpPort
	// The HPA on real CPU: 4,000 records/s keep one type1 worker well above
	// 10 % of its 500m request (~0.15 core measured), idle it is at 1-4 %;
	// a short scale-down window brings it back within the test's time.
	hpaTargetPercent    = 10
	hpaScaleDownSeconds = 15
	// sftpPassword is the SFTP sources' password, in the stack's
	// simlab:simulator.sftp.passwords (a secret in a real stack).
	sftpPassword = "rehearsal-sftp-password"
)

// simulatorStackConfig is the stack's simulator part: the sink as the SUT,
// the stand-ins as its own Kafka and dataset claim; with plainPassword the
// SFTP password in plain text (the metal stack, which only the mock engine
// reads), else set apart as a secret.
func simulatorStackConfig(plainPassword bool) string {
	passwords := ""
	if plainPassword {
		passwords = fmt.Sprintf("    sftp:\n      passwords: {%s: %s}\n", dataset.SFTPPasswordEnv, sftpPassword)
	}
	return fmt.Sprintf(`  simlab:storage:
    ceph:
      enabled: false
    kafka:
      enabled: false
      bootstrap: %[1]s.%[2]s.svc:%[3]d
    nfs:
      enabled: false
      existingClaim: %[4]s
  simlab:simulator:
    enabled: true
    namespace: %[2]s
    sut:
      address: %[5]s.%[2]s.svc:%[6]d
    dataset:
      path: /%[7]s
    minWorkers: 1
    maxWorkers: 2
    targetCPUPercent: %[13]d
    scaleDownStabilizationSeconds: %[14]d
    sources:
      - {type: %[8]s, instances: %[9]d, protocol: tcp}
      - {type: %[10]s, instances: %[11]d, protocol: sftp}
%[12]s`, kafkaService, simNamespace, kafkaPort, datasetClaim, sinkService, sinkPort, datasetName, simType, simInstances,
		sftpType, sftpInstances, passwords, hpaTargetPercent, hpaScaleDownSeconds)
}

// buildSimulatorImage writes the simulator image into the mirror, as
// `simlab image build` does, and returns its reference with digest.
func buildSimulatorImage(ctx context.Context, t *testing.T, root, mirror string, l *config.Loaded) string {
	t.Helper()
	ref := l.Simulator.Image + ":" + l.Versions.Simulator
	out := filepath.Join(mirror, artifacts.ImagesDir, "simulator")
	if err := os.RemoveAll(out); err != nil { // standin.Mirror's placeholder has no blobs
		t.Fatal(err)
	}
	var log bytes.Buffer
	if _, err := image.Build(ctx, image.Options{ModuleDir: root, Out: out, Ref: ref, Platforms: []string{"linux/amd64"}, Log: &log}); err != nil {
		t.Fatalf("building the simulator image: %v\n%s", err, log.String())
	}
	reg, err := artifacts.NewRegistry(mirror)
	if err != nil {
		t.Fatal(err)
	}
	d, err := reg.Digest(ref)
	if err != nil {
		t.Fatal(err)
	}
	return ref + "@" + d
}

// standInObjects are the rehearsal's own objects: the namespace and the
// dataset claim (a user's, with the own-claim key) and the stand-in Kafka,
// which the simulator needs before it is ready; and the sink, the SUT, whose
// password comes from the program's Secret. node is the worker that holds the
// dataset and the sink's report.
func standInObjects(img, node string) (cluster, sut string) {
	// The SUT pulls each SFTP source from the type's worker Service.
	var pulls strings.Builder
	for i := 1; i <= sftpInstances; i++ {
		fmt.Fprintf(&pulls, ", --sftp-pull, %s-ne%05d@%s.%s.svc:%d", sftpType, i, workerDeployment(sftpType), simNamespace, sftpPort)
	}
	// Both documents take the same arguments, by index.
	args := []any{simNamespace, datasetClaim, datasetsDir, node, kafkaService, img, kafkaPort, sinkService, sinkPort,
		datasetName, workloads.ReleaseName, reportDir, dataset.SFTPPasswordEnv, pulls.String(), config.SFTPPasswordsSecret}
	cluster = fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: %[2]s}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: %[1]s, name: %[2]s}
  hostPath: {path: %[3]s, type: Directory}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [%[4]s]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: %[2]s
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[5]s, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[5]s}}
  template:
    metadata: {labels: {app: %[5]s}}
    spec:
      containers:
        - name: broker
          image: %[6]s
          args: [broker, --listen, ":%[7]d", --advertise, "%[5]s.%[1]s.svc:%[7]d"]
          ports: [{containerPort: %[7]d}]
          readinessProbe: {tcpSocket: {port: %[7]d}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: %[5]s, namespace: %[1]s}
spec:
  selector: {app: %[5]s}
  ports: [{port: %[7]d, targetPort: %[7]d}]
`, args...)
	sut = fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[8]s, namespace: %[1]s, labels: {app: %[8]s}}
spec:
  nodeName: %[4]s
  restartPolicy: Never
  terminationGracePeriodSeconds: 60
  containers:
    - name: sink
      image: %[6]s
      args: [sink, --listen, ":%[9]d", --dataset, /data/%[10]s, --report, /report/report.json,
        --controller-url, "http://%[11]s-controller.%[1]s.svc:8080",
        --sftp-password-env, %[13]s%[14]s]
      env:
        - name: %[13]s
          valueFrom: {secretKeyRef: {name: %[15]s, key: %[13]s}}
      ports: [{containerPort: %[9]d}]
      readinessProbe: {tcpSocket: {port: %[9]d}, periodSeconds: 1}
      volumeMounts:
        - {name: data, mountPath: /data, readOnly: true}
        - {name: report, mountPath: /report}
  volumes:
    - {name: data, hostPath: {path: %[3]s, type: Directory}}
    - {name: report, hostPath: {path: %[12]s, type: Directory}}
---
apiVersion: v1
kind: Service
metadata: {name: %[8]s, namespace: %[1]s}
spec:
  selector: {app: %[8]s}
  ports: [{port: %[9]d, targetPort: %[9]d}]
`, args...)
	return cluster, sut
}

// workerDeployment names a type's worker Deployment, HPA and Service, as the
// chart does.
func workerDeployment(typ string) string { return workloads.ReleaseName + "-worker-" + typ }

// workloadsStackName is the stack the real engine deploys the workloads with.
const workloadsStackName = "rehearsal-workloads"

// workloadsStack is the program under the real engine (tests/engine) for an
// existing-cluster stack on the rehearsal's cluster: its kubeconfig, the
// rehearsal's mirror (the simulator image's digest), the stack's SSH key (it
// seeds the SFTP host key) and the same simulator part as the metal stack.
// The nodes and cluster layers are the rehearsal runner's (pulumi-command is
// not served); everything above them is the engine's.
func workloadsStack(ctx context.Context, t *testing.T, e *env, root, kubeconfig string) *engine.Lab {
	t.Helper()
	t.Setenv("SIMLAB_BIN_DIR", e.bin)
	tools, err := engine.FindTools(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.work, "engine")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lab, err := engine.Open(ctx, engine.Options{Root: root, Tools: tools, Dir: dir, Stack: workloadsStackName})
	if err != nil {
		t.Fatal(err)
	}
	stack := fmt.Sprintf(`config:
  simlab:cluster:
    name: %s
  simlab:provider: existing
  simlab:existing:
    kubeconfig: %s
  simlab:ssh:
    privateKeyPath: %s
  simlab:artifacts:
    dir: %s
%s`, clusterName, kubeconfig, filepath.Join(e.work, "id_ed25519"), filepath.Join(e.work, "mirror"), simulatorStackConfig(false))
	if err := os.WriteFile(filepath.Join(lab.ProjectDir, "Pulumi."+workloadsStackName+".yaml"), []byte(stack), 0o644); err != nil {
		t.Fatal(err)
	}
	// As a user sets it: pulumi config set --secret --path.
	if err := lab.SetSecret(ctx, "simlab:simulator.sftp.passwords."+dataset.SFTPPasswordEnv, sftpPassword); err != nil {
		t.Fatal(err)
	}
	return lab
}

// checkStateHasNoPlainSecret reads every file of the state backend: none may
// hold a secret in plain text (the provider keeps the Secrets' data as
// Pulumi secrets, encrypted with the stack's passphrase).
func checkStateHasNoPlainSecret(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("the state file %s holds %q in plain text", p, s)
			}
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("reading the state in %s: %v (%d files)", dir, err, files)
	}
}

// engineLog writes the engine's progress of one operation into the test log.
func engineLog(t *testing.T, op string) io.Writer {
	return logWriter{t: t, prefix: "pulumi " + op + ": "}
}

type logWriter struct {
	t      *testing.T
	prefix string
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			w.t.Log(w.prefix + l)
		}
	}
	return len(p), nil
}

// sftpHostKey is the SSH host key an SFTP worker presents at addr, read by an
// SSH handshake through a tunnel from the controller node (the login itself
// is refused: no user is given a password here).
func sftpHostKey(t *testing.T, ctrl *ssh.Client, addr string) ssh.PublicKey {
	t.Helper()
	var key ssh.PublicKey
	var err error
	for i := 0; i < 120; i++ { // the connection may be refused for a moment
		var conn net.Conn
		if conn, err = ctrl.Dial("tcp", addr); err == nil {
			_, _, _, err = ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: "nobody", Timeout: 5 * time.Second,
				HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { key = k; return nil }})
			conn.Close()
			if key != nil {
				return key
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no SSH host key from %s: %v", addr, err)
	return nil
}

// tarDir packs dir's files as a tar stream rooted at name.
func tarDir(t *testing.T, dir, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(filepath.Join(name, rel))
		h.Mode = 0o755
		if !d.IsDir() {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// simulatorDiagnosis is what a failure in the simulator's namespace prints:
// each pod's last log lines, with pods' placement and events when scheduling
// is in question. k is the kubectl prefix.
func simulatorDiagnosis(ctrl *ssh.Client, k string, scheduling bool) string {
	kc := strings.TrimSpace(k) + " -n " + simNamespace
	script := fmt.Sprintf(`for p in $(%[1]s get pods -o name); do echo "== $p"; %[1]s logs --tail=40 $p; done`, kc)
	if scheduling {
		script = fmt.Sprintf("%[1]s get pods -o wide; %[1]s describe pods | tail -80; ", kc) + script
	}
	out, _ := sshIn(ctrl, script, nil)
	return out
}

// replicaWatch polls an HPA's current replicas until stopped.
type replicaWatch struct {
	done chan struct{}
	max  chan int
}

// watchReplicas starts polling the HPA every 2 s over its own SSH sessions.
func watchReplicas(ctrl *ssh.Client, k, hpa string) *replicaWatch {
	w := &replicaWatch{done: make(chan struct{}), max: make(chan int, 1)}
	go func() {
		most := 0
		for {
			out, err := sshIn(ctrl, k+fmt.Sprintf("-n %s get hpa %s -o jsonpath='{.status.currentReplicas}'", simNamespace, hpa), nil)
			if n, cerr := strconv.Atoi(strings.TrimSpace(out)); err == nil && cerr == nil && n > most {
				most = n
			}
			select {
			case <-w.done:
				w.max <- most
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return w
}

// stop ends the watch and returns the most replicas seen.
func (w *replicaWatch) stop() int {
	close(w.done)
	return <-w.max
}

// checkSFTPHostKey checks that the SFTP worker presents the host key the
// program derived from the stack's SSH key (asked at the pod's own address),
// and that the pod replacing it after a restart loads the same one.
func checkSFTPHostKey(t *testing.T, e *env, ctrl *ssh.Client, k string) {
	t.Helper()
	sshKey, err := os.ReadFile(filepath.Join(e.work, "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	derived, err := workloads.DeriveSFTPHostKey(string(sshKey), simNamespace)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey([]byte(derived))
	if err != nil {
		t.Fatal(err)
	}
	want := ssh.FingerprintSHA256(signer.PublicKey())
	deploy := "deploy/" + workerDeployment(sftpType)
	pod := func() (name, ip string) {
		out := mustSSH(t, ctrl, k+fmt.Sprintf("-n %s get pods -l simlab.io/source-type=%s --field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}'", simNamespace, sftpType))
		lines := strings.Fields(strings.TrimSpace(out))
		if len(lines) != 2 {
			t.Fatalf("want one running SFTP worker pod, got %q", out)
		}
		return lines[0], lines[1]
	}
	before, ip := pod()
	if got := ssh.FingerprintSHA256(sftpHostKey(t, ctrl, net.JoinHostPort(ip, strconv.Itoa(sftpPort)))); got != want {
		t.Errorf("the SFTP worker %s presents host key %s, want %s (derived from the stack's SSH key)", before, got, want)
	}
	if out, err := sshIn(ctrl, fmt.Sprintf("set -e\n%[1]s -n %[2]s rollout restart %[3]s\n%[1]s -n %[2]s rollout status %[3]s --timeout=180s\n%[1]s -n %[2]s wait --for=delete pod/%[4]s --timeout=120s",
		strings.TrimSpace(k), simNamespace, deploy, before), nil); err != nil {
		t.Fatalf("restarting the SFTP worker: %v\n%s", err, out)
	}
	after, _ := pod()
	if after == before {
		t.Fatalf("the SFTP worker pod %s was not replaced", before)
	}
	// The new pod opens its SFTP server with the first run that gives it sftp
	// sources; the key it loaded at start is in its log.
	logged := mustSSH(t, ctrl, k+fmt.Sprintf("-n %s logs %s", simNamespace, after))
	if !strings.Contains(logged, `"msg":"sftp host key","fingerprint":"`+want+`"`) {
		t.Errorf("after a restart the SFTP worker %s did not load host key %s:\n%s", after, want, logged)
	}
	t.Logf("SFTP host key %s served by %s and loaded again by %s after a restart", want, before, after)
}

// rehearseWorkloads installs the simulator and its stand-ins, replays a
// campaign to the sink pod and uninstalls everything again.
func rehearseWorkloads(t *testing.T, e *env, root string, run *runner, ctrl *ssh.Client, img string, tm *timings) {
	ctx := context.Background()
	k := "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf "
	w := machines[1]
	worker := run.ssh(w.ip)

	// The dataset, on the worker's disk behind the claim.
	t0 := time.Now()
	local := filepath.Join(e.work, "datasets", datasetName)
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span = 1, simInstances, simRecords, simSpan
	if err := dataset.Generate(local, o); err != nil {
		t.Fatal(err)
	}
	// The SFTP type, generated beside it and moved in (Generate wants an empty directory).
	so := o
	so.Types, so.SourcesPer, so.RecordsPer, so.Protocol, so.TypePrefix = 1, sftpInstances, sftpRecords, dataset.ProtoSFTP, strings.TrimSuffix(sftpType, "1")
	sftpDir := filepath.Join(e.work, "datasets-sftp")
	if err := dataset.Generate(sftpDir, so); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(sftpDir, sftpType), filepath.Join(local, sftpType)); err != nil {
		t.Fatal(err)
	}
	ds, err := dataset.Load(local)
	if err != nil {
		t.Fatal(err)
	}
	// The sftp workers' spool on the share (the chart's simulator.sftpSpoolSubPath for the
	// release): made by the share's admin for the workers' user, as DATASET.md asks, since the
	// kubelet would create it as root.
	spool := path.Join(datasetsDir, ".simulator-sftp", workloads.ReleaseName)
	if out, err := sshIn(worker, fmt.Sprintf("sudo mkdir -p %[1]s %[2]s %[3]s && sudo chmod 0777 %[2]s && sudo chown 65532:65532 %[3]s && sudo tar -x -C %[1]s",
		datasetsDir, reportDir, spool),
		tarDir(t, local, datasetName)); err != nil {
		t.Fatalf("copying the dataset to %s: %v\n%s", w.name, err, out)
	}

	// The stand-ins the simulator needs, then the program's workloads under the
	// real Pulumi engine and its Kubernetes provider (an existing-cluster stack
	// for this cluster: its Secrets and the chart), then the SUT.
	standIns, sut := standInObjects(img, w.name)
	if out, err := sshIn(ctrl, k+"apply -f -", []byte(standIns)); err != nil {
		t.Fatalf("applying the stand-ins: %v\n%s", err, out)
	}
	kubeconfig := filepath.Join(e.work, "admin.conf")
	if err := os.WriteFile(kubeconfig, []byte(mustSSH(t, ctrl, "sudo cat /etc/kubernetes/admin.conf")), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := workloadsStack(ctx, t, e, root, kubeconfig)
	if _, err := lab.Stack.Up(ctx, optup.ProgressStreams(engineLog(t, "up"))); err != nil {
		t.Fatalf("%s\npulumi up (the workloads on this cluster): %v", simulatorDiagnosis(ctrl, k, true), err)
	}
	tm.mark("pulumi up: the simulator's Secrets and chart by the engine", t0)
	t0 = time.Now()
	if _, err := lab.Stack.Up(ctx, optup.ExpectNoChanges(), optup.ProgressStreams(engineLog(t, "up again"))); err != nil {
		t.Errorf("a second pulumi up with nothing changed is not a no-op: %v", err)
	}
	tm.mark("pulumi up again: no changes", t0)
	checkStateHasNoPlainSecret(t, lab.StateDir, sftpPassword, "PRIVATE KEY")
	t0 = time.Now()
	if out, err := sshIn(ctrl, k+"apply -f -", []byte(sut)); err != nil {
		t.Fatalf("applying the sink: %v\n%s", err, out)
	}
	images := mustSSH(t, ctrl, k+fmt.Sprintf("-n %s get deploy -l app.kubernetes.io/instance=%s -o jsonpath='{.items[*].spec.template.spec.containers[*].image}'", simNamespace, workloads.ReleaseName))
	if f := strings.Fields(images); len(f) != 3 || strings.Count(images, img) != 3 {
		t.Errorf("the simulator's Deployments run %q, want the mirror's image by digest %s in each of the 3", images, img)
	}
	wait := fmt.Sprintf(`set -e
%[1]s -n %[2]s rollout status deploy/%[3]s --timeout=180s
%[1]s -n %[2]s wait --for=condition=Ready pod/%[4]s --timeout=180s
%[1]s -n %[2]s rollout status deploy/%[5]s --timeout=180s
%[1]s -n %[2]s rollout status deploy/%[6]s --timeout=180s
%[1]s -n %[2]s rollout status deploy/%[7]s --timeout=180s
%[1]s -n %[2]s get pods -o wide`, strings.TrimSpace(k), simNamespace, kafkaService, sinkService, workloads.ReleaseName+"-controller",
		workerDeployment(simType), workerDeployment(sftpType))
	if out, err := sshIn(ctrl, wait, nil); err != nil {
		t.Fatalf("%s\nthe simulator's pods did not come up: %v\n%s", simulatorDiagnosis(ctrl, k, true), err, out)
	} else {
		t.Logf("simulator pods:\n%s", out)
	}
	tm.mark("the sink and every simulator pod running", t0)

	// A campaign from this machine, as a user runs it: --stack finds the namespace, the
	// controller's Service and the SUT from the stack file, and goes through the API server's
	// proxy with the stack's kubeconfig (simlab:existing.kubeconfig). Load, start, watch, stop,
	// report.
	t0 = time.Now()
	thresholds := filepath.Join(e.work, "thresholds.txt")
	if err := os.WriteFile(thresholds, []byte("lost == 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	camp := exec.Command(e.simlab, "campaign", "run", "--stack", workloadsStackName, "--stacks-dir", lab.ProjectDir, "--dataset", local,
		"--start-in", "5s", "--thresholds", thresholds, "--out", filepath.Join(e.work, "campaigns"), "--settle", "20s")
	hpa := watchReplicas(ctrl, k, workerDeployment(simType))
	out, err := camp.CombinedOutput()
	scaledTo := hpa.stop()
	if err != nil {
		// The campaign's own words last: a CI log shows the tail.
		t.Fatalf("%s\nsimlab campaign run: %v\n%s", simulatorDiagnosis(ctrl, k, false), err, out)
	}
	t.Logf("simlab campaign run:\n%s", out)
	checkHPAReadsCPU(t, ctrl, k, simType, sftpType)
	tm.mark("campaign replayed to the sink pod", t0)
	t0 = time.Now()
	if scaledTo != 2 {
		t.Errorf("during the campaign the HPA of %s scaled its workers to at most %d, want maxWorkers 2 (real CPU above %d%%)", simType, scaledTo, hpaTargetPercent)
	}
	back := fmt.Sprintf(`for i in $(seq 240); do
  r=$(%[1]s -n %[2]s get deploy %[3]s -o jsonpath='{.status.replicas}')
  [ "$r" = 1 ] && exit 0
  sleep 1
done
%[1]s -n %[2]s describe hpa %[3]s; exit 1`, strings.TrimSpace(k), simNamespace, workerDeployment(simType))
	if out, err := sshIn(ctrl, back, nil); err != nil {
		t.Errorf("the HPA did not scale %s back to 1 worker after the campaign: %v\n%s", simType, err, out)
	}
	tm.mark("HPA scaled type1 back to 1 worker", t0)

	// The sink's own count, written when it stops.
	if out, err := sshIn(ctrl, k+fmt.Sprintf("-n %s delete pod %s --timeout=90s", simNamespace, sinkService), nil); err != nil {
		t.Fatalf("stopping the sink: %v\n%s", err, out)
	}
	repJSON := mustSSH(t, worker, "sudo cat "+reportDir+"/report.json")
	var rep sink.Report
	if err := json.Unmarshal([]byte(repJSON), &rep); err != nil {
		t.Fatalf("the sink's report: %v\n%s", err, repJSON)
	}
	want := int64(ds.RecordCount())
	if tot := rep.Total; tot == nil {
		t.Fatalf("the sink's report has no total:\n%s", repJSON)
	} else if tot.Expected != want || tot.Received != want || tot.Lost != 0 || tot.Early != 0 || rep.Unknown != 0 || rep.Unparsed != 0 {
		t.Errorf("the sink pod: expected %d received %d lost %d early %d unknown %d unparsed %d; the dataset has %d records",
			tot.Expected, tot.Received, tot.Lost, tot.Early, rep.Unknown, rep.Unparsed, want)
	}
	if len(rep.Unavailable) > 0 {
		t.Errorf("the sink pod could not judge %v", rep.Unavailable)
	}
	t.Logf("sink pod: %d records, lateness p50 %.2f ms p99 %.2f ms max %.2f ms", rep.Total.Received, rep.Total.LateP50ms, rep.Total.LateP99ms, rep.Total.LateMaxms)
	if f := rep.Types[sftpType]; f == nil || f.Received != sftpInstances*sftpRecords {
		t.Errorf("the sink pod pulled %+v of the SFTP type, want all %d files (the password came from the program's Secret)", f, sftpInstances*sftpRecords)
	}
	checkSFTPHostKey(t, e, ctrl, k)

	// pulumi destroy of the workloads stack: nothing of the program's is left;
	// then the stand-ins.
	t0 = time.Now()
	if _, err := lab.Stack.Destroy(ctx, optdestroy.ProgressStreams(engineLog(t, "destroy"))); err != nil {
		t.Fatalf("pulumi destroy (the workloads): %v", err)
	}
	left := mustSSH(t, ctrl, k+fmt.Sprintf("-n %s get deploy,hpa,svc,secret,cm -l app.kubernetes.io/instance=%s -o name", simNamespace, workloads.ReleaseName))
	if strings.TrimSpace(left) != "" {
		t.Errorf("pulumi destroy left the program's objects: %s", left)
	}
	if out, err := sshIn(ctrl, k+"delete --wait --timeout=120s --ignore-not-found -f -", []byte(sut+"\n---\n"+standIns)); err != nil {
		t.Fatalf("deleting the stand-ins: %v\n%s", err, out)
	}
	tm.mark("simulator destroyed by the engine", t0)
}
