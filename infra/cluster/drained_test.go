package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/tests/localcluster"
)

// TestResizeDrainAndReturnOnARealAPIServer runs a worker's drained create
// and settle update (a restart in place: a resize) against a real
// kube-apiserver with kwok's nodes, with stand-ins for what the storage
// layer adds (Settle.Pausing and Resumed log to a file) and, for the
// machine's reboot, a new boot ID patched into the Node's status (kwok's
// nodes never boot). It checks:
//   - a Node not in the cluster yet is left alone; one with no recorded
//     size gets it recorded, undrained; one at the size is left alone;
//   - a new size pauses (before anything else; a pause that fails stops
//     the step with the node schedulable), records the boot ID, cordons
//     and evicts the node's pods; a retried drain pauses again and keeps
//     the first record;
//   - the settle update waits for a new boot, failing with the node still
//     cordoned until there is one; then uncordons, resumes and records the
//     new size, and a second update only checks.
//
// What it leaves unproven: a real machine's restart (the libvirt domain's
// update), and what the storage layer's scripts do (infra/storage tests).
func TestResizeDrainAndReturnOnARealAPIServer(t *testing.T) {
	c := localcluster.StartT(t, localcluster.Options{Nodes: 2})
	node, other := c.Nodes[0], c.Nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubectl := c.Bin.Kubectl + " --kubeconfig " + c.Kubeconfig
	k := func(args ...string) string {
		t.Helper()
		out, err := c.KubectlContext(ctx, nil, args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(out)
	}
	apply := func(doc string) {
		t.Helper()
		if out, err := c.KubectlContext(ctx, strings.NewReader(doc), "apply", "-f", "-"); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
	}
	boot := func(id string) {
		t.Helper()
		k("patch", "node", node, "--subresource=status", "--type=merge", "-p", `{"status":{"nodeInfo":{"bootID":"`+id+`"}}}`)
	}
	log := filepath.Join(t.TempDir(), "settle.log")
	pauseOK := true
	settle := Settle{
		Pausing: func(n string) string {
			if !pauseOK {
				return "echo 'stand-in: Ceph says no' >&2; exit 1"
			}
			return fmt.Sprintf("echo 'paused %s' >> %s", n, log)
		},
		Resumed: func(n string) string {
			return fmt.Sprintf("%s get node %s -o jsonpath='resumed %s unschedulable={.spec.unschedulable}{\"\\n\"}' >> %s", kubectl, n, n, log)
		},
	}
	run := func(script string) (string, error) {
		out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput()
		return string(out), err
	}
	drained := func(n, size string) (string, error) {
		return run(drainedPhaseWith(kubectl, n, size, settle, 30, 1).Script())
	}
	back := func(size string, timeout int) (string, error) {
		return run(settlePhaseWith(kubectl, node, size, settle, timeout, 1).Update)
	}
	ann := func(name string) string {
		return k("get", "node", node, "-o", "jsonpath={.metadata.annotations."+strings.ReplaceAll(name, ".", `\.`)+"}")
	}
	cordoned := func() bool { return k("get", "node", node, "-o", "jsonpath={.spec.unschedulable}") == "true" }
	podsOn := func() string {
		return k("get", "pods", "-n", "default", "--field-selector", "spec.nodeName="+node, "-o", "name")
	}
	logged := func() string { b, _ := os.ReadFile(log); return string(b) }

	apply(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: pinned, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: pinned}}
  template:
    metadata: {labels: {app: pinned}}
    spec:
      nodeSelector: {kubernetes.io/hostname: %s}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: app, image: stand-in.invalid/app:1}]
`, node))
	k("rollout", "status", "deploy/pinned", "-n", "default", "--timeout=90s")
	boot("boot-1")

	if out, err := drained("dev-worker-9", "2 vCPUs, 8192 MiB"); err != nil || !strings.Contains(out, "not in the cluster yet") {
		t.Fatalf("a worker not joined yet: %v\n%s", err, out)
	}
	if out, err := drained(node, "2 vCPUs, 8192 MiB"); err != nil || !strings.Contains(out, "recorded as 2 vCPUs, 8192 MiB (none was)") {
		t.Fatalf("a Node with no size recorded: %v\n%s", err, out)
	}
	if out, err := drained(node, "2 vCPUs, 8192 MiB"); err != nil || !strings.Contains(out, "already 2 vCPUs, 8192 MiB") || cordoned() {
		t.Fatalf("a Node at its size: %v (cordoned %v)\n%s", err, cordoned(), out)
	}
	if logged() != "" {
		t.Fatalf("paused although nothing was resized:\n%s", logged())
	}

	// Resized: what it holds refuses to pause, then agrees.
	pauseOK = false
	if out, err := drained(node, "4 vCPUs, 8192 MiB"); err == nil || !strings.Contains(out, "stand-in: Ceph says no") || cordoned() || ann(RestartAnnotation) != "" {
		t.Fatalf("a refused pause must stop the step before anything changes: %v (cordoned %v)\n%s", err, cordoned(), out)
	}
	pauseOK = true
	out, err := drained(node, "4 vCPUs, 8192 MiB")
	if err != nil || !strings.Contains(out, "drained; its machine restarts at 4 vCPUs, 8192 MiB") {
		t.Fatalf("drain for a resize: %v\n%s", err, out)
	}
	if !cordoned() || ann(RestartAnnotation) != "boot-1" || podsOn() != "" || logged() != "paused "+node+"\n" {
		t.Fatalf("after the drain: cordoned %v, boot record %q, pods on it %q, log %q", cordoned(), ann(RestartAnnotation), podsOn(), logged())
	}
	if k("get", "node", other, "-o", "jsonpath={.spec.unschedulable}") == "true" {
		t.Error("the other node was cordoned")
	}
	// Retried (the domain's update failed after the machine restarted):
	// the first boot record stays.
	boot("boot-2")
	if out, err := drained(node, "4 vCPUs, 8192 MiB"); err != nil || ann(RestartAnnotation) != "boot-1" {
		t.Fatalf("a retried drain: %v, boot record %q\n%s", err, ann(RestartAnnotation), out)
	}
	boot("boot-1")

	// Not back yet: the same boot.
	if out, err := back("4 vCPUs, 8192 MiB", 0); err == nil || !strings.Contains(out, "did not come back Ready from its restart") || !cordoned() {
		t.Fatalf("a node not back: %v (cordoned %v)\n%s", err, cordoned(), out)
	}
	// Rebooted (the stand-in: a new boot ID).
	boot("boot-3")
	if out, err := back("4 vCPUs, 8192 MiB", 30); err != nil || !strings.Contains(out, "back at 4 vCPUs, 8192 MiB") {
		t.Fatalf("back from the restart: %v\n%s", err, out)
	}
	if cordoned() || ann(SizeAnnotation) != "4 vCPUs, 8192 MiB" || ann(RestartAnnotation) != "" {
		t.Fatalf("after it came back: cordoned %v, size %q, boot record %q", cordoned(), ann(SizeAnnotation), ann(RestartAnnotation))
	}
	// Paused twice (the retried drain pauses again: add-noout is
	// idempotent), resumed once, uncordoned.
	if want := "paused " + node + "\npaused " + node + "\nresumed " + node + " unschedulable=\n"; logged() != want {
		t.Errorf("the storage layer's part ran as:\n%s\nwant (resumed once uncordoned):\n%s", logged(), want)
	}
	k("rollout", "status", "deploy/pinned", "-n", "default", "--timeout=90s")
	if out, err := back("4 vCPUs, 8192 MiB", 30); err != nil || !strings.Contains(out, "nothing to wait for again") {
		t.Fatalf("a second update: %v\n%s", err, out)
	}
	if out, err := drained(node, "4 vCPUs, 8192 MiB"); err != nil || !strings.Contains(out, "already 4 vCPUs") {
		t.Fatalf("the drained step at the new size: %v\n%s", err, out)
	}
}
