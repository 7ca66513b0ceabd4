package controller

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/state"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LoadRequest is the body of POST /v1/dataset.
type LoadRequest struct {
	Path            string `json:"path"`
	Partitioning    string `json:"partitioning,omitempty"`
	Partitions      int    `json:"partitions,omitempty"`
	AddressOverride string `json:"address_override,omitempty"`
}

// LoadResult answers a load.
type LoadResult struct {
	Unchanged   bool   `json:"unchanged"`
	Fingerprint string `json:"fingerprint"`
	Types       int    `json:"types"`
	Sources     int    `json:"sources"`
	Records     int    `json:"records"`
	Took        string `json:"took"`
}

// Load validates the dataset at dir (already resolved) and loads it into Kafka. Loading the same
// dataset with the same options again changes nothing.
//
// A load is staged: the new records are appended to the type topics after whatever they hold, and
// only when every record is written are the new manifests and the stage swapped in (one write to
// the state topic) and the old records purged. A load that fails at any point before the swap
// leaves the loaded dataset, its records and the stage as they were.
func (c *Controller) Load(ctx context.Context, dir string, req LoadRequest) (*LoadResult, error) {
	t0 := time.Now()
	ds, err := dataset.Load(dir)
	if err != nil {
		return nil, err
	}
	part := req.Partitioning
	if part == "" {
		part = c.cfg.Partitioning
	}
	nkeyed := req.Partitions
	if nkeyed <= 0 {
		nkeyed = c.cfg.KeyedPartitions
	}
	switch part {
	case PerSource:
		nkeyed = 0
	case Keyed:
	default:
		return nil, fmt.Errorf("partitioning %q: want %s or %s", part, PerSource, Keyed)
	}
	if req.AddressOverride == "" {
		req.AddressOverride = c.cfg.SUTAddress
	}
	if req.AddressOverride != "" {
		if err := checkHostPort(req.AddressOverride); err != nil {
			return nil, fmt.Errorf("%w: address_override %q: %v (want host:port, e.g. sut.example:9000)", ErrInvalid, req.AddressOverride, err)
		}
	}
	fp := ds.Fingerprint + "/" + part + "/" + strconv.Itoa(nkeyed) + "/" + req.AddressOverride
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	st := c.reader.Stage()
	if st.Stage == state.StageRunning {
		return nil, fmt.Errorf("%w: a run is active; stop it before loading", ErrConflict)
	}
	res := &LoadResult{Fingerprint: fp, Types: len(ds.Types()), Sources: len(ds.Sources), Records: ds.RecordCount()}
	if st.Fingerprint == fp && st.Stage != state.StageEmpty {
		res.Unchanged = true
		res.Took = time.Since(t0).String()
		return res, nil
	}
	byType := map[string][]*dataset.Source{}
	for _, s := range ds.Sources {
		if req.AddressOverride != "" && s.Config.TCP != nil {
			cfg := *s.Config.TCP
			cfg.Address = req.AddressOverride
			s.Config.TCP = &cfg
		}
		byType[s.Type] = append(byType[s.Type], s)
	}

	l, err := c.newLoader()
	if err != nil {
		return nil, err
	}
	defer l.cl.Close()

	// 1. Plan every type and check every record against its topic's limit before writing anything.
	var plans []*typePlan
	var probs []dataset.Problem
	for _, typ := range ds.Types() {
		p, err := l.planType(ctx, typ, byType[typ], part, nkeyed, ds.Span, fp)
		if err != nil {
			return nil, fmt.Errorf("loading type %s: %w", typ, err)
		}
		probs = append(probs, p.tooLarge()...)
		plans = append(plans, p)
	}
	if len(probs) > 0 {
		return nil, &dataset.ValidationError{Problems: probs}
	}

	// 2. Stage: write the new records after the old ones (nothing the loaded dataset uses changes).
	if err := l.stage(ctx, plans); err != nil {
		return nil, err
	}

	// 3. Swap the new manifests and stage in, in one batch on the state topic.
	kvs := make([]keyValue, 0, len(plans)+len(st.Types)+1)
	for _, p := range plans {
		kvs = append(kvs, keyValue{state.ManifestPrefix + p.typ, p.m})
	}
	for _, typ := range st.Types {
		if !slices.Contains(ds.Types(), typ) {
			kvs = append(kvs, keyValue{state.ManifestPrefix + typ, nil})
		}
	}
	kvs = append(kvs, keyValue{state.KeyStage, state.Stage{Stage: state.StageLoaded, Fingerprint: fp, Types: ds.Types(), Span: ds.Span}})
	if err := c.putAll(ctx, kvs); err != nil {
		return nil, err
	}

	// 4. Clean up: the old records are dead now; failing here only leaves them behind.
	for _, typ := range st.Types {
		if !slices.Contains(ds.Types(), typ) {
			if err := l.deleteTopic(ctx, c.cfg.Names.RecordsTopic(typ)); err != nil {
				c.cfg.Log.Warn("deleting the topic of a type the new dataset lacks", "type", typ, "err", err)
			}
		}
	}
	for _, p := range plans {
		if err := l.purgeBefore(ctx, p); err != nil {
			c.cfg.Log.Warn("purging the previous dataset's records", "type", p.typ, "err", err)
		}
	}
	c.m.recordsLoaded.Add(float64(ds.RecordCount()))
	res.Took = time.Since(t0).String()
	c.cfg.Log.Info("dataset loaded", "dir", dir, "types", res.Types, "sources", res.Sources, "records", res.Records, "partitioning", part, "took", res.Took)
	return res, nil
}

// loader is one load's own Kafka client: its metadata is fresh (a client caches metadata answers
// briefly, so a long-lived one may still think a topic absent) and its batches stay within each
// topic's max.message.bytes as read when the load began.
type loader struct {
	c   *Controller
	cl  *kgo.Client
	adm *kadm.Client

	mu     sync.Mutex
	limits map[string]int32 // topic -> producer batch limit
}

func (c *Controller) newLoader() (*loader, error) {
	l := &loader{c: c, limits: map[string]int32{}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.cfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytesFn(l.batchLimit), kgo.MaxBufferedBytes(256<<20),
		kgo.ProducerLinger(5*time.Millisecond), kgo.RecordDeliveryTimeout(60*time.Second))
	if err != nil {
		return nil, fmt.Errorf("kafka client for the load: %w", err)
	}
	l.cl, l.adm = cl, kadm.NewClient(cl)
	return l, nil
}

func (l *loader) batchLimit(topic string) int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, ok := l.limits[topic]; ok {
		return n
	}
	return contract.RecordTopicMaxMessageBytes
}

func (l *loader) deleteTopic(ctx context.Context, topic string) error {
	_, err := l.adm.DeleteTopic(ctx, topic)
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("deleting topic %s: %w", topic, err)
	}
	return nil
}

// pending is one record to write, with where it came from (for errors).
type pending struct {
	part int32
	src  *dataset.Source
	rec  *dataset.Record
}

// typePlan is how one type's records go into its topic.
type typePlan struct {
	typ    string
	topic  string
	nparts int
	m      *state.Manifest
	byPart [][]pending
	// exists: the topic is there with have partitions (more than nparts: the rest stay unused).
	exists bool
	have   int
	// maxBytes is the topic's max.message.bytes (what it will be when this load creates it).
	maxBytes int
}

// planType lays out a type's records and reads its topic's partitions and limit.
func (l *loader) planType(ctx context.Context, typ string, srcs []*dataset.Source, part string, nkeyed int, span time.Duration, fp string) (*typePlan, error) {
	p := &typePlan{typ: typ, topic: l.c.cfg.Names.RecordsTopic(typ), maxBytes: contract.RecordTopicMaxMessageBytes,
		nparts: contract.RecordTopicPartitions(part, len(srcs), nkeyed)}
	p.m = &state.Manifest{Type: typ, Fingerprint: fp, Partitioning: part, Span: span}
	p.byPart = make([][]pending, p.nparts)
	for i, s := range srcs {
		pn := int32(i)
		if part == Keyed {
			h := fnv.New32a()
			h.Write([]byte(s.Instance))
			pn = int32(h.Sum32() % uint32(p.nparts))
		}
		p.m.Sources = append(p.m.Sources, state.SourceEntry{Instance: s.Instance, Partition: pn, Records: len(s.Records), Config: s.Config})
		for j := range s.Records {
			p.byPart[pn] = append(p.byPart[pn], pending{pn, s, &s.Records[j]})
		}
	}
	for _, list := range p.byPart {
		sort.SliceStable(list, func(i, j int) bool { return list[i].rec.Offset < list[j].rec.Offset })
	}
	details, err := l.adm.ListTopics(ctx, p.topic)
	if err != nil {
		return nil, fmt.Errorf("describing topic %s: %w", p.topic, err)
	}
	d, ok := details[p.topic]
	if !ok || d.Err != nil {
		return p, nil // absent: created with the contract's limit
	}
	p.exists, p.have = true, len(d.Partitions)
	cfgs, err := l.adm.DescribeTopicConfigs(ctx, p.topic)
	if err != nil {
		return nil, fmt.Errorf("reading the config of topic %s: %w", p.topic, err)
	}
	p.maxBytes = kafkaDefaultMaxMessageBytes
	if rc, err := cfgs.On(p.topic, nil); err == nil && rc.Err == nil {
		for _, cf := range rc.Configs {
			if cf.Key == "max.message.bytes" && cf.Value != nil {
				if n, err := strconv.Atoi(*cf.Value); err == nil {
					p.maxBytes = n
				}
			}
		}
	}
	return p, nil
}

// kafkaDefaultMaxMessageBytes is Kafka's max.message.bytes default, assumed when a topic's config
// does not say.
const kafkaDefaultMaxMessageBytes = 1048588

// encodedSize bounds what a record occupies in a batch of its own, as Kafka measures it against
// max.message.bytes: the 61-byte batch header, the record's varints (at most 5 bytes each, 7 of
// them), key, value and the offset header.
func encodedSize(instance string, payload []byte) int {
	return 61 + 7*5 + len(instance) + len(payload) + len(state.OffsetHeader) + 20
}

// tooLarge lists every record that its topic would refuse, by file, line and source.
func (p *typePlan) tooLarge() []dataset.Problem {
	var out []dataset.Problem
	for _, list := range p.byPart {
		for _, pr := range list {
			if n := encodedSize(pr.src.Instance, pr.rec.Payload); n > p.maxBytes {
				out = append(out, dataset.Problem{File: pr.src.ID() + "/" + dataset.RecordsFile, Line: pr.rec.Line,
					Msg: fmt.Sprintf("record of source %s is %d bytes in Kafka (payload %d); topic %s accepts at most %d (max.message.bytes): "+
						"raise the topic's max.message.bytes (the storage layer sets %d) or shorten the record",
						pr.src.ID(), n, len(pr.rec.Payload), p.topic, p.maxBytes, contract.RecordTopicMaxMessageBytes)})
			}
		}
	}
	return out
}

// stage makes room for and writes every plan's records, filling in the manifests' ranges. On
// failure it deletes the topics it created (nothing used them) and returns an error naming the
// first record that failed.
func (l *loader) stage(ctx context.Context, plans []*typePlan) error {
	var created []string
	fail := func(err error) error {
		for _, t := range created {
			if derr := l.deleteTopic(context.WithoutCancel(ctx), t); derr != nil {
				l.c.cfg.Log.Warn("removing a topic of a failed load", "topic", t, "err", derr)
			}
		}
		return fmt.Errorf("%w (the loaded dataset and its stage are unchanged)", err)
	}
	for _, p := range plans {
		l.mu.Lock()
		l.limits[p.topic] = int32(max(512, min(p.maxBytes, 1<<30)))
		l.mu.Unlock()
		made, err := l.prepareTopic(ctx, p)
		if made {
			created = append(created, p.topic)
		}
		if err != nil {
			return fail(fmt.Errorf("loading type %s: %w", p.typ, err))
		}
	}
	for _, p := range plans {
		if err := l.produce(ctx, p); err != nil {
			return fail(fmt.Errorf("loading type %s: %w", p.typ, err))
		}
	}
	return nil
}

// prepareTopic creates the topic, or adds partitions to an existing one that has too few (that
// keeps the old partitions and their records); it reports whether it created the topic.
func (l *loader) prepareTopic(ctx context.Context, p *typePlan) (bool, error) {
	switch {
	case p.exists && p.have >= p.nparts:
		if p.have > p.nparts {
			l.c.cfg.Log.Warn("topic has more partitions than the dataset needs; the extra ones stay empty",
				"topic", p.topic, "partitions", p.have, "want", p.nparts)
		}
		return false, nil
	case p.exists:
		resp, err := l.adm.UpdatePartitions(ctx, p.nparts, p.topic)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return false, fmt.Errorf("growing topic %s from %d to %d partitions: %w", p.topic, p.have, p.nparts, err)
		}
		return false, nil
	}
	maxBytes, keep := strconv.Itoa(contract.RecordTopicMaxMessageBytes), "-1"
	cfg := map[string]*string{"max.message.bytes": &maxBytes, "retention.ms": &keep}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := l.adm.CreateTopic(ctx, int32(p.nparts), -1, cfg, p.topic)
		if err == nil {
			return true, nil
		}
		// A just-deleted topic may linger on a real cluster.
		if time.Now().After(deadline) || ctx.Err() != nil || !errors.Is(err, kerr.TopicAlreadyExists) {
			return false, fmt.Errorf("creating topic %s with %d partitions: %w", p.topic, p.nparts, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// produce writes a plan's records in due order per partition and sets the manifest's ranges.
func (l *loader) produce(ctx context.Context, p *typePlan) error {
	var (
		mu       sync.Mutex
		firstErr error
		lo       = make([]int64, p.nparts)
		hi       = make([]int64, p.nparts)
	)
	for i := range lo {
		lo[i], hi[i] = -1, -1
	}
	for pn, list := range p.byPart {
		for _, pr := range list {
			rec := &kgo.Record{Topic: p.topic, Partition: int32(pn), Key: []byte(pr.src.Instance), Value: pr.rec.Payload,
				Headers: []kgo.RecordHeader{{Key: state.OffsetHeader, Value: strconv.AppendInt(nil, int64(pr.rec.Offset), 10)}}}
			l.cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("%s/%s:%d: record of source %s (%d bytes) was not written to %s: %w",
							pr.src.ID(), dataset.RecordsFile, pr.rec.Line, pr.src.ID(), len(pr.rec.Payload), p.topic, err)
					}
					return
				}
				if lo[r.Partition] < 0 || r.Offset < lo[r.Partition] {
					lo[r.Partition] = r.Offset
				}
				if r.Offset+1 > hi[r.Partition] {
					hi[r.Partition] = r.Offset + 1
				}
			})
		}
	}
	if err := l.cl.Flush(ctx); err != nil {
		return err
	}
	if firstErr != nil {
		return firstErr
	}
	for pn := range p.byPart {
		r := state.PartitionRange{Partition: int32(pn)}
		if lo[pn] >= 0 {
			r.Start, r.End = lo[pn], hi[pn]
		}
		p.m.Partitions = append(p.m.Partitions, r)
	}
	return nil
}

// purgeBefore deletes a reused topic's records from before this load: everything below the new
// ranges, and everything in partitions the new dataset leaves empty.
func (l *loader) purgeBefore(ctx context.Context, p *typePlan) error {
	if !p.exists {
		return nil
	}
	ends, err := l.adm.ListEndOffsets(ctx, p.topic)
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", p.topic, err)
	}
	offs := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		at := o.Offset
		if int(o.Partition) < len(p.m.Partitions) && p.m.Partitions[o.Partition].End > p.m.Partitions[o.Partition].Start {
			at = p.m.Partitions[o.Partition].Start
		}
		offs.Add(kadm.Offset{Topic: p.topic, Partition: o.Partition, At: at, LeaderEpoch: -1})
	})
	resp, err := l.adm.DeleteRecords(ctx, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("purging old records of %s: %w", p.topic, err)
	}
	return nil
}
