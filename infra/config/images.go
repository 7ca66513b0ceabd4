package config

// Image repositories of what simlab's own layers run, or make an operator
// run, outside any chart's values and kubeadm's list. Their tags are pins in
// Versions. The artifact mirror copies exactly Config.Images, the images in
// the mirrored charts' values and manifests, and kubeadm's own list; the
// layers build their objects from the same functions, so the two cannot
// disagree.
const (
	// FlannelImageRepo and FlannelCNIImageRepo are Flannel's DaemonSet images.
	FlannelImageRepo    = "ghcr.io/flannel-io/flannel"
	FlannelCNIImageRepo = "ghcr.io/flannel-io/flannel-cni-plugin"
	// CephImageRepo is the Ceph image of the CephCluster.
	CephImageRepo = "quay.io/ceph/ceph"
	// StrimziKafkaImageRepo is the Kafka image Strimzi's operator runs for a
	// Kafka version: <repo>:<strimzi>-kafka-<kafka> (its STRIMZI_KAFKA_IMAGES).
	StrimziKafkaImageRepo = "quay.io/strimzi/kafka"
)

// FlannelImage is the flannel daemon image.
func (v Versions) FlannelImage() string { return FlannelImageRepo + ":" + v.Flannel }

// FlannelCNIImage is the init image that installs flannel's CNI plugin.
func (v Versions) FlannelCNIImage() string { return FlannelCNIImageRepo + ":" + v.FlannelCNIPlugin }

// CephImage is the Ceph image the CephCluster runs.
func (v Versions) CephImage() string { return CephImageRepo + ":" + v.Ceph }

// StrimziKafkaImage is the image Strimzi runs the pinned Kafka version with.
func (v Versions) StrimziKafkaImage() string {
	return StrimziKafkaImageRepo + ":" + v.Strimzi + "-kafka-" + v.Kafka
}

// StackImage is an image the stack runs and the layer that runs it.
type StackImage struct {
	Ref, From string
}

// Images lists the upstream images the stack's own layers run, or make an
// operator run: Flannel's (when simlab bootstraps the cluster), Ceph's,
// Strimzi's Kafka image and the in-cluster NFS server. It leaves out the
// images kubeadm pulls (the mirror asks the pinned kubeadm), those named by
// the charts' values and the manifests (the mirror reads the files), and the
// simulator (built by `simlab image build`, not mirrored).
func (c *Config) Images() []StackImage {
	v := c.Versions
	var out []StackImage
	if c.Provider != ProviderExisting {
		out = append(out, StackImage{v.FlannelImage(), "cluster"}, StackImage{v.FlannelCNIImage(), "cluster"})
	}
	if c.Storage.Ceph.Enabled {
		out = append(out, StackImage{v.CephImage(), "storage"})
	}
	if c.Storage.Kafka.Enabled {
		out = append(out, StackImage{v.StrimziKafkaImage(), "storage"})
	}
	if c.Storage.NFS.Enabled && c.Storage.NFS.Server == "" {
		out = append(out, StackImage{v.NFSServerImage, "storage"})
	}
	return out
}
