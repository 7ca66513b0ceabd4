package storage

// Sizing is what the node count decides for Ceph and Kafka. It is a pure
// function of the config, so tests assert it for any cluster size.
type Sizing struct {
	// StorageNodes is the number of nodes holding OSDs.
	StorageNodes int
	// Mons and Mgrs are the Ceph monitor and manager counts.
	Mons, Mgrs int
	// PoolSize is the replica count of every Ceph pool.
	PoolSize int
	// RequireSafeReplicaSize is false only for size-1 pools (test lab).
	RequireSafeReplicaSize bool
	// FailureDomain spreads replicas across hosts, or across OSDs on one host.
	FailureDomain string
	// KafkaReplicas is the KafkaNodePool's replica count (controller+broker).
	KafkaReplicas int
	// TopicReplicas is the replication factor of topics (at most 3).
	TopicReplicas int
	// MinInSync is min.insync.replicas for topics.
	MinInSync int
}

// SizeFor returns the sizing for storageNodes OSD nodes and kafkaReplicas
// Kafka nodes. With fewer than 3 storage nodes Ceph runs as a test lab: one
// mon and size-1 pools (requireSafeReplicaSize false); otherwise three mons
// and size-3 pools spread across hosts.
func SizeFor(storageNodes, kafkaReplicas int) Sizing {
	s := Sizing{StorageNodes: storageNodes, KafkaReplicas: kafkaReplicas}
	if storageNodes < 3 {
		s.Mons, s.Mgrs, s.PoolSize, s.RequireSafeReplicaSize, s.FailureDomain = 1, 1, 1, false, "osd"
	} else {
		s.Mons, s.Mgrs, s.PoolSize, s.RequireSafeReplicaSize, s.FailureDomain = 3, 2, 3, true, "host"
	}
	s.TopicReplicas = min(max(kafkaReplicas, 1), 3)
	s.MinInSync = 1
	if s.TopicReplicas >= 3 {
		s.MinInSync = 2
	}
	return s
}
