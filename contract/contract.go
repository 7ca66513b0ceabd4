// Package contract holds what the infrastructure (infra/storage, infra/workloads) and the
// simulator must agree on about Kafka, in one place both import: the topics' and groups' names,
// how many partitions a type's records have, how large a record may be and the topic limits that
// follow from it. It imports nothing, so the simulator stays free of Pulumi and Helm; the chart's
// defaults are checked against it (contract_test.go).
package contract

// MaxRecordBytes is the largest record payload a dataset may hold (8 MiB). `simulator dataset
// validate` and every load refuse a larger record, naming its file, line and source; the record
// topics are sized for it (RecordTopicMaxMessageBytes).
const MaxRecordBytes = 8 << 20

// RecordOverheadBytes bounds what Kafka adds to one record's payload when it measures a batch of
// one record against max.message.bytes: the v2 batch header (61 bytes), the record's varints, its
// key (the source instance, at most 63 bytes) and its offset header.
const RecordOverheadBytes = 1 << 10

// RecordTopicMaxMessageBytes is the max.message.bytes of every record topic
// (<prefix>.records.<type>), whether the storage layer's KafkaTopic or the controller creates it:
// a record of MaxRecordBytes fits. Kafka's default (~1 MiB) would refuse larger records at load.
const RecordTopicMaxMessageBytes = MaxRecordBytes + RecordOverheadBytes

// StateTopicMaxMessageBytes is the state topic's max.message.bytes: one manifest per type is one
// record, and it lists every source of the type.
const StateTopicMaxMessageBytes = 64 << 20

// ReportsTopicSuffix names the topic of the workers' delivery summaries: <prefix>.reports. Each
// worker publishes one summary per interval and run (what it sent, what was acknowledged, the
// lateness histogram, per source), and the controller reads every summary of a run from it, so
// the run's totals include workers that have since left (docs/ARCHITECTURE.md, "Delivery truth").
const ReportsTopicSuffix = ".reports"

// ReportsTopicPartitions is the reports topic's partition count: one, so the controller reads
// every worker's summaries in the order they were written.
const ReportsTopicPartitions = 1

// ReportsTopicMaxMessageBytes is the reports topic's max.message.bytes, and the largest summary a
// worker writes: a worker splits a larger one by source (Kafka's default, ~1 MiB).
const ReportsTopicMaxMessageBytes = 1 << 20

// ReportsTopicRetentionMs keeps summaries for 7 days: a campaign's report can be written (again)
// from the controller for that long.
const ReportsTopicRetentionMs = 7 * 24 * 3600 * 1000

// DefaultTopicPrefix prefixes every topic and consumer group of the simulator: the chart's
// kafka.topicPrefix, the simulator's --topic-prefix default, and the stack's topics.
const DefaultTopicPrefix = "sim"

// StateTopic is the compacted topic of the simulator's state (stage, manifests): <prefix>.state.
func StateTopic(prefix string) string { return prefix + ".state" }

// RecordsTopic is the topic of one source type's records: <prefix>.records.<type>.
func RecordsTopic(prefix, sourceType string) string { return prefix + ".records." + sourceType }

// ReportsTopic is the topic of the workers' delivery summaries: <prefix>.reports.
func ReportsTopic(prefix string) string { return prefix + ReportsTopicSuffix }

// WorkersGroup is the consumer group of one source type's workers: <prefix>.workers.<type>.
func WorkersGroup(prefix, sourceType string) string { return prefix + ".workers." + sourceType }

// The record topics' layouts: PerSource gives each source (instance) of a type its own
// partition; Keyed spreads a type's sources over a fixed number of partitions by key.
const (
	PerSource = "per-source"
	Keyed     = "keyed"
)

// DefaultPartitioning is the layout of a load that names none (chart kafka.partitioning).
const DefaultPartitioning = PerSource

// DefaultKeyedPartitions is a keyed type's partition count unless a load names another (chart
// kafka.keyedPartitions).
const DefaultKeyedPartitions = 32

// RecordTopicPartitions is the one answer to how many partitions a type's record topic has:
// sources of them per-source, keyedPartitions keyed (DefaultKeyedPartitions when not positive).
// The stack sizes its topics and worker autoscalers with it from the config's instances; the
// controller lays out a load with it from the dataset's sources, growing a topic that has fewer
// (never shrinking one). A worker beyond the partitions would idle, so it also caps a type's
// workers. It returns 0 for an unknown partitioning.
func RecordTopicPartitions(partitioning string, sources, keyedPartitions int) int {
	switch partitioning {
	case PerSource:
		return sources
	case Keyed:
		if keyedPartitions <= 0 {
			return DefaultKeyedPartitions
		}
		return keyedPartitions
	}
	return 0
}
