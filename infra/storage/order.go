package storage

// Destroy order.
//
// Pulumi deletes a resource only after everything that depends on it, so the
// DependsOn edges below are the destroy order read backwards. Within the
// storage layer (arrows point from a resource to what it depends on):
//
//	KafkaTopic* -> Kafka -> KafkaNodePool -> strimzi operator -> strimzi CRDs -> namespace kafka
//	                              \-> Ceph StorageClass (its volumes are Ceph images)
//	dataset PVC -> dataset PV -> NFS StorageClass -> csi-driver-nfs -> namespace simlab-nfs
//	     \-> namespace <simulator>        \-> NFS server Service -> Deployment -> volume on Ceph StorageClass
//	Ceph StorageClass -> CephBlockPools -> CephCluster -> rook operator -> rook CRDs -> namespace rook-ceph
//
// and the workloads layer (the simulator) depends on the storage component as
// a whole, so `pulumi destroy` runs:
//
//  1. the simulator (its pods release the dataset claim),
//  2. topics (deleted by Strimzi's topic operator while it still runs), then
//     the Kafka cluster (deleteClaim: its Ceph volumes go with it), then the
//     node pool; the dataset claim and volume; the NFS server and its volume,
//  3. the Ceph StorageClass, the pools (empty by now) and the CephCluster,
//     while the Rook operator still runs to remove their finalizers,
//  4. the operators (their charts' objects: helm.sh/v4 Charts, charts.go),
//  5. the CRDs (own resources, not part of the charts),
//  6. the namespaces.
//
// Every custom resource is deleted while its operator runs, every CRD after
// its operator, and no namespace before its content: nothing is left for a
// finalizer to wait on. docs/STORAGE.md says what to do if one still blocks
// (e.g. a resource created by hand outside Pulumi).
