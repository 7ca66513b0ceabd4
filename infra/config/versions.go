package config

// Versions pins every component simlab installs. This file is the ONE place
// where their defaults live; a stack may override any of them under
// `simlab:versions`. Go module versions live in go.mod, test-tool binaries
// (kube-apiserver, etcd, kwok, ...) in tools/go.mod.
type Versions struct {
	// Kubernetes is the kubeadm, kubelet and kubectl release.
	Kubernetes string `json:"kubernetes"`
	// FCOSStream and FCOSRelease pin the Fedora CoreOS image.
	FCOSStream  string `json:"fcosStream"`
	FCOSRelease string `json:"fcosRelease"`
	// Crictl is the cri-tools release.
	Crictl string `json:"crictl"`
	// CNIPlugins is the containernetworking/plugins release.
	CNIPlugins string `json:"cniPlugins"`
	// Flannel is the flannel release (image tag and manifest).
	Flannel string `json:"flannel"`
	// FlannelCNIPlugin is the flannel-cni-plugin image tag.
	FlannelCNIPlugin string `json:"flannelCNIPlugin"`
	// MetricsServer is the metrics-server release.
	MetricsServer string `json:"metricsServer"`
	// Rook is the Rook operator and chart release; Ceph is the Ceph image tag.
	Rook string `json:"rook"`
	Ceph string `json:"ceph"`
	// Strimzi is the Strimzi operator and chart release; Kafka the Kafka version it runs.
	Strimzi string `json:"strimzi"`
	Kafka   string `json:"kafka"`
	// CSIDriverNFS is the csi-driver-nfs chart release.
	CSIDriverNFS string `json:"csiDriverNFS"`
	// NFSServerImage is the in-cluster NFS server image (when no external server is given).
	NFSServerImage string `json:"nfsServerImage"`
	// Simulator is the simulator image tag.
	Simulator string `json:"simulator"`
}

// DefaultVersions returns the pinned defaults.
func DefaultVersions() Versions {
	return Versions{
		Kubernetes:       "v1.34.4",
		FCOSStream:       "stable",
		FCOSRelease:      "42.20251012.3.0",
		Crictl:           "v1.34.0",
		CNIPlugins:       "v1.8.0",
		Flannel:          "v0.27.4",
		FlannelCNIPlugin: "v1.8.0-flannel1",
		MetricsServer:    "v0.9.0",
		Rook:             "v1.18.6",
		Ceph:             "v19.2.3",
		Strimzi:          "0.48.0",
		Kafka:            "4.1.0",
		CSIDriverNFS:     "v4.12.1",
		NFSServerImage:   "registry.k8s.io/volume-nfs:0.8",
		Simulator:        "0.1.0",
	}
}
