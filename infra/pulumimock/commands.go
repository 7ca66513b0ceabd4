package pulumimock

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ClientKeyMarker is the admin kubeconfig's (fake) client key; it must never
// appear in plain text.
const ClientKeyMarker = "TESTONLY-client-key-of-the-admin-kubeconfig"

var (
	kubeconfigMu sync.Mutex
	kubeconfigs  = map[string]kubeconfigCA{}
)

type kubeconfigCA struct {
	kubeconfig string
	ca         []byte
}

// Kubeconfig returns an admin kubeconfig like kubeadm's, with a freshly
// generated CA (one per process) and ClientKeyMarker as client key, and the
// CA certificate in PEM.
func Kubeconfig() (string, []byte) { return KubeconfigFor("") }

// KubeconfigFor is Kubeconfig for one cluster instance: each instance (the
// ID of the command that fetched it) gets its own CA, as a re-run kubeadm
// init would.
func KubeconfigFor(instance string) (string, []byte) {
	kubeconfigMu.Lock()
	defer kubeconfigMu.Unlock()
	if k, ok := kubeconfigs[instance]; ok {
		return k.kubeconfig, k.ca
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    certificate-authority-data: %s
    server: https://192.168.122.10:6443
users:
- name: kubernetes-admin
  user:
    client-key-data: %s
`, base64.StdEncoding.EncodeToString(caPEM), base64.StdEncoding.EncodeToString([]byte(ClientKeyMarker)))
	kubeconfigs[instance] = kubeconfigCA{kubeconfig, caPEM}
	return kubeconfig, caPEM
}

// CommandOutputs is what the nodes' and cluster's commands would print:
// stdout of the admin kubeconfig fetch (Kubeconfig), a libvirt domain's UUID,
// a DHCP lease (a stable 192.168.122.x per node) and a machine ID. Pass it to
// Run as WithState(CommandOutputs). Under WithReplacementIDs the UUID, the
// machine ID and the kubeconfig's CA are those of the resource's ID, so they
// change when the command is replaced, as the real ones would.
func CommandOutputs(args pulumi.MockResourceArgs) resource.PropertyMap {
	if args.TypeToken != "command:remote:Command" && args.TypeToken != "command:local:Command" {
		return nil
	}
	out := ""
	instance := args.Name
	if args.ID != "" {
		instance = args.ID
	}
	switch n := args.Name; {
	case strings.HasSuffix(n, "-admin-kubeconfig"):
		if args.ID != "" {
			out, _ = KubeconfigFor(args.ID)
		} else {
			out, _ = Kubeconfig()
		}
	case strings.HasSuffix(n, "-domain"):
		out = "uuid-of-" + instance + "\n"
	case strings.HasSuffix(n, "-address"):
		h := fnv.New32a()
		h.Write([]byte(n))
		out = fmt.Sprintf("192.168.122.%d\n", 10+h.Sum32()%240)
	case strings.HasSuffix(n, "-ssh"):
		out = "machine-id-" + instance + "\n"
	}
	return resource.PropertyMap{"stdout": resource.NewProperty(out), "stderr": resource.NewProperty("")}
}
