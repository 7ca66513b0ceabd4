package chart_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/workloads"
	"github.com/simlab/simlab/tests/standin"
)

// expectation is what the chart must contain for one configuration.
type expectation struct {
	sim       config.Simulator
	image     string
	bootstrap string
	claim     string
	// partitions returns a type's partition count.
	partitions func(config.SourceType) int
}

func perSource(s config.SourceType) int {
	return contract.RecordTopicPartitions(contract.PerSource, s.Instances, 0)
}

// checkRendered asserts the structure of a rendered chart: per type a worker
// Deployment (no replicas, CPU request, no CPU limit), an HPA with
// maxReplicas = min(maxWorkers, partitions) (sftp types too: their workers
// share a spool on the dataset claim), a Service and a PDB; one
// controller with the dataset claim mounted read-only; probes and a grace
// period everywhere.
func checkRendered(t *testing.T, objs []map[string]any, namespace string, want expectation) {
	t.Helper()
	idx := byKind(objs)
	wantKeys := []string{"Deployment/simulator-controller", "Service/simulator-controller", "PodDisruptionBudget/simulator-controller"}
	for _, s := range want.sim.Sources {
		n := "simulator-worker-" + s.Type
		wantKeys = append(wantKeys, "Deployment/"+n, "HorizontalPodAutoscaler/"+n, "Service/"+n, "PodDisruptionBudget/"+n)
	}
	for _, k := range wantKeys {
		if idx[k] == nil {
			t.Errorf("missing %s (rendered: %v)", k, keys(idx))
		}
	}
	if len(idx) != len(wantKeys) {
		t.Errorf("rendered %d objects, want %d: %v", len(idx), len(wantKeys), keys(idx))
	}
	for k, o := range idx {
		if ns := str(o, "metadata", "namespace"); ns != namespace {
			t.Errorf("%s: namespace %q, want %q", k, ns, namespace)
		}
	}

	// The controller: one replica, the claim read-only, Kafka from the storage layer.
	ctrl := idx["Deployment/simulator-controller"]
	if n := num(ctrl, "spec", "replicas"); n != 1 {
		t.Errorf("controller replicas %d, want exactly 1 (the only writer of the state topic)", n)
	}
	pod := get(ctrl, "spec", "template", "spec")
	c := get(pod, "containers", 0)
	checkContainer(t, "controller", pod, c, want)
	if got := str(c, "args", 0); got != "controller" {
		t.Errorf("controller args %v", get(c, "args"))
	}
	vols, _ := get(pod, "volumes").([]any)
	if len(vols) != 1 || str(vols[0], "persistentVolumeClaim", "claimName") != want.claim || get(vols[0], "persistentVolumeClaim", "readOnly") != true {
		t.Errorf("controller volumes %v, want the claim %q read-only", vols, want.claim)
	}
	mounts, _ := get(c, "volumeMounts").([]any)
	if len(mounts) != 1 || get(mounts[0], "readOnly") != true || str(mounts[0], "name") != str(vols, 0, "name") {
		t.Errorf("controller mounts %v, want the dataset volume read-only", mounts)
	} else if root := env(c, "SIMULATOR_DATASET_ROOT"); root != str(mounts[0], "mountPath") {
		t.Errorf("SIMULATOR_DATASET_ROOT %q is not the mount path %q", root, str(mounts[0], "mountPath"))
	}
	if got := env(c, "SIMULATOR_SUT_ADDRESS"); got != want.sim.SUT.Address {
		t.Errorf("the controller's SIMULATOR_SUT_ADDRESS %q, want the stack's simulator.sut.address %q", got, want.sim.SUT.Address)
	}
	if got := str(ctrl, "spec", "strategy", "type"); got != "Recreate" {
		t.Errorf("controller strategy %q, want Recreate (never two writers)", got)
	}

	for _, s := range want.sim.Sources {
		n := "simulator-worker-" + s.Type
		d, hpa := idx["Deployment/"+n], idx["HorizontalPodAutoscaler/"+n]
		if d == nil || hpa == nil {
			continue
		}
		if r := get(d, "spec", "replicas"); r != nil {
			t.Errorf("%s sets replicas %v: the HPA owns the count", n, r)
		}
		pod := get(d, "spec", "template", "spec")
		c := get(pod, "containers", 0)
		checkContainer(t, n, pod, c, want)
		if got := env(c, "SIMULATOR_TYPE"); got != s.Type {
			t.Errorf("%s: SIMULATOR_TYPE %q", n, got)
		}
		if got := env(c, "SIMULATOR_CONTROLLER_URL"); got != fmt.Sprintf("http://simulator-controller.%s.svc:8080", namespace) {
			t.Errorf("%s: SIMULATOR_CONTROLLER_URL %q", n, got)
		}
		if get(c, "resources", "limits", "cpu") != nil {
			t.Errorf("%s has a CPU limit %v: workers must not (kubernetes#51135)", n, get(c, "resources", "limits", "cpu"))
		}
		if get(c, "resources", "requests", "cpu") == nil {
			t.Errorf("%s has no CPU request: the HPA scales on its utilisation", n)
		}
		vols, _ := get(pod, "volumes").([]any)
		spoolVol := ""
		for _, v := range vols {
			switch {
			case str(v, "name") == "sftp-host-key" && get(v, "persistentVolumeClaim") == nil:
			case s.Protocol == "sftp" && str(v, "persistentVolumeClaim", "claimName") == want.claim && get(v, "persistentVolumeClaim", "readOnly") == nil:
				spoolVol = str(v, "name")
			default:
				t.Errorf("%s mounts volume %v: a worker mounts at most the SFTP host key and, for sftp, the dataset claim read-write as its spool", n, v)
			}
		}
		spoolEnv := env(c, "SIMULATOR_SFTP_SPOOL")
		if s.Protocol != "sftp" {
			if spoolEnv != "" {
				t.Errorf("%s (tcp) has SIMULATOR_SFTP_SPOOL %q", n, spoolEnv)
			}
		} else if spoolVol == "" {
			t.Errorf("%s (sftp) does not have the dataset claim %q as a read-write volume: its workers share their spool there", n, want.claim)
		} else {
			// The spool: the claim, read-write, in the release's own directory, where
			// SIMULATOR_SFTP_SPOOL points.
			mounts, _ := get(c, "volumeMounts").([]any)
			found := false
			for _, m := range mounts {
				if str(m, "name") != spoolVol {
					continue
				}
				found = true
				if get(m, "readOnly") == true || str(m, "subPath") != ".simulator-sftp/simulator" || str(m, "mountPath") != spoolEnv || spoolEnv == "" {
					t.Errorf("%s: spool mount %v with SIMULATOR_SFTP_SPOOL %q, want read-write at subPath .simulator-sftp/simulator, mounted where the variable points", n, m, spoolEnv)
				}
			}
			if !found {
				t.Errorf("%s: the spool volume %s is not mounted", n, spoolVol)
			}
		}
		hasSFTP := strings.Contains(fmt.Sprint(get(c, "ports")), "sftp")
		if hasSFTP != (s.Protocol == "sftp") {
			t.Errorf("%s: sftp port %v for protocol %s", n, hasSFTP, s.Protocol)
		}

		wantMax := min(want.sim.MaxWorkers, want.partitions(s))
		wantMin := min(want.sim.MinWorkers, wantMax)
		if got := num(hpa, "spec", "maxReplicas"); got != wantMax {
			t.Errorf("%s: HPA maxReplicas %d, want min(maxWorkers %d, partitions %d) = %d", n, got, want.sim.MaxWorkers, want.partitions(s), wantMax)
		}
		if got := num(hpa, "spec", "minReplicas"); got != wantMin {
			t.Errorf("%s: HPA minReplicas %d, want %d", n, got, wantMin)
		}
		if got := str(hpa, "spec", "scaleTargetRef", "name"); got != n || str(hpa, "spec", "scaleTargetRef", "kind") != "Deployment" {
			t.Errorf("%s: HPA targets %v", n, get(hpa, "spec", "scaleTargetRef"))
		}
		m := get(hpa, "spec", "metrics", 0)
		if str(m, "resource", "name") != "cpu" || num(m, "resource", "target", "averageUtilization") != want.sim.TargetCPUPercent {
			t.Errorf("%s: HPA metric %v, want cpu at %d%%", n, m, want.sim.TargetCPUPercent)
		}
		if got := num(hpa, "spec", "behavior", "scaleDown", "stabilizationWindowSeconds"); got != want.sim.ScaleDownSeconds {
			t.Errorf("%s: scale-down stabilisation window %d s, want the stack's simulator.scaleDownStabilizationSeconds %d", n, got, want.sim.ScaleDownSeconds)
		}
	}
}

// checkContainer asserts what every simulator container has.
func checkContainer(t *testing.T, name string, pod, c any, want expectation) {
	t.Helper()
	if got := str(c, "image"); got != want.image {
		t.Errorf("%s: image %q, want %q", name, got, want.image)
	}
	if got := env(c, "SIMULATOR_KAFKA_BROKERS"); got != want.bootstrap {
		t.Errorf("%s: SIMULATOR_KAFKA_BROKERS %q, want %q", name, got, want.bootstrap)
	}
	for _, p := range []string{"livenessProbe", "readinessProbe"} {
		if str(c, p, "httpGet", "path") == "" {
			t.Errorf("%s: no HTTP %s", name, p)
		}
	}
	if str(c, "readinessProbe", "httpGet", "path") != "/readyz" || str(c, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Errorf("%s: probes %v / %v, want /readyz and /healthz", name, get(c, "readinessProbe"), get(c, "livenessProbe"))
	}
	if g := num(pod, "terminationGracePeriodSeconds"); g < 5 {
		t.Errorf("%s: terminationGracePeriodSeconds %d, want >= 5 (time to commit)", name, g)
	}
}

func env(c any, name string) string {
	l, _ := get(c, "env").([]any)
	for _, e := range l {
		if str(e, "name") == name {
			return str(e, "value")
		}
	}
	return ""
}

func expectFor(cfg *config.Loaded, rel release) expectation {
	return expectation{
		sim: cfg.Simulator,
		// The program pins the image the mirror holds, by digest.
		image:      cfg.Simulator.Image + ":" + cfg.Versions.Simulator + "@" + standin.ImageDigest,
		bootstrap:  str(rel.Values, "kafka", "bootstrap"),
		claim:      str(rel.Values, "dataset", "claimName"),
		partitions: perSource,
	}
}

// TestChartRendersEveryCommittedStack renders the chart with exactly the
// values the program passes for each committed stack (run under Pulumi's mock
// engine) and checks the structure, then lints it strictly.
func TestChartRendersEveryCommittedStack(t *testing.T) {
	for _, stack := range stacks(t) {
		t.Run(stack, func(t *testing.T) {
			cfg := loadStack(t, stack)
			rel := runProgram(t, stack, cfg).simulatorRelease(t)
			if rel.Namespace != cfg.Simulator.Namespace || rel.Name != workloads.ReleaseName {
				t.Errorf("release %s in %q, want %s in %q", rel.Name, rel.Namespace, workloads.ReleaseName, cfg.Simulator.Namespace)
			}
			want := expectFor(cfg, rel)
			if want.bootstrap == "" || want.claim == "" {
				t.Fatalf("the program passes no Kafka bootstrap or dataset claim: %v", rel.Values)
			}
			checkRendered(t, render(t, rel.Name, rel.Namespace, rel.Values), rel.Namespace, want)
			dir, _ := workloads.ChartDir()
			if out, err := helm(t, "lint", "--strict", dir, "--namespace", rel.Namespace, "-f", valuesFile(t, rel.Values)); err != nil {
				t.Errorf("helm lint: %v\n%s", err, out)
			}
		})
	}
}

// TestChartCapsWorkersAtPartitions: a type with fewer partitions than
// maxWorkers gets an HPA maximum of its partitions (and a minimum no higher),
// with per-source partitioning (instances) and keyed (kafka.keyedPartitions).
func TestChartCapsWorkersAtPartitions(t *testing.T) {
	cfg := loadStack(t, "dev")
	cfg.Simulator.MinWorkers, cfg.Simulator.MaxWorkers = 3, 10
	cfg.Simulator.Sources = []config.SourceType{
		{Type: "few", Instances: 2, Protocol: "tcp"},
		{Type: "many", Instances: 40, Protocol: "sftp"},
		{Type: "exact", Instances: 10, Protocol: "tcp"},
	}
	rel := runProgram(t, "dev", cfg).simulatorRelease(t)
	want := expectFor(cfg, rel)
	objs := render(t, rel.Name, rel.Namespace, rel.Values)
	checkRendered(t, objs, rel.Namespace, want)
	if got := num(byKind(objs)["HorizontalPodAutoscaler/simulator-worker-few"], "spec", "maxReplicas"); got != 2 {
		t.Errorf("few: maxReplicas %d, want 2", got)
	}
	// An sftp type scales like a tcp one (its workers share a spool).
	if got := num(byKind(objs)["HorizontalPodAutoscaler/simulator-worker-many"], "spec", "maxReplicas"); got != 10 {
		t.Errorf("many (sftp, 40 partitions): maxReplicas %d, want maxWorkers 10", got)
	}

	keyed := with(t, rel.Values, "kafka.partitioning", "keyed")
	keyed = with(t, keyed, "kafka.keyedPartitions", 4)
	want.partitions = func(config.SourceType) int { return 4 }
	checkRendered(t, render(t, rel.Name, rel.Namespace, keyed), rel.Namespace, want)
}

// TestChartSchemaRejectsBadValues: each bad value fails rendering with an
// error naming its path.
func TestChartSchemaRejectsBadValues(t *testing.T) {
	cfg := loadStack(t, "local")
	good := runProgram(t, "local", cfg).simulatorRelease(t).Values
	if _, err := renderErr(t, "simulator", "simulator", good); err != nil {
		t.Fatalf("the program's own values must render: %v", err)
	}
	src := func(fields map[string]any) []any {
		s := map[string]any{"type": "pm-counters", "instances": 6, "protocol": "tcp"}
		for k, v := range fields {
			s[k] = v
		}
		return []any{s}
	}
	cases := []struct {
		name, key string
		value     any
		want      []string
	}{
		{"unknown top-level key", "replicas", 3, []string{"additional properties 'replicas' not allowed"}},
		{"unknown nested key", "workers.maxReplica", 3, []string{"/workers", "'maxReplica'"}},
		{"CPU limit on workers", "workers.resources.limits.cpu", "2", []string{"/workers/resources/limits", "'cpu' not allowed"}},
		// null deletes a default in Helm: the request is gone.
		{"no CPU request on workers", "workers.resources.requests.cpu", nil, []string{"/workers/resources/requests", "missing property 'cpu'"}},
		{"zero maxReplicas", "workers.maxReplicas", 0, []string{"/workers/maxReplicas", "minimum"}},
		{"string maxReplicas", "workers.maxReplicas", "four", []string{"/workers/maxReplicas", "want integer"}},
		{"CPU target out of range", "workers.targetCPUUtilizationPercentage", 150, []string{"/workers/targetCPUUtilizationPercentage", "maximum"}},
		{"stabilisation above Kubernetes' limit", "workers.scaleDownStabilizationSeconds", 4000, []string{"/workers/scaleDownStabilizationSeconds"}},
		{"grace period too short to commit", "workers.terminationGracePeriodSeconds", 1, []string{"/workers/terminationGracePeriodSeconds"}},
		{"empty Kafka bootstrap", "kafka.bootstrap", "", []string{"/kafka/bootstrap"}},
		{"unknown partitioning", "kafka.partitioning", "random", []string{"/kafka/partitioning"}},
		{"dataset path escaping the share", "dataset.path", "../etc", []string{"/dataset/path"}},
		{"bad pull policy", "image.pullPolicy", "Sometimes", []string{"/image/pullPolicy"}},
		{"digest that is not sha256", "image.digest", "latest", []string{"/image/digest"}},
		{"no sources", "sources", []any{}, []string{"/sources", "minItems"}},
		{"type not a DNS label", "sources", src(map[string]any{"type": "PM_Counters"}), []string{"/sources/0/type"}},
		{"zero instances", "sources", src(map[string]any{"instances": 0}), []string{"/sources/0/instances"}},
		{"unknown protocol", "sources", src(map[string]any{"protocol": "udp"}), []string{"/sources/0/protocol"}},
		{"duplicate type", "sources", append(src(nil), src(nil)...), []string{`sources[1].type: "pm-counters" is also the type of sources[0]`}},
		{"min above max", "workers.minReplicas", 5, []string{"sources[0] (pm-counters): minReplicas 5 is above maxReplicas 3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderErr(t, "simulator", "simulator", with(t, good, tc.key, tc.value))
			if err == nil {
				t.Fatalf("%s=%v was accepted", tc.key, tc.value)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
		})
	}
}
