package storage

import (
	"fmt"
	"strconv"

	"github.com/simlab/simlab/contract"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	yamlv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/yaml/v2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Names of the Kafka objects.
const (
	// KafkaClusterName names the Kafka CR; Strimzi names the bootstrap
	// Service <name>-kafka-bootstrap.
	KafkaClusterName = "simlab"
	// KafkaNodePoolName is the single pool of combined controller+broker nodes.
	KafkaNodePoolName = "dual"
	// KafkaPort is the plain in-cluster listener's port.
	KafkaPort = 9092
	// TopicPrefix is the simulator's topic prefix (contract; chart value
	// kafka.topicPrefix, docs/API.md): topics <prefix>.state and
	// <prefix>.records.<type>.
	TopicPrefix = contract.DefaultTopicPrefix
	// StateMaxMessageBytes is the state topic's max.message.bytes, as the
	// simulator's controller creates it (a manifest per type is one record).
	StateMaxMessageBytes = contract.StateTopicMaxMessageBytes
	// RecordsMaxMessageBytes is every record topic's max.message.bytes: a
	// record of the dataset format's maximum size fits (contract), where
	// Kafka's default (~1 MiB) would refuse larger records at load time.
	RecordsMaxMessageBytes = contract.RecordTopicMaxMessageBytes
)

// KafkaBootstrap is the in-cluster bootstrap address of the Kafka cluster.
var KafkaBootstrap = fmt.Sprintf("%s-kafka-bootstrap.%s.svc:%d", KafkaClusterName, KafkaNamespace, KafkaPort)

// RecordsTopic is the simulator's topic of one data-source type.
func RecordsTopic(sourceType string) string { return contract.RecordsTopic(TopicPrefix, sourceType) }

// StateTopic is the simulator's compacted state topic.
func StateTopic() string { return contract.StateTopic(TopicPrefix) }

// ReportsTopic is the topic of the workers' delivery summaries, which the
// controller aggregates per run (docs/ARCHITECTURE.md, "Delivery truth").
func ReportsTopic() string { return contract.ReportsTopic(TopicPrefix) }

type kafkaOut struct {
	bootstrap string
}

// kafka registers namespace -> CRDs -> operator -> KafkaNodePool -> Kafka ->
// KafkaTopics. The node pool's volumes are on the Ceph StorageClass and
// depend on it, so Kafka and its claims go before Ceph on destroy.
func (b *builder) kafka(given []pulumi.Resource, ceph cephOut) (kafkaOut, error) {
	a := b.args
	if !a.Storage.Kafka.Enabled {
		// Your own Kafka (or none): the simulator's controller creates its topics at load.
		return kafkaOut{bootstrap: a.Storage.Kafka.Bootstrap}, nil
	}
	v := a.Versions
	ns, err := b.namespace(KafkaNamespace, "kafka", given...)
	if err != nil {
		return kafkaOut{}, err
	}
	// Like Rook's, the CRDs are their own resource and the chart installs
	// none (skipCrds).
	crds, err := yamlv2.NewConfigFile(b.ctx, b.name+"-strimzi-crds", &yamlv2.ConfigFileArgs{
		File: pulumi.String(a.Mirrored.StrimziCRDs),
	}, b.opts(ns)...)
	if err != nil {
		return kafkaOut{}, fmt.Errorf("strimzi CRDs: %w", err)
	}
	operator, err := b.chart(chartSpec{
		resource: b.name + "-strimzi-operator", release: "strimzi", namespace: KafkaNamespace,
		chart: a.Mirrored.StrimziChart, version: v.Strimzi, skipCrds: true,
		values: pulumi.Map{
			// The operator watches its own namespace only.
			"watchAnyNamespace": pulumi.Bool(false),
		},
	}, ns, crds)
	if err != nil {
		return kafkaOut{}, fmt.Errorf("strimzi operator: %w", err)
	}

	clusterLabel := pulumi.StringMap{"strimzi.io/cluster": pulumi.String(KafkaClusterName)}
	for k, val := range labels("kafka") {
		clusterLabel[k] = val
	}
	pool, err := apiextensions.NewCustomResource(b.ctx, b.name+"-kafka-nodepool", &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("kafka.strimzi.io/v1beta2"),
		Kind:       pulumi.String("KafkaNodePool"),
		Metadata: &metav1.ObjectMetaArgs{
			Name: pulumi.String(KafkaNodePoolName), Namespace: pulumi.String(KafkaNamespace), Labels: clusterLabel,
		},
		OtherFields: kubernetes.UntypedArgs{"spec": KafkaNodePoolSpec(b.size, a.Storage.Kafka.StorageGiB, ceph.className)},
	}, b.after(operator, ceph.class)...)
	if err != nil {
		return kafkaOut{}, fmt.Errorf("KafkaNodePool: %w", err)
	}
	kafka, err := apiextensions.NewCustomResource(b.ctx, b.name+"-kafka", &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("kafka.strimzi.io/v1beta2"),
		Kind:       pulumi.String("Kafka"),
		Metadata: &metav1.ObjectMetaArgs{
			Name: pulumi.String(KafkaClusterName), Namespace: pulumi.String(KafkaNamespace), Labels: labels("kafka"),
			Annotations: func() pulumi.StringMap {
				an := b.readiness(KafkaReady)
				an["strimzi.io/kraft"] = pulumi.String("enabled")
				an["strimzi.io/node-pools"] = pulumi.String("enabled")
				return an
			}(),
		},
		OtherFields: kubernetes.UntypedArgs{"spec": KafkaSpec(b.size, v.Kafka)},
	}, b.after(operator, pool)...)
	if err != nil {
		return kafkaOut{}, fmt.Errorf("Kafka: %w", err)
	}
	b.offer(kafka)

	topics := []struct {
		name string
		spec map[string]any
	}{{TopicPrefix + "-state", map[string]any{
		"topicName":  StateTopic(),
		"partitions": 1,
		"replicas":   b.size.TopicReplicas,
		"config": map[string]any{
			"cleanup.policy":    "compact",
			"max.message.bytes": StateMaxMessageBytes,
		},
	}}, {TopicPrefix + "-reports", map[string]any{
		"topicName":  ReportsTopic(),
		"partitions": contract.ReportsTopicPartitions,
		"replicas":   b.size.TopicReplicas,
		"config": map[string]any{
			"retention.ms":      contract.ReportsTopicRetentionMs,
			"max.message.bytes": contract.ReportsTopicMaxMessageBytes,
		},
	}}}
	for _, src := range a.Sources {
		topics = append(topics, struct {
			name string
			spec map[string]any
		}{TopicPrefix + "-records-" + src.Type, map[string]any{
			"topicName": RecordsTopic(src.Type),
			// One partition per simulated source (docs/API.md, per-source):
			// the layout the workloads layer gives the chart too.
			"partitions": contract.RecordTopicPartitions(contract.DefaultPartitioning, src.Instances, contract.DefaultKeyedPartitions),
			"replicas":   b.size.TopicReplicas,
			// A loaded dataset is replayed until it is replaced: keep it.
			"config": map[string]any{"retention.ms": -1, "max.message.bytes": RecordsMaxMessageBytes},
		}})
	}
	for _, t := range topics {
		topic, err := apiextensions.NewCustomResource(b.ctx, b.name+"-topic-"+t.name, &apiextensions.CustomResourceArgs{
			ApiVersion:  pulumi.String("kafka.strimzi.io/v1beta2"),
			Kind:        pulumi.String("KafkaTopic"),
			Metadata:    &metav1.ObjectMetaArgs{Name: pulumi.String(t.name), Namespace: pulumi.String(KafkaNamespace), Labels: clusterLabel},
			OtherFields: kubernetes.UntypedArgs{"spec": t.spec},
		}, b.opts(kafka)...)
		if err != nil {
			return kafkaOut{}, fmt.Errorf("KafkaTopic %s: %w", t.name, err)
		}
		b.offer(topic)
	}
	return kafkaOut{bootstrap: KafkaBootstrap}, nil
}

// KafkaNodePoolSpec is the node pool's spec: combined controller+broker
// nodes, each with one persistent volume holding both the log and the KRaft
// metadata, on storageClass ("" = the cluster's default). deleteClaim makes
// Strimzi delete the claims with the cluster, so no Ceph image outlives it.
func KafkaNodePoolSpec(s Sizing, storageGiB int, storageClass string) map[string]any {
	vol := map[string]any{
		"id": 0, "type": "persistent-claim", "size": strconv.Itoa(storageGiB) + "Gi",
		"deleteClaim": true, "kraftMetadata": "shared",
	}
	if storageClass != "" {
		vol["class"] = storageClass
	}
	return map[string]any{
		"replicas": s.KafkaReplicas,
		"roles":    []any{"controller", "broker"},
		"storage":  map[string]any{"type": "jbod", "volumes": []any{vol}},
	}
}

// KafkaSpec is the Kafka CR's spec: the pinned Kafka version, a plain
// in-cluster listener, replication sized to the node pool, and the topic
// operator that reconciles the KafkaTopics.
func KafkaSpec(s Sizing, kafkaVersion string) map[string]any {
	return map[string]any{
		"kafka": map[string]any{
			"version": kafkaVersion,
			"listeners": []any{map[string]any{
				"name": "plain", "port": KafkaPort, "type": "internal", "tls": false,
			}},
			"config": map[string]any{
				"offsets.topic.replication.factor":         s.TopicReplicas,
				"transaction.state.log.replication.factor": s.TopicReplicas,
				"transaction.state.log.min.isr":            s.MinInSync,
				"default.replication.factor":               s.TopicReplicas,
				"min.insync.replicas":                      s.MinInSync,
			},
		},
		"entityOperator": map[string]any{"topicOperator": map[string]any{}},
	}
}
