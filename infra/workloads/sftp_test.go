package workloads_test

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"golang.org/x/crypto/ssh"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/infra/workloads"
)

// sftpStack is the local stack with an sftp type and its passwords.
func sftpStack(t *testing.T) config.Simulator {
	sim := localStack(t).Simulator
	sim.Sources = append(sim.Sources, config.SourceType{Type: "files", Instances: 2, Protocol: "sftp"})
	sim.SFTP.Passwords = map[string]string{"FILES_PASSWORD": "hunter2"}
	return sim
}

// An sftp type gets the passwords Secret (as environment) and the host key Secret (an
// ssh-auth Secret, derived from the SSH key when the stack gives none), both with their data
// secret in state, both before the chart; the chart's values name them and hold neither.
func TestMockLayerMakesTheSFTPSecrets(t *testing.T) {
	sim := sftpStack(t)
	const sshKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in\n-----END OPENSSH PRIVATE KEY-----\n"
	rec, err := pulumimock.Run("simlab", "local", func(ctx *pulumi.Context) error {
		prov, err := kubernetes.NewProvider(ctx, "k8s", &kubernetes.ProviderArgs{})
		if err != nil {
			return err
		}
		_, err = workloads.New(ctx, "workloads", &workloads.Args{
			Provider: prov, Simulator: sim, Versions: localStack(t).Versions,
			KafkaBootstrap: pulumi.String("kafka:9092"), DatasetClaim: pulumi.String("simulator-datasets"),
			ImageDigest: testDigest, SSHPrivateKey: pulumi.ToSecret(pulumi.String(sshKey)).(pulumi.StringOutput),
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]pulumimock.Resource{}
	var chart pulumimock.Resource
	for _, r := range rec.Resources() {
		switch r.Type {
		case "kubernetes:core/v1:Secret":
			secrets[r.Inputs["metadata"].ObjectValue()["name"].StringValue()] = r
		case "kubernetes:helm.sh/v4:Chart":
			chart = r
		}
	}
	pw, key := secrets[config.SFTPPasswordsSecret], secrets[config.SFTPHostKeySecret]
	if pw.URN == "" || key.URN == "" {
		t.Fatalf("want the Secrets %s and %s, got %v", config.SFTPPasswordsSecret, config.SFTPHostKeySecret, secrets)
	}
	for _, s := range []pulumimock.Resource{pw, key} {
		if ns := s.Inputs["metadata"].ObjectValue()["namespace"].StringValue(); ns != sim.Namespace {
			t.Errorf("%s in namespace %q, want %q", s.Name, ns, sim.Namespace)
		}
		if !strings.Contains(strings.Join(chart.Dependencies, " "), s.URN) {
			t.Errorf("the chart does not wait for %s", s.Name)
		}
		if plain := pulumimock.PlainStrings(s.Name, s.Inputs["stringData"]); len(plain) > 0 {
			t.Errorf("%s holds plain data in state: %v", s.Name, plain)
		}
	}
	if v := stringData(pw)["FILES_PASSWORD"]; v.StringValue() != "hunter2" {
		t.Errorf("the passwords Secret holds %v", v)
	}
	if typ := key.Inputs["type"].StringValue(); typ != "kubernetes.io/ssh-auth" {
		t.Errorf("the host key Secret's type is %q", typ)
	}
	derived, err := workloads.DeriveSFTPHostKey(sshKey, sim.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	if got := stringData(key)["ssh-privatekey"]; got.StringValue() != derived {
		t.Errorf("the host key Secret does not hold the key derived from the SSH key")
	}
	vals := chart.Inputs["values"].ObjectValue()["sftp"].ObjectValue()
	if vals["passwordsSecret"].StringValue() != config.SFTPPasswordsSecret || vals["hostKeySecret"].StringValue() != config.SFTPHostKeySecret {
		t.Errorf("chart values sftp %v", vals)
	}
	if v := chart.Inputs["values"].String(); strings.Contains(v, "hunter2") || strings.Contains(v, "PRIVATE KEY") {
		t.Errorf("the chart's values hold a secret: %s", v)
	}
}

// The derived host key is an ed25519 key the SFTP server loads, the same on every call, and
// another for another SSH key or namespace; an empty seed is refused.
func TestDerivedSFTPHostKey(t *testing.T) {
	a, err := workloads.DeriveSFTPHostKey("key-1", "simulator")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := workloads.DeriveSFTPHostKey("key-1", "simulator")
	other, _ := workloads.DeriveSFTPHostKey("key-2", "simulator")
	otherNS, _ := workloads.DeriveSFTPHostKey("key-1", "lab")
	if a != again || a == other || a == otherNS {
		t.Errorf("derived keys: same input equal %v, other key differs %v, other namespace differs %v", a == again, a != other, a != otherNS)
	}
	signer, err := ssh.ParsePrivateKey([]byte(a))
	if err != nil {
		t.Fatalf("the SFTP server cannot load the derived key: %v", err)
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("key type %s", signer.PublicKey().Type())
	}
	if _, err := workloads.DeriveSFTPHostKey(" \n", "simulator"); err == nil || !strings.Contains(err.Error(), "SSH private key is empty") {
		t.Errorf("an empty seed: %v", err)
	}
}

// A stack without sftp sources gets no Secret and values naming none.
func TestNoSFTPNoSecrets(t *testing.T) {
	sim := localStack(t).Simulator
	sim.SFTP.Passwords = map[string]string{"UNUSED": "x"}
	v := workloads.Values(sim, localStack(t).Versions, "k:9092", "c", testDigest)["sftp"].(map[string]any)
	if v["passwordsSecret"] != "" || v["hostKeySecret"] != "" {
		t.Errorf("tcp-only stack: sftp values %v", v)
	}
}

// stringData is a Secret's stringData, revealed.
func stringData(r pulumimock.Resource) resource.PropertyMap {
	return pulumimock.Reveal(r.Inputs["stringData"]).ObjectValue()
}
