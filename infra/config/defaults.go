package config

// Default returns a Config with every default filled in. Stack files are
// decoded on top of it, so a stack only states what differs.
func Default() Config {
	return Config{
		Cluster: Cluster{
			Name:        "simlab",
			PodCIDR:     "10.244.0.0/16",
			ServiceCIDR: "10.96.0.0/12",
			DNSDomain:   "cluster.local",
		},
		Provider:    ProviderLibvirt,
		Controllers: Pool{Count: 1, CPUs: 2, MemoryMiB: 4096, DiskGiB: 30},
		Workers:     Pool{Count: 2, CPUs: 4, MemoryMiB: 8192, DiskGiB: 40, CephDiskGiB: 50},
		SSH:         SSH{User: "core"},
		Artifacts:   Artifacts{Dir: ".artifacts"},
		Versions:    DefaultVersions(),
		Storage: Storage{
			Ceph:  Ceph{Enabled: true},
			Kafka: Kafka{Enabled: true, Replicas: 1, StorageGiB: 20},
			NFS:   NFS{Enabled: true, SizeGiB: 10},
		},
		Simulator: Simulator{
			Enabled:          true,
			Namespace:        "simulator",
			Image:            "ghcr.io/simlab/simulator",
			Dataset:          Dataset{Path: "/datasets/default"},
			MinWorkers:       1,
			MaxWorkers:       4,
			TargetCPUPercent: 60,
			ScaleDownSeconds: 300,
			Sources:          []SourceType{{Type: "pm-counters", Instances: 16, Protocol: "tcp"}},
		},
	}
}

// defaultLibvirt fills the defaults of a libvirt block the stack provided.
func defaultLibvirt() *Libvirt {
	return &Libvirt{Port: 22, User: "root", URI: "qemu:///system", Network: "default",
		ImageDir: "/var/lib/libvirt/images/simlab", PrefixLength: 24}
}

// defaultMetal fills the defaults of a metal block the stack provided.
func defaultMetal() *Metal {
	return &Metal{InstallDisk: "/dev/sda", CephDisk: "/dev/sdb", PrefixLength: 24}
}
