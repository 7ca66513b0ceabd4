package chart_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/workloads"
	"github.com/simlab/simlab/tests/localcluster"
)

// hpaJSON is the part of an autoscaling/v2 HorizontalPodAutoscaler the tests read.
type hpaJSON struct {
	Spec struct {
		MinReplicas, MaxReplicas int
	}
	Status struct {
		CurrentReplicas, DesiredReplicas int
		Conditions                       []struct{ Type, Status, Reason string }
		CurrentMetrics                   []struct {
			Resource struct {
				Current struct{ AverageUtilization *int }
			}
		}
	}
}

func (h hpaJSON) condition(typ string) (status, reason string) {
	for _, c := range h.Status.Conditions {
		if c.Type == typ {
			return c.Status, c.Reason
		}
	}
	return "", ""
}

// utilisation is the HPA's observed CPU utilisation (-1 before metrics arrive).
func (h hpaJSON) utilisation() int {
	if len(h.Status.CurrentMetrics) == 0 || h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization == nil {
		return -1
	}
	return *h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization
}

type deployJSON struct {
	Spec   struct{ Replicas *int }
	Status struct {
		Replicas, AvailableReplicas, UpdatedReplicas int
		Conditions                                   []struct{ Type, Status string }
	}
}

func (d deployJSON) replicas() int {
	if d.Spec.Replicas == nil {
		return -1
	}
	return *d.Spec.Replicas
}

// settled reports a Deployment Available with want replicas, all up to date
// and no surplus pods.
func (d deployJSON) settled(want int) bool {
	avail := false
	for _, c := range d.Status.Conditions {
		if c.Type == "Available" && c.Status == "True" {
			avail = true
		}
	}
	return avail && d.replicas() == want && d.Status.AvailableReplicas == want &&
		d.Status.UpdatedReplicas == want && d.Status.Replicas == want
}

// workerScale is one worker type's observed scale.
type workerScale struct {
	name          string
	min, max      int
	deploy        deployJSON
	hpa           hpaJSON
	highestSpec   int // highest spec.replicas seen on the Deployment
	highestWanted int // highest status.desiredReplicas seen on the HPA
}

func (w *workerScale) observe(ctx context.Context, c *localcluster.Cluster, ns string) error {
	if err := c.Get(ctx, "/apis/apps/v1/namespaces/"+ns+"/deployments/"+w.name, &w.deploy); err != nil {
		return err
	}
	if err := c.Get(ctx, "/apis/autoscaling/v2/namespaces/"+ns+"/horizontalpodautoscalers/"+w.name, &w.hpa); err != nil {
		return err
	}
	w.highestSpec = max(w.highestSpec, w.deploy.replicas())
	w.highestWanted = max(w.highestWanted, w.hpa.Status.DesiredReplicas)
	return nil
}

func (w *workerScale) String() string {
	st, re := w.hpa.condition("ScalingLimited")
	return fmt.Sprintf("%s: spec %d available %d/%d, HPA current %d desired %d utilisation %d%% ScalingLimited=%s/%s",
		w.name, w.deploy.replicas(), w.deploy.Status.AvailableReplicas, w.deploy.Status.Replicas,
		w.hpa.Status.CurrentReplicas, w.hpa.Status.DesiredReplicas, w.hpa.utilisation(), st, re)
}

// datasetVolume is what the storage layer provides: a ReadWriteMany claim
// bound to an NFS volume (nothing mounts it on simulated nodes).
func datasetVolume(ns, claim string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: %[1]s-datasets}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: nfs-test
  nfs: {server: nfs.example.invalid, path: /exports/datasets}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: nfs-test
  volumeName: %[1]s-datasets
  resources: {requests: {storage: 1Gi}}
`, ns, claim)
}

// TestClusterWorkersScaleOnCPUWithinPartitions applies the chart (the local
// stack's program values, a second type with only 2 partitions and a
// test-shortened scale-down window) to a real API server with simulated
// nodes, waits for every Deployment to be Available, raises the workers'
// simulated CPU far above the target and sees each HPA scale its workers up
// to exactly min(maxWorkers, partitions) and never beyond; then lowers it and
// sees them scale down to the minimum, not before the stabilisation window.
func TestClusterWorkersScaleOnCPUWithinPartitions(t *testing.T) {
	c := cluster(t)
	t.Parallel()
	const ns = "hpa-test"
	const window = 15 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	cfg := loadStack(t, "local")
	values := runProgram(t, "local", cfg).simulatorRelease(t).Values
	values = with(t, values, "workers.scaleDownStabilizationSeconds", int(window/time.Second))
	sources := append(get(values, "sources").([]any), map[string]any{"type": "alarm-logs", "instances": 2, "protocol": "tcp"})
	values = with(t, values, "sources", sources)
	withCPU := func(cpu string) map[string]any {
		return with(t, values, "workers.podAnnotations", map[string]any{localcluster.CPUAnnotation: cpu})
	}
	// pm-counters: 6 partitions, maxWorkers 3 -> 3; alarm-logs: 2 partitions -> 2;
	// alarm-files (sftp, 4 partitions): 3 too, as a tcp type (its workers share a spool).
	sources = append(sources, map[string]any{"type": "alarm-files", "instances": 4, "protocol": "sftp"})
	values = with(t, values, "sources", sources)
	workers := []*workerScale{
		{name: "simulator-worker-pm-counters", min: cfg.Simulator.MinWorkers, max: min(cfg.Simulator.MaxWorkers, 6)},
		{name: "simulator-worker-alarm-logs", min: cfg.Simulator.MinWorkers, max: 2},
		{name: "simulator-worker-alarm-files", min: cfg.Simulator.MinWorkers, max: min(cfg.Simulator.MaxWorkers, 4)},
	}
	if workers[0].max != 3 || workers[0].min != 1 {
		t.Fatalf("the local stack changed (min %d, max %d); adjust this test", workers[0].min, workers[0].max)
	}

	if err := c.Apply(ctx, []byte(datasetVolume(ns, str(values, "dataset", "claimName")))); err != nil {
		t.Fatal(err)
	}
	apply := func(v map[string]any) {
		t.Helper()
		if err := c.Apply(ctx, manifest(t, render(t, "simulator", ns, v))); err != nil {
			t.Fatal(err)
		}
	}
	observeAll := func(ctx context.Context) (string, error) {
		var s []string
		for _, w := range workers {
			if err := w.observe(ctx, c, ns); err != nil {
				return "", err
			}
			if w.highestSpec > w.max || w.highestWanted > w.max {
				return "", fmt.Errorf("%s went above maxReplicas %d: spec %d, desired %d", w.name, w.max, w.highestSpec, w.highestWanted)
			}
			s = append(s, w.String())
		}
		return strings.Join(s, "; "), nil
	}

	// Idle: every Deployment Available at the minimum, and the HPAs read metrics.
	apply(withCPU("1m"))
	err := localcluster.Poll(ctx, time.Second, "every Deployment Available and the HPAs reading CPU", func(ctx context.Context) (bool, string, error) {
		state, err := observeAll(ctx)
		if err != nil {
			return false, "", err
		}
		var ctrl deployJSON
		if err := c.Get(ctx, "/apis/apps/v1/namespaces/"+ns+"/deployments/simulator-controller", &ctrl); err != nil {
			return false, "", err
		}
		ok := ctrl.settled(1)
		for _, w := range workers {
			active, _ := w.hpa.condition("ScalingActive")
			ok = ok && w.deploy.settled(w.min) && active == "True" && w.hpa.utilisation() >= 0
		}
		return ok, fmt.Sprintf("controller available %d; %s", ctrl.Status.AvailableReplicas, state), nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Busy: 1500m on a 500m request is 300% against a 60% target, so each HPA
	// wants far more workers than partitions and is held at its maximum.
	raised := time.Now()
	apply(withCPU("1500m"))
	err = localcluster.Poll(ctx, time.Second, "workers scaled up to their maximum", func(ctx context.Context) (bool, string, error) {
		state, err := observeAll(ctx)
		if err != nil {
			return false, "", err
		}
		ok := true
		for _, w := range workers {
			limited, reason := w.hpa.condition("ScalingLimited")
			ok = ok && w.deploy.settled(w.max) && w.hpa.Status.CurrentReplicas == w.max &&
				limited == "True" && reason == "TooManyReplicas" && w.hpa.utilisation() > 60
		}
		return ok, state, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		t.Logf("scaled up %v after the CPU rose: %s", time.Since(raised).Round(time.Second), w)
	}

	// Idle again: 50m is 10%; the HPAs may scale down only after the window.
	lowered := time.Now()
	apply(withCPU("50m"))
	err = localcluster.Poll(ctx, time.Second, "workers scaled down to their minimum", func(ctx context.Context) (bool, string, error) {
		state, err := observeAll(ctx)
		if err != nil {
			return false, "", err
		}
		ok := true
		for _, w := range workers {
			ok = ok && w.deploy.settled(w.min) && w.hpa.Status.CurrentReplicas == w.min
		}
		return ok, state, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(lowered)
	if took < window {
		t.Errorf("scaled down %v after the CPU dropped, before the %v stabilisation window", took, window)
	}
	for _, w := range workers {
		t.Logf("scaled down after %v: %s (highest spec %d, highest desired %d, max %d)", took.Round(time.Second), w, w.highestSpec, w.highestWanted, w.max)
		if w.highestSpec != w.max {
			t.Errorf("%s: highest replicas %d, want exactly its maximum %d", w.name, w.highestSpec, w.max)
		}
	}
}

// TestClusterAcceptsEverythingTheProgramCreates runs the Pulumi program in
// existing mode (stacks/Pulumi.local.yaml) under Pulumi's mock engine,
// collects every Kubernetes object it registers and the objects of the charts
// it installs from this repository (rendered with the program's values), and
// server-side applies them all to a real API server: each must be accepted.
func TestClusterAcceptsEverythingTheProgramCreates(t *testing.T) {
	c := cluster(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	applyProgram(ctx, t, c, loadStack(t, "local"))
}

// An sftp type's settings flow from stack config to the pods: the program's Secrets (the
// passwords by environment variable, the host key as an ssh-auth Secret) are accepted by the
// API server, and the sftp worker's pods get the passwords as environment and the host key as
// the file the worker reads; the tcp worker gets neither.
func TestClusterSFTPSettingsReachTheWorkerPods(t *testing.T) {
	c := cluster(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := *loadStack(t, "local")
	sim := cfg.Simulator
	sim.Namespace = "sim-sftp"
	sim.Sources = append(append([]config.SourceType(nil), sim.Sources...), config.SourceType{Type: "files", Instances: 2, Protocol: "sftp"})
	sim.SFTP = config.SFTP{Passwords: map[string]string{"FILES_PASSWORD": "hunter2"}}
	cfg.Simulator = sim
	cfg.SSHPrivateKey = "stand-in SSH key: it seeds the SFTP host key"
	rel := applyProgram(ctx, t, c, &cfg)

	var pw, key struct {
		Type string            `json:"type"`
		Data map[string]string `json:"data"`
	}
	if err := c.Get(ctx, "/api/v1/namespaces/"+rel.Namespace+"/secrets/"+config.SFTPPasswordsSecret, &pw); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, "/api/v1/namespaces/"+rel.Namespace+"/secrets/"+config.SFTPHostKeySecret, &key); err != nil {
		t.Fatal(err)
	}
	want, err := workloads.DeriveSFTPHostKey(cfg.SSHPrivateKey, rel.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	if pw.Data["FILES_PASSWORD"] != base64.StdEncoding.EncodeToString([]byte("hunter2")) || key.Type != "kubernetes.io/ssh-auth" ||
		key.Data["ssh-privatekey"] != base64.StdEncoding.EncodeToString([]byte(want)) {
		t.Errorf("the API server holds passwords %v and a %q host key Secret (derived key: %v)", keysOf(pw.Data), key.Type,
			key.Data["ssh-privatekey"] == base64.StdEncoding.EncodeToString([]byte(want)))
	}
	podOf := func(typ string) (spec struct {
		Containers []struct {
			Env     []struct{ Name, Value string } `json:"env"`
			EnvFrom []struct {
				SecretRef struct{ Name string } `json:"secretRef"`
			} `json:"envFrom"`
			VolumeMounts []struct {
				Name, MountPath string
			} `json:"volumeMounts"`
		} `json:"containers"`
		Volumes []struct {
			Name   string
			Secret struct {
				SecretName string `json:"secretName"`
			} `json:"secret"`
			PVC struct {
				ClaimName string `json:"claimName"`
			} `json:"persistentVolumeClaim"`
		} `json:"volumes"`
	}) {
		var pods struct {
			Items []struct {
				Spec json.RawMessage `json:"spec"`
			} `json:"items"`
		}
		sel := "simlab.io/source-type%3D" + typ
		if err := c.Get(ctx, "/api/v1/namespaces/"+rel.Namespace+"/pods?labelSelector="+sel, &pods); err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 0 {
			t.Fatalf("no pod of type %s", typ)
		}
		if err := json.Unmarshal(pods.Items[0].Spec, &spec); err != nil {
			t.Fatal(err)
		}
		return spec
	}
	files := podOf("files")
	w := files.Containers[0]
	envs := map[string]string{}
	for _, e := range w.Env {
		envs[e.Name] = e.Value
	}
	if len(w.EnvFrom) != 1 || w.EnvFrom[0].SecretRef.Name != config.SFTPPasswordsSecret {
		t.Errorf("the sftp worker's envFrom %+v, want the passwords Secret", w.EnvFrom)
	}
	mounts := map[string]string{}
	for _, m := range w.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	vols := map[string]string{}
	for _, v := range files.Volumes {
		vols[v.Name] = v.Secret.SecretName + v.PVC.ClaimName
	}
	// Its host key from the Secret, its spool on the dataset claim (shared by every worker of the type).
	if len(mounts) != 2 || envs["SIMULATOR_SFTP_HOST_KEY_FILE"] != mounts["sftp-host-key"]+"/ssh-privatekey" ||
		vols["sftp-host-key"] != config.SFTPHostKeySecret || envs["SIMULATOR_SFTP_SPOOL"] == "" ||
		envs["SIMULATOR_SFTP_SPOOL"] != mounts["sftp-spool"] || vols["sftp-spool"] != str(rel.Values, "dataset", "claimName") {
		t.Errorf("the sftp worker: env %v, mounts %v, volumes %v", envs, mounts, vols)
	}
	tcp := podOf(cfg.Simulator.Sources[0].Type)
	if len(tcp.Containers[0].EnvFrom) != 0 || len(tcp.Volumes) != 0 {
		t.Errorf("the tcp worker gets sftp settings: %+v", tcp)
	}
}

func keysOf(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// applyProgram applies everything the program registers for cfg under the mock engine (the
// local chart rendered by helm with the program's values) to the local control plane, checks
// the API server accepted all of it and waits for the simulator's Deployments to be Available
// on the simulated nodes. It returns the simulator's release.
func applyProgram(ctx context.Context, t *testing.T, c *localcluster.Cluster, cfg *config.Loaded) release {
	t.Helper()
	p := runProgram(t, cfg.Cluster.Name, cfg)
	rel := p.simulatorRelease(t)
	// Two Pulumi resources managing one object would fight over it (and the
	// first destroy would delete it under the other).
	owners := map[string]int{}
	for _, o := range p.Objects {
		id := fmt.Sprintf("%s %s/%s", str(o, "kind"), str(o, "metadata", "namespace"), str(o, "metadata", "name"))
		if owners[id]++; owners[id] == 2 {
			t.Errorf("the program registers %s more than once", id)
		}
	}
	var first, rest []map[string]any
	for _, o := range p.Objects {
		if k := str(o, "kind"); k == "Namespace" || k == "CustomResourceDefinition" {
			first = append(first, o)
		} else {
			rest = append(rest, o)
		}
	}
	if !strings.Contains(string(manifest(t, first)), `"name":"`+cfg.Simulator.Namespace+`"`) {
		t.Fatalf("the program registers no Namespace %q; objects: %d", cfg.Simulator.Namespace, len(p.Objects))
	}
	for _, r := range p.Releases {
		if r.Chart != rel.Chart {
			t.Logf("not rendered here: chart %q (%s) is not in this repository", r.Chart, r.Name)
			continue
		}
		rest = append(rest, render(t, r.Name, r.Namespace, r.Values)...)
	}
	for _, o := range p.Other {
		t.Logf("not applied here: %s (not a plain object or a local chart)", o)
	}

	if len(first) > 0 {
		if err := c.Apply(ctx, manifest(t, first)); err != nil {
			t.Fatalf("applying namespaces and CRDs: %v", err)
		}
		if strings.Contains(string(manifest(t, first)), `"kind":"CustomResourceDefinition"`) {
			if _, err := c.KubectlContext(ctx, nil, "wait", "--for=condition=Established", "--timeout=2m", "crd", "--all"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A custom resource whose CRD comes from a chart that cannot be fetched
	// here is reported, not applied; without such a chart it is an error.
	remote := len(p.Other) > 0
	for _, r := range p.Releases {
		remote = remote || r.Chart != workloads.ChartPath
	}
	var applicable []map[string]any
	for _, o := range rest {
		ok, err := served(ctx, c, str(o, "apiVersion"))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ok:
			applicable = append(applicable, o)
		case remote:
			t.Logf("not applied here: %s %s (%s is not served; its CRD would come from a remote chart)", str(o, "kind"), str(o, "metadata", "name"), str(o, "apiVersion"))
		default:
			t.Errorf("%s %s: the API server does not serve %s and the program installs no CRD for it", str(o, "kind"), str(o, "metadata", "name"), str(o, "apiVersion"))
		}
	}
	rest = applicable
	all := append(append([]map[string]any{}, first...), rest...)
	if err := c.Apply(ctx, manifest(t, rest)); err != nil {
		t.Fatalf("the API server rejected what the program would create: %v", err)
	}
	out, err := c.KubectlContext(ctx, bytes.NewReader(manifest(t, all)), "get", "-f", "-", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(out)
	if len(got) != len(all) {
		t.Fatalf("applied %d objects, the API server has %d: %v", len(all), len(got), got)
	}
	t.Logf("accepted %d objects: %s", len(got), strings.Join(got, " "))

	// With the storage layer's dataset claim applied too, the simulator's
	// Deployments become Available on the simulated nodes.
	var deploys []string
	for _, o := range rest {
		if str(o, "kind") == "Deployment" && str(o, "metadata", "namespace") == rel.Namespace {
			deploys = append(deploys, str(o, "metadata", "name"))
		}
	}
	err = localcluster.Poll(ctx, time.Second, "the simulator's Deployments Available", func(ctx context.Context) (bool, string, error) {
		var pending []string
		for _, name := range deploys {
			var d deployJSON
			if err := c.Get(ctx, "/apis/apps/v1/namespaces/"+rel.Namespace+"/deployments/"+name, &d); err != nil {
				return false, "", err
			}
			if want := max(d.replicas(), 1); !d.settled(want) {
				pending = append(pending, fmt.Sprintf("%s (available %d/%d)", name, d.Status.AvailableReplicas, want))
			}
		}
		return len(pending) == 0, strings.Join(pending, ", "), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// served reports whether the API server serves apiVersion ("v1", "apps/v1", ...).
func served(ctx context.Context, c *localcluster.Cluster, apiVersion string) (bool, error) {
	path := "/apis/" + apiVersion
	if !strings.Contains(apiVersion, "/") {
		path = "/api/" + apiVersion
	}
	err := c.Get(ctx, path, nil)
	var ae *localcluster.APIError
	if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// TestClusterHelmInstallDryRunPrintsNotes: installing the chart with plain
// helm (as a team without Pulumi would) passes the API server's dry run, and
// NOTES.txt tells the user the controller URL, each type's topic and
// replica range, and how to load the configured dataset.
func TestClusterHelmInstallDryRunPrintsNotes(t *testing.T) {
	c := cluster(t)
	t.Parallel()
	cfg := loadStack(t, "local")
	rel := runProgram(t, "local", cfg).simulatorRelease(t)
	const ns = "helm-notes"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.KubectlContext(ctx, nil, "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	dir, _ := workloads.ChartDir()
	out, err := helm(t, "install", rel.Name, dir, "--namespace", ns, "-f", valuesFile(t, rel.Values),
		"--dry-run=server", "--kubeconfig", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	_, notes, ok := strings.Cut(out, "\nNOTES:\n")
	if !ok {
		t.Fatalf("no NOTES in helm's output:\n%s", out)
	}
	for _, want := range []string{
		"http://simulator-controller." + ns + ".svc:8080",
		"pm-counters (tcp): topic sim.records.pm-counters, 6 partitions, replicas 1..3",
		`"path": "datasets/default", "address_override": "sut.simulator.svc:9000"`,
		"PVC " + str(rel.Values, "dataset", "claimName") + " mounted read-only at /data",
		"simlab campaign run --stack <stack> --dataset <a local copy of datasets/default>",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, notes)
		}
	}
}
