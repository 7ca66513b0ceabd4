//go:build rehearse

package rehearse

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/crypto/ssh"
)

// metricsServerRef is the image the metrics-server manifest runs, under the
// name upstream publishes it.
func metricsServerRef(version string) string {
	return "registry.k8s.io/metrics-server/metrics-server:" + version
}

// metricsServerImage is metrics-server built here (the tools module, at the
// pinned release) with Debian's libc, as upstream's distroless image runs it.
func metricsServerImage(e *env) (v1.Image, error) {
	bins, _ := filepath.Glob(filepath.Join(e.bin, "metrics-server-v*"))
	if len(bins) != 1 {
		return nil, fmt.Errorf("want one metrics-server binary in %s (make tools), got %v", e.bin, bins)
	}
	libc, err := debianFiles(e.base, []string{"libc6"}, "")
	if err != nil {
		return nil, err
	}
	return buildImage(append(libc, imageFile{path: "/metrics-server", from: bins[0]}), []string{"/metrics-server"})
}

// metricsServerManifest stands in for metrics-server's release manifest
// (components.yaml, which the mirror fetches from the release and this
// machine cannot): written here from metrics-server's documented needs, so
// what runs is the real metrics-server with the cluster layer's TLS choice —
// kubelets' serving certificates verified against the cluster CA, no
// --kubelet-insecure-tls. The mirror serves it as the pinned manifest file.
func metricsServerManifest(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: metrics-server, namespace: kube-system, labels: {k8s-app: metrics-server}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:metrics-server, labels: {k8s-app: metrics-server}}
rules:
  - apiGroups: [""]
    resources: [nodes/metrics]
    verbs: [get]
  - apiGroups: [""]
    resources: [pods, nodes]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:aggregated-metrics-reader
  labels:
    k8s-app: metrics-server
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
  - apiGroups: [metrics.k8s.io]
    resources: [pods, nodes]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: metrics-server-auth-reader, namespace: kube-system, labels: {k8s-app: metrics-server}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: kube-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: metrics-server:system:auth-delegator, labels: {k8s-app: metrics-server}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: kube-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:metrics-server, labels: {k8s-app: metrics-server}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:metrics-server}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: kube-system}]
---
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system, labels: {k8s-app: metrics-server}}
spec:
  selector: {k8s-app: metrics-server}
  ports: [{name: https, port: 443, protocol: TCP, targetPort: https}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: metrics-server, namespace: kube-system, labels: {k8s-app: metrics-server}}
spec:
  selector: {matchLabels: {k8s-app: metrics-server}}
  template:
    metadata: {labels: {k8s-app: metrics-server}}
    spec:
      serviceAccountName: metrics-server
      priorityClassName: system-cluster-critical
      containers:
        - name: metrics-server
          image: %s
          args:
            - --cert-dir=/tmp
            - --secure-port=10250
            - --kubelet-preferred-address-types=InternalIP,Hostname
            - --kubelet-use-node-status-port
            - --metric-resolution=15s
          ports: [{name: https, containerPort: 10250, protocol: TCP}]
          readinessProbe:
            httpGet: {path: /readyz, port: https, scheme: HTTPS}
            periodSeconds: 5
          securityContext:
            runAsNonRoot: true
            runAsUser: 1000
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
          volumeMounts: [{name: tmp, mountPath: /tmp}]
      volumes: [{name: tmp, emptyDir: {}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io, labels: {k8s-app: metrics-server}}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system}
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
`, image)
}

// metricsServerFile is the manifest file the cluster layer's metrics-server
// ConfigFile applies, as the program recorded it.
func (r *runner) metricsServerFile() string {
	r.t.Helper()
	for _, res := range r.last.Resources() {
		if res.Type == "kubernetes:yaml/v2:ConfigFile" && res.Name == "metrics-server" {
			if f := res.Inputs["file"]; f.IsString() {
				return f.StringValue()
			}
		}
	}
	r.t.Fatal("the cluster layer declares no metrics-server ConfigFile with a file")
	return ""
}

// rehearseMetricsServer applies what the cluster layer's metrics-server
// ConfigFile applies (the mirror's pinned manifest) and waits until the
// metrics API answers with every node's usage: metrics-server scraped each
// kubelet over TLS verified against the cluster CA, which needs the serving
// certificates the admit commands approved.
func rehearseMetricsServer(t *testing.T, run *runner, ctrl *ssh.Client, k string, tm *timings) {
	t.Helper()
	t0 := time.Now()
	manifest, err := os.ReadFile(run.metricsServerFile())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sshIn(ctrl, k+"apply --server-side --field-manager simlab-rehearsal -f -", manifest); err != nil {
		t.Fatalf("applying the metrics-server manifest: %v\n%s", err, out)
	}
	kc := strings.TrimSpace(k)
	// On any failure the script prints what explains it: the pod's
	// description and events, its log, the CSRs (an unapproved kubelet
	// serving certificate leaves that kubelet unscrapable) and the APIService.
	script := fmt.Sprintf(`diagnose() {
  echo "--- metrics-server pods"; %[1]s -n kube-system describe pods -l k8s-app=metrics-server
  echo "--- metrics-server log"; %[1]s -n kube-system logs -l k8s-app=metrics-server --tail=60 --all-containers
  echo "--- CSRs"; %[1]s get csr
  echo "--- APIService"; %[1]s get apiservice v1beta1.metrics.k8s.io -o yaml
  echo "--- nodes"; %[1]s get nodes -o wide
  exit 1
}
%[1]s -n kube-system rollout status deploy/metrics-server --timeout=180s || diagnose
%[1]s wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=180s || diagnose
for i in $(seq 120); do
  out=$(%[1]s top nodes --no-headers 2>&1) && [ "$(echo "$out" | wc -l)" = %[2]d ] && { echo "$out"; exit 0; }
  sleep 1
done
echo "kubectl top nodes: $out"; diagnose`, kc, len(machines))
	out, err := sshIn(ctrl, script, nil)
	if err != nil {
		t.Fatalf("metrics-server: %v\n%s", err, out)
	}
	t.Logf("kubectl top nodes:\n%s", out)
	tm.mark("metrics-server serves every node's usage", t0)
}

// checkHPAReadsCPU waits until the HPA of each simulator type reports the
// workers' measured CPU utilisation: the autoscaler works on real metrics.
func checkHPAReadsCPU(t *testing.T, ctrl *ssh.Client, k string, types ...string) {
	t.Helper()
	kc := strings.TrimSpace(k) + " -n " + simNamespace
	for _, typ := range types {
		hpa := workerDeployment(typ)
		script := fmt.Sprintf(`for i in $(seq 180); do
  u=$(%[1]s get hpa %[2]s -o jsonpath='{.status.currentMetrics[0].resource.current.averageUtilization}')
  [ -n "$u" ] && { echo "$u"; exit 0; }
  sleep 1
done
%[1]s describe hpa %[2]s; exit 1`, kc, hpa)
		out, err := sshIn(ctrl, script, nil)
		if err != nil {
			t.Errorf("HPA %s never read the workers' CPU: %v\n%s", hpa, err, out)
			continue
		}
		t.Logf("HPA %s: the workers' CPU at %s%% of their request (metrics-server)", hpa, strings.TrimSpace(out))
	}
}
