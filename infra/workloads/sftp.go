package workloads

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
)

// sftpValues names the Secrets sftp workers mount: the passwords' when the stack gives any,
// the host key's whenever a source uses sftp.
func sftpValues(sim config.Simulator) map[string]any {
	v := map[string]any{"passwordsSecret": "", "hostKeySecret": ""}
	if !sim.HasSFTP() {
		return v
	}
	if len(sim.SFTP.Passwords) > 0 {
		v["passwordsSecret"] = config.SFTPPasswordsSecret
	}
	v["hostKeySecret"] = config.SFTPHostKeySecret
	return v
}

// sftpSecrets registers the Secrets sftpValues names, their data as Pulumi secrets (and so
// encrypted in state): the passwords by environment variable, and the host key as a
// kubernetes.io/ssh-auth Secret (ssh-privatekey), the configured one or DeriveSFTPHostKey's.
func sftpSecrets(ctx *pulumi.Context, name string, sim config.Simulator, seed pulumi.StringInput, opts []pulumi.ResourceOption) ([]pulumi.Resource, error) {
	names := sftpValues(sim)
	var out []pulumi.Resource
	meta := func(n string) *metav1.ObjectMetaArgs {
		return &metav1.ObjectMetaArgs{Name: pulumi.String(n), Namespace: pulumi.String(sim.Namespace),
			Labels: pulumi.StringMap{"app.kubernetes.io/instance": pulumi.String(ReleaseName), "app.kubernetes.io/managed-by": pulumi.String("simlab")}}
	}
	if names["passwordsSecret"] != "" {
		data := pulumi.StringMap{}
		for env, pw := range sim.SFTP.Passwords {
			data[env] = pulumi.ToSecret(pulumi.String(pw)).(pulumi.StringOutput)
		}
		s, err := corev1.NewSecret(ctx, name+"-sftp-passwords", &corev1.SecretArgs{
			Metadata: meta(config.SFTPPasswordsSecret), Type: pulumi.String("Opaque"), StringData: data,
		}, opts...)
		if err != nil {
			return nil, fmt.Errorf("sftp passwords secret: %w", err)
		}
		out = append(out, s)
	}
	if names["hostKeySecret"] != "" {
		var key pulumi.StringOutput
		switch {
		case sim.SFTP.HostKey != "":
			key = pulumi.ToSecret(pulumi.String(sim.SFTP.HostKey)).(pulumi.StringOutput)
		case seed != nil:
			key = pulumi.ToSecret(seed.ToStringOutput().ApplyT(func(k string) (string, error) {
				return DeriveSFTPHostKey(k, sim.Namespace)
			})).(pulumi.StringOutput)
		default:
			return nil, fmt.Errorf("simlab:simulator.sftp.hostKey: must be set when a source uses sftp and the stack has no SSH private key to derive it from")
		}
		s, err := corev1.NewSecret(ctx, name+"-sftp-host-key", &corev1.SecretArgs{
			Metadata: meta(config.SFTPHostKeySecret), Type: pulumi.String("kubernetes.io/ssh-auth"),
			StringData: pulumi.StringMap{"ssh-privatekey": key},
		}, opts...)
		if err != nil {
			return nil, fmt.Errorf("sftp host key secret: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// DeriveSFTPHostKey returns the ed25519 SFTP host key (PKCS #8 PEM) of a stack whose config
// gives none: derived from its SSH private key and the simulator's namespace, so every `up`
// gives the same key without keeping one in state, and the key tells nothing about the SSH
// key. An empty seed is refused: anyone could compute its key.
func DeriveSFTPHostKey(sshPrivateKey, namespace string) (string, error) {
	if strings.TrimSpace(sshPrivateKey) == "" {
		return "", fmt.Errorf("the SSH private key is empty: it seeds the SFTP host key (or set simlab:simulator.sftp.hostKey)")
	}
	seed := sha256.Sum256([]byte("simlab sftp host key\x00" + namespace + "\x00" + sshPrivateKey))
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}
