package cluster

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/ignition"
	"github.com/simlab/simlab/tests/localcluster"
)

// upgradeBins are artifacts no test downloads: every case below stops
// before the first download.
var upgradeBins = []ignition.Download{
	{Name: "kubeadm", Path: "/opt/bin/kubeadm", URL: "http://127.0.0.1:9/kubeadm", Hash: "sha512-00"},
	{Name: "kubelet", Path: "/opt/bin/kubelet", URL: "http://127.0.0.1:9/kubelet", Hash: "sha512-00"},
	{Name: "kubectl", Path: "/opt/bin/kubectl", URL: "http://127.0.0.1:9/kubectl", Hash: "sha512-00"},
}

// TestUpgradeScriptsRefuseBeforeChangingAnything runs the upgrade phase's
// scripts against a real kube-apiserver (the local control plane, with the
// kubeadm-config ConfigMap kubeadm writes, at v1.34.4): a downgrade, a skipped
// minor release and a worker ahead of its control plane are refused with
// the key to change, before any download (the artifact URLs here answer
// nothing); the dry run of the real kubeadm is the rehearsal's
// (docs/REHEARSAL.md).
func TestUpgradeScriptsRefuseBeforeChangingAnything(t *testing.T) {
	c := localcluster.StartT(t, localcluster.Options{Nodes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kubeadm-config, namespace: kube-system}\n" +
		"data:\n  ClusterConfiguration: |\n    apiVersion: kubeadm.k8s.io/v1beta4\n    kind: ClusterConfiguration\n    kubernetesVersion: v1.34.4\n"
	if _, err := c.KubectlContext(ctx, strings.NewReader(cm), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	node := c.Nodes[0]
	run := func(script string) (string, error) {
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Stdin = strings.NewReader(string(kubeconfig))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	kubectl := c.Bin.Kubectl + " --kubeconfig " + c.Kubeconfig
	cases := []struct {
		name, script, want string
	}{
		{"controller: a downgrade", upgradeControllerPhase(kubectl, node, "v1.33.7", upgradeBins).Script(),
			"simlab:versions.kubernetes: v1.33.7 is older than the cluster's v1.34.4: Kubernetes is never downgraded"},
		{"controller: two minors at once", upgradeControllerPhase(kubectl, node, "v1.36.0", upgradeBins).Script(),
			"simlab:versions.kubernetes: v1.34.4 -> v1.36.0 skips a minor release: kubeadm upgrades one minor at a time; set v1.35.x first"},
		{"worker: two minors at once", upgradeWorkerPhase(c.Bin.Kubectl, node, "v1.36.1", upgradeBins).Script(),
			"v1.34.4 -> v1.36.1 skips a minor release"},
		{"worker: before its control plane", upgradeWorkerPhase(c.Bin.Kubectl, node, "v1.35.0", upgradeBins).Script(),
			node + ": the control plane runs v1.34.4, not v1.35.0: the controller's upgrade comes first"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.script)
			if err == nil {
				t.Fatalf("the script succeeded, want it refused:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output:\n%s\nwant it to say: %s", out, tc.want)
			}
			if strings.Contains(out, "did not download") || strings.Contains(out, "upgrading") {
				t.Errorf("refused only after starting the upgrade:\n%s", out)
			}
		})
	}
	// The worker's step leaves no copy of the admin kubeconfig behind, even
	// when it refuses.
	tmp := t.TempDir()
	if out, err := run("TMPDIR=" + tmp + "; export TMPDIR\n" + upgradeWorkerPhase(c.Bin.Kubectl, node, "v1.35.0", upgradeBins).Script()); err == nil {
		t.Fatalf("want a refusal:\n%s", out)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the worker's step left %v in its TMPDIR (the admin kubeconfig)", left)
	}
}
