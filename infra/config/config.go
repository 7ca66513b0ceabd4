// Package config owns simlab's typed stack configuration: the shape of every
// `simlab:` key in stacks/Pulumi.<env>.yaml, its defaults, and its validation.
//
// Nothing below this package reads raw Pulumi config. A Config is obtained
// either from a stack file on disk (LoadStackFile, used by `make validate` and
// the tests) or from the config the Pulumi engine hands the program
// (FromEngine, through the Pulumi context). Both paths run the same checks: unknown keys, wrong types and
// bad values are all reported at once, each naming its key, for example
//
//	simlab:workers.count: must be >= 0, got -1
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Namespace is the Pulumi config namespace of the project (its name in Pulumi.yaml).
const Namespace = "simlab"

// Provider names where nodes come from.
const (
	// ProviderLibvirt boots Fedora CoreOS VMs on a libvirt hypervisor reached over SSH.
	ProviderLibvirt = "libvirt"
	// ProviderMetal boots listed bare-metal machines over PXE from the artifact server.
	ProviderMetal = "metal"
	// ProviderExisting uses a running cluster given by a kubeconfig; nodes and cluster layers are skipped.
	ProviderExisting = "existing"
)

// Node roles.
const (
	RoleController = "controller"
	RoleWorker     = "worker"
)

// Config is the whole typed stack configuration. Each field is one top-level
// key `simlab:<json name>` in the stack file.
type Config struct {
	// Cluster holds the cluster's name and networks.
	Cluster Cluster `json:"cluster"`
	// Provider is where nodes come from: libvirt, metal or existing.
	Provider string `json:"provider"`
	// Controllers sizes the control-plane nodes.
	Controllers Pool `json:"controllers"`
	// Workers sizes the worker nodes.
	Workers Pool `json:"workers"`
	// Libvirt is required when Provider is libvirt.
	Libvirt *Libvirt `json:"libvirt,omitempty"`
	// Metal is required when Provider is metal.
	Metal *Metal `json:"metal,omitempty"`
	// Existing is required when Provider is existing.
	Existing *Existing `json:"existing,omitempty"`
	// SSH is how the program and users log in to nodes.
	SSH SSH `json:"ssh"`
	// SSHPrivateKey is the private key used to reach nodes and the hypervisor.
	// It is a Pulumi secret: set it with `pulumi config set --secret simlab:sshPrivateKey < key`.
	// When empty, SSH.PrivateKeyPath is read at run time instead.
	SSHPrivateKey string `json:"sshPrivateKey,omitempty" simlab:"secret"`
	// Artifacts locates the artifact server that serves pinned binaries and Ignition to nodes.
	Artifacts Artifacts `json:"artifacts"`
	// Ignition holds user Butane snippets merged into the rendered node configs.
	Ignition Ignition `json:"ignition"`
	// Versions pins every component; defaults live in versions.go.
	Versions Versions `json:"versions"`
	// Storage toggles and sizes Ceph, Kafka and NFS.
	Storage Storage `json:"storage"`
	// Simulator configures the network simulator's deployment.
	Simulator Simulator `json:"simulator"`
}

// Cluster names the cluster and its networks.
type Cluster struct {
	// Name prefixes node names and labels resources. Lowercase DNS label.
	Name string `json:"name"`
	// PodCIDR is the pod network (Flannel); default 10.244.0.0/16.
	PodCIDR string `json:"podCIDR"`
	// ServiceCIDR is the Service network; default 10.96.0.0/12.
	ServiceCIDR string `json:"serviceCIDR"`
	// DNSDomain is the cluster DNS domain; default cluster.local.
	DNSDomain string `json:"dnsDomain"`
}

// Pool sizes the nodes of one role.
type Pool struct {
	// Count is the number of nodes of this role.
	Count int `json:"count"`
	// CPUs is the number of vCPUs per node (libvirt).
	CPUs int `json:"cpus"`
	// MemoryMiB is the memory per node in MiB (libvirt).
	MemoryMiB int `json:"memoryMiB"`
	// DiskGiB is the root disk size per node in GiB (libvirt).
	DiskGiB int `json:"diskGiB"`
	// CephDiskGiB is the size of the raw data disk given to Ceph (workers only; 0 = no disk).
	CephDiskGiB int `json:"cephDiskGiB,omitempty"`
	// Replace acknowledges that `pulumi up` may replace this role's libvirt
	// machines (new disks; for a controller, a new cluster) when a change
	// needs it: disk sizes, the network, the Ignition. Without it such a
	// change is refused, naming the key (docs/DAY2.md). Workers are then
	// replaced one at a time, and move to the current Fedora CoreOS
	// release. Remove it afterwards.
	Replace bool `json:"replace,omitempty"`
}

// Size is a libvirt machine's size as the stack records it, "<cpus>
// vCPUs, <memoryMiB> MiB": the stack output WorkerSizeOutput and each
// worker's Node annotation simlab.io/size hold it, so an `up` knows which
// machines it resizes (docs/DAY2.md).
func (p Pool) Size() string { return fmt.Sprintf("%d vCPUs, %d MiB", p.CPUs, p.MemoryMiB) }

// WorkerSizeOutput is the stack output recording the workers' Pool.Size at
// the last `up` (libvirt stacks): the next `up` reads it back and, when the
// size changed, resizes the workers one at a time, each drained first.
const WorkerSizeOutput = "workerSize"

// Libvirt describes the hypervisor host for the libvirt provider.
type Libvirt struct {
	// Host is the hypervisor's address, reached over SSH.
	Host string `json:"host"`
	// Port is the hypervisor's SSH port; default 22.
	Port int `json:"port"`
	// User is the SSH user on the hypervisor; default root.
	User string `json:"user"`
	// URI is the libvirt connection URI on the host; default qemu:///system.
	URI string `json:"uri"`
	// Network is the libvirt network nodes attach to; default "default".
	Network string `json:"network"`
	// ImageDir is where base images and node disks live on the host.
	ImageDir string `json:"imageDir"`
	// Addresses optionally pins node IPs by node name (static networking); others use DHCP.
	Addresses map[string]string `json:"addresses,omitempty"`
	// Gateway is the default gateway for static addresses.
	Gateway string `json:"gateway,omitempty"`
	// PrefixLength is the network prefix for static addresses; default 24.
	PrefixLength int `json:"prefixLength,omitempty"`
	// Nameservers are DNS servers for static addresses.
	Nameservers []string `json:"nameservers,omitempty"`
	// ReplaceControllersOnIgnitionChange opts in to recreating controllers when their
	// Ignition changes. Off by default: a controller is never silently replaced.
	ReplaceControllersOnIgnitionChange bool `json:"replaceControllersOnIgnitionChange,omitempty"`
}

// Metal lists bare-metal machines for the metal provider.
type Metal struct {
	// InstallDisk is the disk coreos-installer writes to; default /dev/sda.
	InstallDisk string `json:"installDisk"`
	// CephDisk is the raw disk left to Ceph on workers; default /dev/sdb.
	CephDisk string `json:"cephDisk"`
	// Gateway, PrefixLength and Nameservers configure the static addresses below.
	Gateway      string   `json:"gateway,omitempty"`
	PrefixLength int      `json:"prefixLength,omitempty"`
	Nameservers  []string `json:"nameservers,omitempty"`
	// Machines are the nodes, by name, role, MAC and IP.
	Machines []Machine `json:"machines"`
}

// Machine is one bare-metal node.
type Machine struct {
	Name string `json:"name"`
	Role string `json:"role"`
	MAC  string `json:"mac"`
	IP   string `json:"ip"`
}

// Existing points at a running cluster.
type Existing struct {
	// Kubeconfig is the path to a kubeconfig file (~ is expanded).
	Kubeconfig string `json:"kubeconfig"`
	// Context optionally selects a kubeconfig context.
	Context string `json:"context,omitempty"`
}

// SSH configures logins to nodes.
type SSH struct {
	// User is the login user on nodes; default core.
	User string `json:"user"`
	// AuthorizedKeys are public keys installed for User on every node.
	AuthorizedKeys []string `json:"authorizedKeys"`
	// PrivateKeyPath is read when simlab:sshPrivateKey is not set (~ is expanded).
	PrivateKeyPath string `json:"privateKeyPath,omitempty"`
}

// Artifacts locates the artifact server.
type Artifacts struct {
	// URL is the base URL nodes download artifacts and Ignition from.
	URL string `json:"url"`
	// Dir is the local mirror directory holding manifest.json; default .artifacts.
	Dir string `json:"dir"`
}

// Ignition holds user Butane snippets (each a complete Butane document,
// variant fcos) merged into the rendered configs.
type Ignition struct {
	// Controller snippets apply to every controller.
	Controller []string `json:"controller,omitempty"`
	// Worker snippets apply to every worker.
	Worker []string `json:"worker,omitempty"`
	// Nodes snippets apply to one node, by node name.
	Nodes map[string][]string `json:"nodes,omitempty"`
}

// Storage toggles and sizes the storage layer.
type Storage struct {
	Ceph  Ceph  `json:"ceph"`
	Kafka Kafka `json:"kafka"`
	NFS   NFS   `json:"nfs"`
	// ReadyTimeoutMinutes bounds how long `pulumi up` waits for the CephCluster
	// and the Kafka cluster to be ready (Ceph.ReadyHealth; Strimzi's Ready
	// condition) before it fails naming the one that is not; 0 means
	// DefaultReadyTimeoutMinutes. What depends on them (the simulator) is
	// only installed once they are.
	ReadyTimeoutMinutes int `json:"readyTimeoutMinutes,omitempty"`
	// HelmReleases installs the third-party charts (Rook, Strimzi,
	// csi-driver-nfs) as helm.sh/v3 Releases, visible to `helm list`, instead
	// of helm.sh/v4 Charts (the default: one Pulumi resource, with its own
	// preview, per object). Turning it off adopts the releases' objects
	// without reinstalling anything; turning it on for a stack whose charts
	// are Charts is refused (helm cannot adopt them). docs/DAY2.md.
	HelmReleases bool `json:"helmReleases,omitempty"`
}

// DefaultReadyTimeoutMinutes is Storage.ReadyTimeoutMinutes's default.
const DefaultReadyTimeoutMinutes = 20

// ReadyTimeout is the storage readiness timeout in seconds.
func (s Storage) ReadyTimeout() int {
	if s.ReadyTimeoutMinutes > 0 {
		return s.ReadyTimeoutMinutes * 60
	}
	return DefaultReadyTimeoutMinutes * 60
}

// The Ceph health levels `pulumi up` can wait for (Ceph.ReadyHealth).
const (
	// CephHealthOK waits for Ceph to report HEALTH_OK.
	CephHealthOK = "HEALTH_OK"
	// CephHealthWarn accepts a warning: it waits for Rook's phase Ready
	// (orchestration done), whatever Ceph's health.
	CephHealthWarn = "HEALTH_WARN"
)

// Ceph configures Rook-Ceph.
type Ceph struct {
	// Enabled installs Rook and a CephCluster on the workers' data disks.
	Enabled bool `json:"enabled"`
	// AllowShrink acknowledges that `pulumi up` may lower the Ceph pool
	// size, failure domain or monitor count (fewer workers; their OSDs are
	// drained before they go). Without it such a change is
	// refused on libvirt and metal, naming the key (docs/DAY2.md). Remove it afterwards.
	AllowShrink bool `json:"allowShrink,omitempty"`
	// ReadyHealth is when `pulumi up` counts the CephCluster ready: HEALTH_OK
	// (the default) or HEALTH_WARN (Rook's phase Ready, whatever the health).
	ReadyHealth string `json:"readyHealth,omitempty"`
}

// Kafka configures Strimzi's KRaft Kafka.
type Kafka struct {
	Enabled bool `json:"enabled"`
	// Replicas is the number of broker/controller nodes in the KafkaNodePool.
	Replicas int `json:"replicas"`
	// StorageGiB is the volume size per Kafka node.
	StorageGiB int `json:"storageGiB"`
	// Bootstrap is your own Kafka (host:port, comma-separated for several), used
	// when Enabled is false: the simulator connects there and its controller
	// creates the topics at load (no Strimzi, no KafkaTopic).
	Bootstrap string `json:"bootstrap,omitempty"`
}

// NFS configures the dataset share.
type NFS struct {
	Enabled bool `json:"enabled"`
	// Server is an external NFS server; empty runs an in-cluster server on a Ceph volume.
	Server string `json:"server,omitempty"`
	// Path is the export path on Server.
	Path string `json:"path,omitempty"`
	// SizeGiB is the size of the dataset volume.
	SizeGiB int `json:"sizeGiB"`
	// ExistingClaim is your own dataset volume, used when Enabled is false: a
	// ReadWriteMany PersistentVolumeClaim already in simlab:simulator.namespace
	// holding the datasets. The namespace and the claim are yours: the program
	// creates neither, and destroy leaves both.
	ExistingClaim string `json:"existingClaim,omitempty"`
}

// Simulator configures the network simulator's deployment.
type Simulator struct {
	Enabled bool `json:"enabled"`
	// Namespace the simulator runs in; default simulator.
	Namespace string `json:"namespace"`
	// Image is the simulator image repository; its tag is versions.simulator.
	Image string `json:"image"`
	// SUT is the system under test.
	SUT SUT `json:"sut"`
	// Dataset locates the dataset on the NFS share.
	Dataset Dataset `json:"dataset"`
	// MinWorkers and MaxWorkers bound every worker HPA (max is also capped by partitions).
	MinWorkers int `json:"minWorkers"`
	MaxWorkers int `json:"maxWorkers"`
	// TargetCPUPercent is the HPA's CPU utilisation target.
	TargetCPUPercent int `json:"targetCPUPercent"`
	// ScaleDownSeconds is the HPA's scale-down stabilisation window: how long the workers' CPU
	// must stay low before workers are removed (Kubernetes' default, 300).
	ScaleDownSeconds int `json:"scaleDownStabilizationSeconds"`
	// Sources are the simulated data-source types.
	Sources []SourceType `json:"sources"`
	// SFTP is what the workers of sftp sources need.
	SFTP SFTP `json:"sftp"`
}

// SFTP configures the SFTP server of the workers of sftp sources, from which the SUT pulls
// each source's files. The workloads layer puts both into Kubernetes Secrets the chart mounts
// (SFTPPasswordsSecret, SFTPHostKeySecret); neither reaches the chart's values or a log.
type SFTP struct {
	// Passwords are the sources' login passwords by the environment variable each source's
	// sftp.password_env names in the dataset (docs/DATASET.md). Secrets, set one by one:
	// pulumi config set --secret --path 'simlab:simulator.sftp.passwords.ROUTER_PASSWORD'.
	Passwords map[string]string `json:"passwords,omitempty" simlab:"secret"`
	// HostKey is the SFTP server's private host key (OpenSSH or PEM), the same on every
	// worker and across restarts, so the SUT's known_hosts holds. A secret:
	// pulumi config set --secret simlab:simulator.sftp.hostKey < key. Empty: an ed25519 key
	// derived from the stack's SSH private key (stable across `up`s, telling nothing about
	// it); a stack with neither and an sftp source is refused.
	HostKey string `json:"hostKey,omitempty" simlab:"secret"`
}

// The Secrets the workloads layer makes for sftp workers in simlab:simulator.namespace.
const (
	SFTPPasswordsSecret = SimulatorRelease + "-sftp-passwords"
	SFTPHostKeySecret   = SimulatorRelease + "-sftp-host-key"
)

// DerivesSFTPHostKey reports whether the SFTP host key is derived from the stack's SSH key: a
// source serves over SFTP and simlab:simulator.sftp.hostKey gives no key of its own.
func (s Simulator) DerivesSFTPHostKey() bool { return s.HasSFTP() && s.SFTP.HostKey == "" }

// HasSFTP reports whether a source type serves over SFTP.
func (s Simulator) HasSFTP() bool {
	for _, src := range s.Sources {
		if src.Protocol == "sftp" {
			return true
		}
	}
	return false
}

// SUT is the system under test.
type SUT struct {
	// Address is host:port for TCP push.
	Address string `json:"address"`
}

// Dataset locates the dataset.
type Dataset struct {
	// Path is the directory inside the NFS share holding <type>/<instance>/ folders.
	Path string `json:"path"`
}

// SourceType is one simulated data-source type.
type SourceType struct {
	// Type names the type; it names the topic and the worker Deployment. DNS label.
	Type string `json:"type"`
	// Instances is the number of simulated sources (= partitions) of this type.
	Instances int `json:"instances"`
	// Protocol is tcp (push to the SUT) or sftp (the SUT pulls).
	Protocol string `json:"protocol"`
}

// ExpandHome expands a leading ~ of a path in stack config (ssh.privateKeyPath,
// existing.kubeconfig) to the user's home directory.
func ExpandHome(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("expanding ~: %w", err)
		}
		return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
	}
	return p, nil
}

// The simulator chart's release and its controller's Service: the workloads layer renders the
// chart as SimulatorRelease, whose controller.service.port default is ControllerPort, and
// `simlab campaign --stack` reaches ControllerService in simlab:simulator.namespace there.
const (
	SimulatorRelease  = "simulator"
	ControllerService = SimulatorRelease + "-controller"
	ControllerPort    = 8080
)
