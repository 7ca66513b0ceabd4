package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

var (
	dnsLabel      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomain  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	semverish     = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)
	sshPublicKey  = regexp.MustCompile(`^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+( .*)?$`)
	envName       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	supportedRole = map[string]bool{RoleController: true, RoleWorker: true}
)

// Validate checks a configuration that did not come through a loader (for
// example one built in a test) and returns every problem at once.
func (c *Config) Validate() error {
	errs := &Errors{}
	c.validate(map[string]bool{}, map[string]int{}, errs)
	return errs.err()
}

// resolveCounts derives node counts from the machine list for metal stacks.
func (c *Config) resolveCounts(set map[string]bool) {
	if c.Provider != ProviderMetal || c.Metal == nil {
		return
	}
	n := map[string]int{}
	for _, m := range c.Metal.Machines {
		n[m.Role]++
	}
	if !set["controllers.count"] {
		c.Controllers.Count = n[RoleController]
	}
	if !set["workers.count"] {
		c.Workers.Count = n[RoleWorker]
	}
}

func (c *Config) validate(set map[string]bool, lines map[string]int, errs *Errors) {
	k := func(path string) (string, int) {
		full := Namespace + ":" + path
		return full, lines[full]
	}
	bad := func(path, format string, args ...any) {
		key, line := k(path)
		errs.add(key, line, format, args...)
	}

	// cluster
	if !dnsLabel.MatchString(c.Cluster.Name) || len(c.Cluster.Name) > 40 {
		bad("cluster.name", "must be a lowercase DNS label of at most 40 characters, got %q", c.Cluster.Name)
	}
	pod := checkCIDR(bad, "cluster.podCIDR", c.Cluster.PodCIDR)
	svc := checkCIDR(bad, "cluster.serviceCIDR", c.Cluster.ServiceCIDR)
	if pod.IsValid() && svc.IsValid() && pod.Overlaps(svc) {
		bad("cluster.serviceCIDR", "must not overlap simlab:cluster.podCIDR %s, got %s", pod, svc)
	}
	if c.Cluster.DNSDomain == "" {
		bad("cluster.dnsDomain", "must not be empty")
	}

	// provider and pools
	switch c.Provider {
	case ProviderLibvirt, ProviderMetal, ProviderExisting:
	default:
		bad("provider", "must be one of libvirt, metal, existing; got %q", c.Provider)
	}
	managed := c.Provider == ProviderLibvirt || c.Provider == ProviderMetal
	if managed {
		switch n := c.Controllers.Count; {
		case n < 1:
			bad("controllers.count", "must be >= 1, got %d", n)
		case n%2 == 0:
			bad("controllers.count", "must be odd (etcd needs a majority), got %d", n)
		case n > 1:
			bad("controllers.count", "must be 1: highly available control planes are not supported yet, got %d", n)
		}
		if c.Workers.Count < 0 {
			bad("workers.count", "must be >= 0, got %d", c.Workers.Count)
		}
		checkPool(bad, "controllers", c.Controllers, 2, 2048)
		checkPool(bad, "workers", c.Workers, 1, 1024)
		if c.Controllers.CephDiskGiB != 0 {
			bad("controllers.cephDiskGiB", "Ceph data disks go on workers only; must be 0, got %d", c.Controllers.CephDiskGiB)
		}
	}

	switch c.Provider {
	case ProviderLibvirt:
		c.validateLibvirt(bad)
	case ProviderMetal:
		c.validateMetal(bad, set)
	case ProviderExisting:
		if c.Existing == nil || c.Existing.Kubeconfig == "" {
			bad("existing.kubeconfig", "must be set when simlab:provider is existing (path to a kubeconfig file)")
		}
	}

	// ssh and artifacts: only needed when simlab provisions nodes
	if managed {
		if c.SSH.User == "" {
			bad("ssh.user", "must not be empty")
		}
		if len(c.SSH.AuthorizedKeys) == 0 {
			bad("ssh.authorizedKeys", "must list at least one public key when simlab:provider is %s", c.Provider)
		}
		for i, key := range c.SSH.AuthorizedKeys {
			if !sshPublicKey.MatchString(strings.TrimSpace(key)) {
				bad(fmt.Sprintf("ssh.authorizedKeys[%d]", i), "must be an OpenSSH public key (ssh-ed25519 AAAA...), got %q", truncate(key, 40))
			}
		}
		if c.SSHPrivateKey == "" && c.SSH.PrivateKeyPath == "" {
			bad("ssh.privateKeyPath", "must be set unless the secret simlab:sshPrivateKey is (run: pulumi config set --secret simlab:sshPrivateKey < ~/.ssh/id_ed25519)")
		}
		u, err := url.Parse(c.Artifacts.URL)
		if c.Artifacts.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("artifacts.url", "must be the http(s) base URL of the artifact server, got %q", c.Artifacts.URL)
		}
	}
	if c.Artifacts.Dir == "" {
		bad("artifacts.dir", "must not be empty")
	}

	// ignition snippets may only name existing nodes
	names := map[string]bool{}
	for _, n := range c.Nodes() {
		names[n.Name] = true
	}
	for name := range c.Ignition.Nodes {
		if !names[name] {
			bad("ignition.nodes."+name, "names no node of this stack (nodes: %s)", strings.Join(sortedSet(names), ", "))
		}
	}

	c.validateVersions(bad)
	c.validateStorage(bad, managed)
	c.validateSimulator(bad)
}

func (c *Config) validateLibvirt(bad func(string, string, ...any)) {
	l := c.Libvirt
	if l == nil {
		bad("libvirt", "must be set when simlab:provider is libvirt (at least libvirt.host)")
		return
	}
	if l.Host == "" {
		bad("libvirt.host", "must name the hypervisor host reached over SSH")
	}
	if l.Port < 1 || l.Port > 65535 {
		bad("libvirt.port", "must be a TCP port 1-65535, got %d", l.Port)
	}
	if l.User == "" {
		bad("libvirt.user", "must not be empty")
	}
	if !strings.Contains(l.URI, "://") {
		bad("libvirt.uri", "must be a libvirt URI such as qemu:///system, got %q", l.URI)
	}
	if l.Network == "" {
		bad("libvirt.network", "must name a libvirt network")
	}
	if !strings.HasPrefix(l.ImageDir, "/") {
		bad("libvirt.imageDir", "must be an absolute path on the hypervisor, got %q", l.ImageDir)
	}
	if c.Workers.CephDiskGiB < 0 {
		bad("workers.cephDiskGiB", "must be >= 0, got %d", c.Workers.CephDiskGiB)
	}
	if c.Storage.Ceph.Enabled && c.Workers.Count > 0 && c.Workers.CephDiskGiB < 5 {
		bad("workers.cephDiskGiB", "must be >= 5 when simlab:storage.ceph.enabled is true, got %d", c.Workers.CephDiskGiB)
	}
	names := map[string]bool{}
	for _, n := range c.Nodes() {
		names[n.Name] = true
	}
	seen := map[string]string{}
	for name, ip := range l.Addresses {
		if !names[name] {
			bad("libvirt.addresses."+name, "names no node of this stack (nodes: %s)", strings.Join(sortedSet(names), ", "))
		}
		if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
			bad("libvirt.addresses."+name, "must be an IPv4 address, got %q", ip)
		} else if other, dup := seen[ip]; dup {
			bad("libvirt.addresses."+name, "address %s is also used by %s", ip, other)
		}
		seen[ip] = name
	}
	if len(l.Addresses) > 0 {
		if _, err := netip.ParseAddr(l.Gateway); err != nil {
			bad("libvirt.gateway", "must be an IP address when libvirt.addresses is set, got %q", l.Gateway)
		}
		if l.PrefixLength < 1 || l.PrefixLength > 32 {
			bad("libvirt.prefixLength", "must be 1-32, got %d", l.PrefixLength)
		}
	}
	for i, ns := range l.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			bad(fmt.Sprintf("libvirt.nameservers[%d]", i), "must be an IP address, got %q", ns)
		}
	}
}

func (c *Config) validateMetal(bad func(string, string, ...any), set map[string]bool) {
	m := c.Metal
	if m == nil {
		bad("metal", "must be set when simlab:provider is metal (at least metal.machines)")
		return
	}
	if !strings.HasPrefix(m.InstallDisk, "/dev/") {
		bad("metal.installDisk", "must be a device path such as /dev/sda, got %q", m.InstallDisk)
	}
	if !strings.HasPrefix(m.CephDisk, "/dev/") {
		bad("metal.cephDisk", "must be a device path such as /dev/sdb, got %q", m.CephDisk)
	}
	if len(m.Machines) == 0 {
		bad("metal.machines", "must list at least one controller")
	}
	if m.Gateway != "" {
		if _, err := netip.ParseAddr(m.Gateway); err != nil {
			bad("metal.gateway", "must be an IP address, got %q", m.Gateway)
		}
	}
	if m.PrefixLength < 1 || m.PrefixLength > 32 {
		bad("metal.prefixLength", "must be 1-32, got %d", m.PrefixLength)
	}
	names, macs, ips := map[string]int{}, map[string]int{}, map[string]int{}
	roles := map[string]int{}
	for i, mc := range m.Machines {
		p := fmt.Sprintf("metal.machines[%d]", i)
		if !dnsLabel.MatchString(mc.Name) {
			bad(p+".name", "must be a lowercase DNS label, got %q", mc.Name)
		} else if j, dup := names[mc.Name]; dup {
			bad(p+".name", "%q is also the name of metal.machines[%d]", mc.Name, j)
		}
		names[mc.Name] = i
		if !supportedRole[mc.Role] {
			bad(p+".role", "must be controller or worker, got %q", mc.Role)
		}
		roles[mc.Role]++
		if hw, err := net.ParseMAC(mc.MAC); err != nil || len(hw) != 6 {
			bad(p+".mac", "must be a MAC address such as 52:54:00:12:34:56, got %q", mc.MAC)
		} else if j, dup := macs[hw.String()]; dup {
			bad(p+".mac", "%s is also the MAC of metal.machines[%d]", hw, j)
		} else {
			macs[hw.String()] = i
		}
		if a, err := netip.ParseAddr(mc.IP); err != nil || !a.Is4() {
			bad(p+".ip", "must be an IPv4 address, got %q", mc.IP)
		} else if j, dup := ips[mc.IP]; dup {
			bad(p+".ip", "%s is also the IP of metal.machines[%d]", mc.IP, j)
		} else {
			ips[mc.IP] = i
		}
	}
	if set["controllers.count"] && c.Controllers.Count != roles[RoleController] {
		bad("controllers.count", "is %d but metal.machines lists %d controllers; remove the key or make them agree", c.Controllers.Count, roles[RoleController])
	}
	if set["workers.count"] && c.Workers.Count != roles[RoleWorker] {
		bad("workers.count", "is %d but metal.machines lists %d workers; remove the key or make them agree", c.Workers.Count, roles[RoleWorker])
	}
}

func (c *Config) validateVersions(bad func(string, string, ...any)) {
	v := c.Versions
	for key, val := range map[string]string{"kubernetes": v.Kubernetes, "crictl": v.Crictl, "cniPlugins": v.CNIPlugins,
		"flannel": v.Flannel, "metricsServer": v.MetricsServer, "rook": v.Rook, "ceph": v.Ceph, "csiDriverNFS": v.CSIDriverNFS} {
		if !semverish.MatchString(val) {
			bad("versions."+key, "must be a release tag like v1.2.3, got %q", val)
		}
	}
	for key, val := range map[string]string{"fcosStream": v.FCOSStream, "fcosRelease": v.FCOSRelease, "strimzi": v.Strimzi,
		"kafka": v.Kafka, "flannelCNIPlugin": v.FlannelCNIPlugin, "nfsServerImage": v.NFSServerImage, "simulator": v.Simulator} {
		if val == "" || strings.ContainsAny(val, " \t\n") {
			bad("versions."+key, "must be a non-empty version without spaces, got %q", val)
		}
	}
	switch v.FCOSStream {
	case "stable", "testing", "next":
	default:
		bad("versions.fcosStream", "must be stable, testing or next, got %q", v.FCOSStream)
	}
}

func (c *Config) validateStorage(bad func(string, string, ...any), managed bool) {
	s := c.Storage
	if s.Ceph.Enabled && managed && c.Workers.Count == 0 {
		bad("storage.ceph.enabled", "needs at least one worker for Ceph OSDs (simlab:workers.count is 0)")
	}
	if h := s.Ceph.ReadyHealth; h != "" && h != CephHealthOK && h != CephHealthWarn {
		bad("storage.ceph.readyHealth", "must be %s or %s, got %q", CephHealthOK, CephHealthWarn, h)
	}
	if s.ReadyTimeoutMinutes < 0 {
		bad("storage.readyTimeoutMinutes", "must be >= 0 (0: %d), got %d", DefaultReadyTimeoutMinutes, s.ReadyTimeoutMinutes)
	}
	if s.Kafka.Enabled && s.Kafka.Bootstrap != "" {
		bad("storage.kafka.bootstrap", "is your own Kafka, only with simlab:storage.kafka.enabled false (Strimzi's Kafka has its own bootstrap), got %q", s.Kafka.Bootstrap)
	}
	if s.Kafka.Bootstrap != "" {
		for _, hp := range strings.Split(s.Kafka.Bootstrap, ",") {
			if host, port, err := net.SplitHostPort(hp); err != nil || host == "" || port == "" {
				bad("storage.kafka.bootstrap", "must be host:port[,host:port...], got %q", s.Kafka.Bootstrap)
				break
			}
		}
	}
	if s.NFS.Enabled && s.NFS.ExistingClaim != "" {
		bad("storage.nfs.existingClaim", "is your own dataset claim, only with simlab:storage.nfs.enabled false (the layer's share has its own claim), got %q", s.NFS.ExistingClaim)
	}
	if s.NFS.ExistingClaim != "" && !dnsSubdomain.MatchString(s.NFS.ExistingClaim) {
		bad("storage.nfs.existingClaim", "must be a PersistentVolumeClaim name (lowercase DNS subdomain), got %q", s.NFS.ExistingClaim)
	}
	if s.Kafka.Enabled {
		if s.Kafka.Replicas < 1 {
			bad("storage.kafka.replicas", "must be >= 1, got %d", s.Kafka.Replicas)
		}
		if s.Kafka.StorageGiB < 1 {
			bad("storage.kafka.storageGiB", "must be >= 1, got %d", s.Kafka.StorageGiB)
		}
	}
	if s.NFS.Enabled {
		if s.NFS.SizeGiB < 1 {
			bad("storage.nfs.sizeGiB", "must be >= 1, got %d", s.NFS.SizeGiB)
		}
		if s.NFS.Server != "" && !strings.HasPrefix(s.NFS.Path, "/") {
			bad("storage.nfs.path", "must be the absolute export path on simlab:storage.nfs.server, got %q", s.NFS.Path)
		}
		if s.NFS.Server == "" && !s.Ceph.Enabled {
			bad("storage.nfs.server", "must be set when simlab:storage.ceph.enabled is false (the in-cluster NFS server needs a Ceph volume)")
		}
	}
}

func (c *Config) validateSimulator(bad func(string, string, ...any)) {
	s := c.Simulator
	if !s.Enabled {
		return
	}
	if !c.Storage.Kafka.Enabled && c.Storage.Kafka.Bootstrap == "" {
		bad("simulator.enabled", "needs simlab:storage.kafka.enabled or your own Kafka in simlab:storage.kafka.bootstrap: the simulator keeps its records in Kafka")
	}
	if !c.Storage.NFS.Enabled && c.Storage.NFS.ExistingClaim == "" {
		bad("simulator.enabled", "needs simlab:storage.nfs.enabled or your own dataset claim in simlab:storage.nfs.existingClaim: datasets are read from a shared volume")
	}
	if !dnsLabel.MatchString(s.Namespace) {
		bad("simulator.namespace", "must be a lowercase DNS label, got %q", s.Namespace)
	}
	if s.Image == "" || strings.Contains(s.Image, " ") || strings.Contains(s.Image, "@") || strings.Count(s.Image[strings.LastIndex(s.Image, "/")+1:], ":") > 0 {
		bad("simulator.image", "must be an image repository without tag (the tag is simlab:versions.simulator), got %q", s.Image)
	}
	if !strings.HasPrefix(s.Dataset.Path, "/") {
		bad("simulator.dataset.path", "must be an absolute path inside the NFS share, got %q", s.Dataset.Path)
	}
	if s.MinWorkers < 1 {
		bad("simulator.minWorkers", "must be >= 1, got %d", s.MinWorkers)
	}
	if s.MaxWorkers < s.MinWorkers {
		bad("simulator.maxWorkers", "must be >= simlab:simulator.minWorkers (%d), got %d", s.MinWorkers, s.MaxWorkers)
	}
	if s.TargetCPUPercent < 1 || s.TargetCPUPercent > 100 {
		bad("simulator.targetCPUPercent", "must be 1-100, got %d", s.TargetCPUPercent)
	}
	if s.ScaleDownSeconds < 0 || s.ScaleDownSeconds > 3600 {
		bad("simulator.scaleDownStabilizationSeconds", "must be 0-3600 (the HPA's limit), got %d", s.ScaleDownSeconds)
	}
	if len(s.Sources) == 0 {
		bad("simulator.sources", "must list at least one data-source type")
	}
	needsSUT := false
	seen := map[string]int{}
	for i, src := range s.Sources {
		p := fmt.Sprintf("simulator.sources[%d]", i)
		if !dnsLabel.MatchString(src.Type) || len(src.Type) > 40 {
			bad(p+".type", "must be a lowercase DNS label of at most 40 characters, got %q", src.Type)
		} else if j, dup := seen[src.Type]; dup {
			bad(p+".type", "%q is also the type of simulator.sources[%d]", src.Type, j)
		}
		seen[src.Type] = i
		if src.Instances < 1 {
			bad(p+".instances", "must be >= 1, got %d", src.Instances)
		}
		switch src.Protocol {
		case "tcp":
			needsSUT = true
		case "sftp":
		default:
			bad(p+".protocol", "must be tcp or sftp, got %q", src.Protocol)
		}
	}
	for env := range s.SFTP.Passwords {
		if !envName.MatchString(env) {
			bad("simulator.sftp.passwords."+env, "must be named like an environment variable (letters, digits, _; not starting with a digit), as a source's sftp.password_env names it")
		}
	}
	if k := s.SFTP.HostKey; k != "" && k != secretPlaceholder {
		if _, err := ssh.ParseRawPrivateKey([]byte(k)); err != nil {
			bad("simulator.sftp.hostKey", "must be an unencrypted private key (OpenSSH or PEM): %v", err)
		}
	}
	if s.DerivesSFTPHostKey() && c.SSHPrivateKey == "" && c.SSH.PrivateKeyPath == "" {
		bad("simulator.sftp.hostKey", "must be set when a source uses sftp and the stack has no SSH private key to derive it from "+
			"(run: ssh-keygen -t ed25519 -N '' -f sftp_host_key && pulumi config set --secret simlab:simulator.sftp.hostKey < sftp_host_key)")
	}
	if needsSUT {
		host, port, err := net.SplitHostPort(s.SUT.Address)
		if err != nil || host == "" || port == "" {
			bad("simulator.sut.address", "must be host:port of the system under test (a source uses tcp), got %q", s.SUT.Address)
		}
	}
}

func checkPool(bad func(string, string, ...any), role string, p Pool, minCPU, minMem int) {
	if p.CPUs < minCPU {
		bad(role+".cpus", "must be >= %d, got %d", minCPU, p.CPUs)
	}
	if p.MemoryMiB < minMem {
		bad(role+".memoryMiB", "must be >= %d, got %d", minMem, p.MemoryMiB)
	}
	if p.DiskGiB < 10 {
		bad(role+".diskGiB", "must be >= 10 (Fedora CoreOS needs room for images), got %d", p.DiskGiB)
	}
}

func checkCIDR(bad func(string, string, ...any), key, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		bad(key, "must be an IPv4 CIDR such as 10.244.0.0/16, got %q", s)
		return netip.Prefix{}
	}
	if p.Masked() != p {
		bad(key, "must be a network address (%s), got %q", p.Masked(), s)
	}
	return p
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
