package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/simulator/campaign/campaigntest"
	"github.com/simlab/simlab/tests/engine"
)

// campaignStatus runs `simlab campaign status` with args and returns its output.
func campaignStatus(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"campaign", "status"}, args...))
	err := root.Execute()
	return out.String(), err
}

// TestCampaignStackFindsAnExistingClustersController: for an existing cluster the stack's
// simlab:existing.kubeconfig and context are used, and the request goes to the stack's
// simulator namespace through the API server's service proxy (a stand-in on loopback here; the
// rehearsal goes through a real one).
func TestCampaignStackFindsAnExistingClustersController(t *testing.T) {
	p := campaigntest.NewPKI(t)
	api := campaigntest.StartAPIServer(t, p, "lab-sim")
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	// The context the stack names, not the current one.
	text := strings.Replace(p.AdminKubeconfig(api.URL), "current-context: lab", "current-context: elsewhere", 1)
	if err := os.WriteFile(kc, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	stack := `config:
  simlab:cluster: {name: t}
  simlab:provider: existing
  simlab:existing: {kubeconfig: ` + kc + `, context: lab}
  simlab:storage:
    ceph: {enabled: false}
    kafka: {enabled: false, bootstrap: "kafka.lab:9092"}
    nfs: {enabled: false, existingClaim: datasets}
  simlab:simulator:
    namespace: lab-sim
    sut: {address: "sut.lab:9000"}
    sources:
      - {type: t1, instances: 1, protocol: tcp}
`
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.t.yaml"), []byte(stack), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := campaignStatus(t, "--stack", "t", "--stacks-dir", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "stage empty") {
		t.Errorf("output %q, want the controller's stage", out)
	}
	got := api.Requests()
	if len(got) != 1 || !strings.HasPrefix(got[0].Path, "/api/v1/namespaces/lab-sim/services/http:simulator-controller:8080/proxy/") || got[0].User != "kubernetes-admin" {
		t.Errorf("the API server saw %+v", got)
	}

	// A stack without the simulator says so.
	off := strings.Replace(stack, "  simlab:simulator:\n", "  simlab:simulator:\n    enabled: false\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.off.yaml"), []byte(off), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := campaignStatus(t, "--stack", "off", "--stacks-dir", dir); err == nil || !strings.Contains(err.Error(), "--stack off: the stack deploys no simulator") {
		t.Errorf("got %v, want the disabled simulator named", err)
	}
	// A missing stack file is named.
	if _, err := campaignStatus(t, "--stack", "nope", "--stacks-dir", dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "Pulumi.nope.yaml")) {
		t.Errorf("got %v, want the missing stack file named", err)
	}
}

// TestCampaignStackReadsTheKubeconfigFromPulumiState: for a stack whose cluster simlab built,
// the kubeconfig is the stack's secret kubeconfig output, read with the real Pulumi CLI from a
// real state (a file backend; an inline program exports it, as infra.Build does).
func TestCampaignStackReadsTheKubeconfigFromPulumiState(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	tools, err := engine.FindTools(root)
	if err != nil {
		t.Fatal(err)
	}
	p := campaigntest.NewPKI(t)
	api := campaigntest.StartAPIServer(t, p, "simulator")
	kc := p.AdminKubeconfig(api.URL)
	ctx := context.Background()
	lab, err := engine.Open(ctx, engine.Options{Root: root, Tools: tools, Dir: t.TempDir(), Stack: "dev",
		Program: func(ctx *pulumi.Context) error {
			ctx.Export("kubeconfig", pulumi.ToSecret(pulumi.String(kc)))
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Stack.Up(ctx); err != nil {
		t.Fatal(err)
	}
	stacks := t.TempDir()
	dev, err := os.ReadFile(filepath.Join(root, "stacks", "Pulumi.dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stacks, "Pulumi.dev.yaml"), dev, 0o644); err != nil {
		t.Fatal(err)
	}
	// What a user's shell has: the CLI, the backend, the passphrase, the project directory.
	for k, v := range engine.Env(filepath.Join(root, ".cache", "pulumi-home"), lab.StateDir, "simlab-local-passphrase") {
		t.Setenv(k, v)
	}
	t.Setenv("PULUMI", tools.Pulumi)
	t.Chdir(lab.ProjectDir)

	out, err := campaignStatus(t, "--stack", "dev", "--stacks-dir", stacks)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "stage empty") || len(api.Requests()) != 1 {
		t.Errorf("output %q, requests %+v: want the controller's stage through the stand-in", out, api.Requests())
	}
	if strings.Contains(out, "BEGIN") || strings.Contains(out, campaigntest.Base64(p.ClientKey)) {
		t.Errorf("the output shows the kubeconfig's credentials:\n%s", out)
	}

	// A stack with no state yet: the error names the command and what to do.
	if err := os.WriteFile(filepath.Join(stacks, "Pulumi.lab.yaml"), dev, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = campaignStatus(t, "--stack", "lab", "--stacks-dir", stacks)
	if err == nil || !strings.Contains(err.Error(), "stack output kubeconfig --show-secrets --json --stack lab") || !strings.Contains(err.Error(), "--kubeconfig FILE") {
		t.Errorf("got %v, want the failed pulumi command and the --kubeconfig way out", err)
	}
}
