// Package state owns the simulator's shared vocabulary on Kafka: topic and group names, the stage and
// manifest documents of the compacted state topic (written only by the controller), the commit
// metadata workers attach to offsets, and a reader that tails the state topic.
package state

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/simulator/dataset"
)

// Stages of a simulation.
const (
	StageEmpty   = "empty"
	StageLoaded  = "loaded"
	StageRunning = "running"
	StageStopped = "stopped"
)

// Keys in the state topic.
const (
	KeyStage       = "stage"
	ManifestPrefix = "manifest/"
)

// OffsetHeader is the record header carrying the offset from the start in nanoseconds.
const OffsetHeader = "off"

// Names derives topic and group names from a prefix.
type Names struct{ Prefix string }

// StateTopic is the compacted state topic (contract.StateTopic).
func (n Names) StateTopic() string { return contract.StateTopic(n.Prefix) }

// RecordsTopic is the topic of a type's records (contract.RecordsTopic).
func (n Names) RecordsTopic(typ string) string { return contract.RecordsTopic(n.Prefix, typ) }

// ReportsTopic is the topic of the workers' delivery summaries (contract.ReportsTopic).
func (n Names) ReportsTopic() string { return contract.ReportsTopic(n.Prefix) }

// Group is the consumer group of a type's workers (contract.WorkersGroup).
func (n Names) Group(typ string) string { return contract.WorkersGroup(n.Prefix, typ) }

// Stage is the value under KeyStage.
type Stage struct {
	Stage       string        `json:"stage"`
	Fingerprint string        `json:"fingerprint,omitempty"`
	Types       []string      `json:"types,omitempty"`
	RunID       string        `json:"run_id,omitempty"`
	StartTime   time.Time     `json:"start_time,omitzero"`
	Span        time.Duration `json:"span_ns,omitempty"`
	Repeat      bool          `json:"repeat,omitempty"`
	Loops       int           `json:"loops,omitempty"`
	StoppedAt   time.Time     `json:"stopped_at,omitzero"`
}

// LoopCount is the number of loops a run plays (0: unbounded).
func (s Stage) LoopCount() int {
	if !s.Repeat {
		return 1
	}
	return s.Loops
}

// SourceEntry is one source in a manifest: where its records are and where they go.
type SourceEntry struct {
	Instance  string               `json:"instance"`
	Partition int32                `json:"partition"`
	Records   int                  `json:"records"`
	Config    dataset.SourceConfig `json:"config"`
}

// PartitionRange is the offset range [Start, End) of one partition's records.
type PartitionRange struct {
	Partition int32 `json:"partition"`
	Start     int64 `json:"start"`
	End       int64 `json:"end"`
}

// Manifest describes one loaded type; it is the value under ManifestPrefix+type.
type Manifest struct {
	Type         string           `json:"type"`
	Fingerprint  string           `json:"fingerprint"`
	Partitioning string           `json:"partitioning"`
	Span         time.Duration    `json:"span_ns"`
	Sources      []SourceEntry    `json:"sources"`
	Partitions   []PartitionRange `json:"partitions"`
}

// Records is the number of records of the type (one loop).
func (m *Manifest) Records() int64 {
	var n int64
	for _, p := range m.Partitions {
		n += p.End - p.Start
	}
	return n
}

// CommitMeta is stored as commit metadata with each committed offset.
type CommitMeta struct {
	Run  string `json:"run"`
	Loop int    `json:"loop"`
	// Failed counts, per source instance, the records below the committed offset (all loops of
	// the run) that were not sent because their destination could not be built. A source under
	// FailedOther stands for sources left out to keep the metadata short.
	Failed map[string]int64 `json:"failed,omitempty"`
	// Cutover (unix ns), when set, hands the partition over by due time: the worker that
	// committed it still writes every record due before it, the next owner every record due at or
	// after it (and counts the earlier ones as written), so none is written twice.
	Cutover int64 `json:"cutover,omitempty"`
}

// FailedOther is the Failed key that sums the sources left out of long commit metadata.
const FailedOther = "*"

// maxCommitMeta keeps commit metadata under real Kafka's 4096-byte limit
// (offset.metadata.max.bytes) with room to spare.
const maxCommitMeta = 3072

// FailedTotal is the number of failed records the metadata accounts for.
func (c CommitMeta) FailedTotal() int64 {
	var n int64
	for _, v := range c.Failed {
		n += v
	}
	return n
}

// Encode renders commit metadata (short: real Kafka limits it to 4096 bytes). When the failed
// sources do not fit, the largest ones are listed and the rest are summed under FailedOther.
func (c CommitMeta) Encode() string {
	head := `{"run":` + strconv.Quote(c.Run) + `,"loop":` + strconv.Itoa(c.Loop)
	if c.Cutover != 0 {
		head += `,"cutover":` + strconv.FormatInt(c.Cutover, 10)
	}
	if len(c.Failed) == 0 {
		return head + `}`
	}
	names := make([]string, 0, len(c.Failed))
	for k := range c.Failed {
		names = append(names, k)
	}
	// Largest counts first, then by name, so what is cut is the least informative.
	sort.Slice(names, func(i, j int) bool {
		a, b := c.Failed[names[i]], c.Failed[names[j]]
		return a > b || (a == b && names[i] < names[j])
	})
	var b strings.Builder
	b.WriteString(head)
	b.WriteString(`,"failed":{`)
	var other int64
	n := 0
	for _, k := range names {
		entry := strconv.Quote(k) + ":" + strconv.FormatInt(c.Failed[k], 10)
		if k == FailedOther || b.Len()+len(entry)+64 > maxCommitMeta {
			other += c.Failed[k]
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(entry)
		n++
	}
	if other > 0 {
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(FailedOther) + ":" + strconv.FormatInt(other, 10))
	}
	b.WriteString(`}}`)
	return b.String()
}

// DecodeCommitMeta parses commit metadata; ok is false for anything else (e.g. empty).
func DecodeCommitMeta(s string) (CommitMeta, bool) {
	var c CommitMeta
	if s == "" || json.Unmarshal([]byte(s), &c) != nil || c.Run == "" {
		return CommitMeta{}, false
	}
	return c, true
}

// Progress computes how many records a committed position stands for in a run over a partition
// range: those sent and those that failed (meta.Failed); subtract FailedTotal for the sent ones.
func Progress(r PartitionRange, off int64, meta CommitMeta) int64 {
	n := r.End - r.Start
	done := off - r.Start
	if done < 0 {
		done = 0
	}
	if done > n {
		done = n
	}
	return int64(meta.Loop)*n + done
}

// ParseOffsetHeader parses the off header.
func ParseOffsetHeader(v []byte) (time.Duration, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad %s header %q", OffsetHeader, v)
	}
	return time.Duration(n), nil
}
