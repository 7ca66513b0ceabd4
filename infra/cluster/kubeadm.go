package cluster

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/simlab/simlab/infra/config"
)

// The kubeadm and kubelet configuration types below are the subset of
// kubeadm.k8s.io/v1beta4 and kubelet.config.k8s.io/v1beta1 that simlab sets.
// They are written here (not imported from k8s.io/kubernetes) to keep the root
// module lean; the real kubeadm binary checks every rendered document in the
// tests (`kubeadm config validate`, `kubeadm init phase certs/kubeconfig`).

// API versions of the rendered documents.
const (
	kubeadmAPIVersion = "kubeadm.k8s.io/v1beta4"
	kubeletAPIVersion = "kubelet.config.k8s.io/v1beta1"
)

// Paths on the nodes. Fedora CoreOS mounts /usr read-only, so every plugin
// directory kubelet or the controller-manager writes lives under /var
// (kubeadm#2031).
const (
	// VolumePluginDir is kubelet's and the controller-manager's flex volume directory.
	VolumePluginDir = "/var/lib/kubelet/volumeplugins"
	// CRISocket is containerd's CRI socket on the nodes.
	CRISocket = "unix:///run/containerd/containerd.sock"
	// APIServerPort is the kube-apiserver's secure port.
	APIServerPort = 6443
	// ConfigDir holds the rendered kubeadm configs on a node.
	ConfigDir = "/etc/kubernetes/simlab"
)

// Arg is one command-line flag in kubeadm v1beta4's list form.
type Arg struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// BootstrapToken is kubeadm's bootstrap token entry.
type BootstrapToken struct {
	Token       string   `yaml:"token"`
	Description string   `yaml:"description,omitempty"`
	TTL         string   `yaml:"ttl,omitempty"`
	Usages      []string `yaml:"usages,omitempty"`
	Groups      []string `yaml:"groups,omitempty"`
}

// Taint is a node taint.
type Taint struct {
	Key    string `yaml:"key"`
	Value  string `yaml:"value,omitempty"`
	Effect string `yaml:"effect"`
}

// NodeRegistration is how a node registers with the API server.
type NodeRegistration struct {
	Name             string  `yaml:"name,omitempty"`
	CRISocket        string  `yaml:"criSocket,omitempty"`
	Taints           []Taint `yaml:"taints"`
	KubeletExtraArgs []Arg   `yaml:"kubeletExtraArgs,omitempty"`
}

// APIEndpoint is an advertised API server address.
type APIEndpoint struct {
	AdvertiseAddress string `yaml:"advertiseAddress,omitempty"`
	BindPort         int    `yaml:"bindPort,omitempty"`
}

// InitConfiguration is kubeadm's per-node init document.
type InitConfiguration struct {
	APIVersion       string           `yaml:"apiVersion"`
	Kind             string           `yaml:"kind"`
	BootstrapTokens  []BootstrapToken `yaml:"bootstrapTokens,omitempty"`
	NodeRegistration NodeRegistration `yaml:"nodeRegistration"`
	LocalAPIEndpoint APIEndpoint      `yaml:"localAPIEndpoint"`
}

// Networking holds the cluster's networks.
type Networking struct {
	PodSubnet     string `yaml:"podSubnet"`
	ServiceSubnet string `yaml:"serviceSubnet"`
	DNSDomain     string `yaml:"dnsDomain"`
}

// ControlPlaneComponent holds extra flags of one control-plane component.
type ControlPlaneComponent struct {
	ExtraArgs []Arg    `yaml:"extraArgs,omitempty"`
	CertSANs  []string `yaml:"certSANs,omitempty"`
}

// ClusterConfiguration is kubeadm's cluster-wide document.
type ClusterConfiguration struct {
	APIVersion           string                `yaml:"apiVersion"`
	Kind                 string                `yaml:"kind"`
	ClusterName          string                `yaml:"clusterName"`
	KubernetesVersion    string                `yaml:"kubernetesVersion"`
	ControlPlaneEndpoint string                `yaml:"controlPlaneEndpoint,omitempty"`
	Networking           Networking            `yaml:"networking"`
	APIServer            ControlPlaneComponent `yaml:"apiServer,omitempty"`
	ControllerManager    ControlPlaneComponent `yaml:"controllerManager,omitempty"`
}

// KubeletConfiguration is the kubelet's configuration, uploaded by kubeadm
// init and used by every node that joins.
type KubeletConfiguration struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	// CgroupDriver matches containerd's systemd cgroup driver on Fedora CoreOS.
	CgroupDriver string `yaml:"cgroupDriver"`
	// ServerTLSBootstrap makes kubelets request serving certificates signed by
	// the cluster CA, so metrics-server can verify them (metrics-server#196).
	ServerTLSBootstrap bool `yaml:"serverTLSBootstrap"`
	// RotateCertificates renews the kubelet's client certificate.
	RotateCertificates bool `yaml:"rotateCertificates"`
	// VolumePluginDir is under /var: /usr is read-only on Fedora CoreOS.
	VolumePluginDir string `yaml:"volumePluginDir"`
}

// Discovery tells a joining node how to find and trust the API server.
type Discovery struct {
	BootstrapToken BootstrapTokenDiscovery `yaml:"bootstrapToken"`
}

// BootstrapTokenDiscovery is token-based discovery pinned to the CA's public key.
type BootstrapTokenDiscovery struct {
	Token             string   `yaml:"token"`
	APIServerEndpoint string   `yaml:"apiServerEndpoint"`
	CACertHashes      []string `yaml:"caCertHashes"`
}

// JoinConfiguration is kubeadm's join document for a worker.
type JoinConfiguration struct {
	APIVersion       string           `yaml:"apiVersion"`
	Kind             string           `yaml:"kind"`
	Discovery        Discovery        `yaml:"discovery"`
	NodeRegistration NodeRegistration `yaml:"nodeRegistration"`
}

// InitParams are what the init documents are built from.
type InitParams struct {
	// Cluster holds the name and networks from config.
	Cluster config.Cluster
	// KubernetesVersion is versions.kubernetes.
	KubernetesVersion string
	// NodeName is the controller's name.
	NodeName string
	// AdvertiseAddress is the controller's IP.
	AdvertiseAddress string
	// Token is the bootstrap token (secret).
	Token string
}

// JoinParams are what a worker's join document is built from.
type JoinParams struct {
	// NodeName is the worker's name.
	NodeName string
	// ControllerAddress is the controller's IP (port 6443 is added).
	ControllerAddress string
	// Token is the bootstrap token (secret).
	Token string
	// CACertHash is "sha256:<hex>" of the cluster CA's public key.
	CACertHash string
}

var tokenRE = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// ValidToken reports whether s has kubeadm's bootstrap token format.
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// InitDocuments builds the typed init documents for a controller.
func InitDocuments(p InitParams) (InitConfiguration, ClusterConfiguration, KubeletConfiguration, error) {
	if !ValidToken(p.Token) {
		return InitConfiguration{}, ClusterConfiguration{}, KubeletConfiguration{},
			fmt.Errorf("init config for %s: bootstrap token does not match [a-z0-9]{6}.[a-z0-9]{16}", p.NodeName)
	}
	if net.ParseIP(p.AdvertiseAddress) == nil {
		return InitConfiguration{}, ClusterConfiguration{}, KubeletConfiguration{},
			fmt.Errorf("init config for %s: advertise address %q is not an IP", p.NodeName, p.AdvertiseAddress)
	}
	ic := InitConfiguration{
		APIVersion: kubeadmAPIVersion, Kind: "InitConfiguration",
		BootstrapTokens: []BootstrapToken{{
			Token:       p.Token,
			Description: "simlab: joins workers; refreshed before each join",
			TTL:         "24h0m0s",
			Usages:      []string{"signing", "authentication"},
			Groups:      []string{"system:bootstrappers:kubeadm:default-node-token"},
		}},
		NodeRegistration: NodeRegistration{
			Name:      p.NodeName,
			CRISocket: CRISocket,
			Taints:    []Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}},
		},
		LocalAPIEndpoint: APIEndpoint{AdvertiseAddress: p.AdvertiseAddress, BindPort: APIServerPort},
	}
	cc := ClusterConfiguration{
		APIVersion: kubeadmAPIVersion, Kind: "ClusterConfiguration",
		ClusterName:          p.Cluster.Name,
		KubernetesVersion:    p.KubernetesVersion,
		ControlPlaneEndpoint: net.JoinHostPort(p.AdvertiseAddress, fmt.Sprint(APIServerPort)),
		Networking: Networking{
			PodSubnet:     p.Cluster.PodCIDR,
			ServiceSubnet: p.Cluster.ServiceCIDR,
			DNSDomain:     p.Cluster.DNSDomain,
		},
		APIServer: ControlPlaneComponent{CertSANs: []string{p.NodeName, p.AdvertiseAddress}},
		ControllerManager: ControlPlaneComponent{ExtraArgs: []Arg{
			{Name: "flex-volume-plugin-dir", Value: VolumePluginDir},
		}},
	}
	kc := KubeletConfiguration{
		APIVersion: kubeletAPIVersion, Kind: "KubeletConfiguration",
		CgroupDriver:       "systemd",
		ServerTLSBootstrap: true,
		RotateCertificates: true,
		VolumePluginDir:    VolumePluginDir,
	}
	return ic, cc, kc, nil
}

// RenderInit renders the controller's kubeadm init config: InitConfiguration,
// ClusterConfiguration and KubeletConfiguration as one multi-document YAML.
func RenderInit(p InitParams) ([]byte, error) {
	ic, cc, kc, err := InitDocuments(p)
	if err != nil {
		return nil, err
	}
	return marshalDocs(ic, cc, kc)
}

// RenderTokenRefresh renders what `kubeadm token create --config` reads to
// (re)create the bootstrap token for node's join with a fresh one-hour TTL:
// an InitConfiguration holding only the token, so that the token reaches
// kubeadm in a file, never on a command line (`ps` on the controller), and
// a ClusterConfiguration naming the release, without which kubeadm looks
// the stable release up on the internet.
func RenderTokenRefresh(node, token, kubernetesVersion string) ([]byte, error) {
	if !ValidToken(token) {
		return nil, fmt.Errorf("token config for %s: bootstrap token does not match [a-z0-9]{6}.[a-z0-9]{16}", node)
	}
	type release struct {
		APIVersion        string `yaml:"apiVersion"`
		Kind              string `yaml:"kind"`
		KubernetesVersion string `yaml:"kubernetesVersion"`
	}
	return marshalDocs(release{APIVersion: kubeadmAPIVersion, Kind: "ClusterConfiguration", KubernetesVersion: kubernetesVersion}, InitConfiguration{
		APIVersion: kubeadmAPIVersion, Kind: "InitConfiguration",
		BootstrapTokens: []BootstrapToken{{
			Token:       token,
			Description: "simlab: join " + node,
			TTL:         "1h0m0s",
			Usages:      []string{"signing", "authentication"},
			Groups:      []string{"system:bootstrappers:kubeadm:default-node-token"},
		}},
	})
}

// JoinDocument builds a worker's typed join document.
func JoinDocument(p JoinParams) (JoinConfiguration, error) {
	if !ValidToken(p.Token) {
		return JoinConfiguration{}, fmt.Errorf("join config for %s: bootstrap token does not match [a-z0-9]{6}.[a-z0-9]{16}", p.NodeName)
	}
	if net.ParseIP(p.ControllerAddress) == nil {
		return JoinConfiguration{}, fmt.Errorf("join config for %s: controller address %q is not an IP", p.NodeName, p.ControllerAddress)
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(p.CACertHash) {
		return JoinConfiguration{}, fmt.Errorf("join config for %s: CA cert hash must be sha256:<64 hex digits>", p.NodeName)
	}
	return JoinConfiguration{
		APIVersion: kubeadmAPIVersion, Kind: "JoinConfiguration",
		Discovery: Discovery{BootstrapToken: BootstrapTokenDiscovery{
			Token:             p.Token,
			APIServerEndpoint: net.JoinHostPort(p.ControllerAddress, fmt.Sprint(APIServerPort)),
			CACertHashes:      []string{p.CACertHash},
		}},
		NodeRegistration: NodeRegistration{Name: p.NodeName, CRISocket: CRISocket, Taints: []Taint{}},
	}, nil
}

// RenderJoin renders a worker's kubeadm join config.
func RenderJoin(p JoinParams) ([]byte, error) {
	jc, err := JoinDocument(p)
	if err != nil {
		return nil, err
	}
	return marshalDocs(jc)
}

func marshalDocs(docs ...any) ([]byte, error) {
	var buf bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("encoding kubeadm document %d: %w", i+1, err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("encoding kubeadm document %d: %w", i+1, err)
		}
	}
	return buf.Bytes(), nil
}

// CACertHashFromKubeconfig returns kubeadm's discovery hash,
// "sha256:<hex>" of the DER-encoded SubjectPublicKeyInfo of the cluster CA
// embedded in an admin kubeconfig (certificate-authority-data).
func CACertHashFromKubeconfig(kubeconfig string) (string, error) {
	var kc struct {
		Clusters []struct {
			Cluster struct {
				CAData string `yaml:"certificate-authority-data"`
			} `yaml:"cluster"`
		} `yaml:"clusters"`
	}
	if err := yaml.Unmarshal([]byte(kubeconfig), &kc); err != nil {
		return "", fmt.Errorf("parsing admin kubeconfig: %w", err)
	}
	if len(kc.Clusters) == 0 || kc.Clusters[0].Cluster.CAData == "" {
		return "", fmt.Errorf("admin kubeconfig: no clusters[0].cluster.certificate-authority-data")
	}
	pemBytes, err := base64.StdEncoding.DecodeString(kc.Clusters[0].Cluster.CAData)
	if err != nil {
		return "", fmt.Errorf("admin kubeconfig: certificate-authority-data: %w", err)
	}
	return CACertHash(pemBytes)
}

// CACertHash returns "sha256:<hex>" of a PEM CA certificate's public key, as
// `kubeadm join --discovery-token-ca-cert-hash` expects.
func CACertHash(pemBytes []byte) (string, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("CA certificate: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
