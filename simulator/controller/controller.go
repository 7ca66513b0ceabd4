// Package controller owns the simulator's control plane: loading datasets into Kafka (a topic per
// type), the stage of the simulation in the compacted state topic (it is that topic's only
// writer), the HTTP API of docs/API.md, and serving each type's manifest to workers.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/state"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Partitioning layouts.
const (
	PerSource = "per-source"
	Keyed     = "keyed"
)

// Config configures a controller.
type Config struct {
	Brokers         []string
	Names           state.Names
	DatasetRoot     string
	Partitioning    string
	KeyedPartitions int
	Log             *slog.Logger
}

// Controller is the only writer of the state topic.
type Controller struct {
	cfg    Config
	cl     *kgo.Client
	adm    *kadm.Client
	reader *state.Reader
	mu     sync.Mutex // serialises state-changing operations
	m      *metrics
}

// ErrConflict is returned when an operation does not fit the current stage.
var ErrConflict = errors.New("conflict")

// ErrInvalid marks a request the API refuses as malformed (HTTP 400).
var ErrInvalid = errors.New("invalid request")

// New connects to Kafka and creates the state topic if needed. Run must be called to read it.
func New(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Partitioning == "" {
		cfg.Partitioning = PerSource
	}
	if cfg.KeyedPartitions <= 0 {
		cfg.KeyedPartitions = 32
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(16<<20), kgo.MaxBufferedBytes(256<<20), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordDeliveryTimeout(60*time.Second))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	c := &Controller{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), m: newMetrics()}
	c.reader = state.NewReader(cfg.Brokers, cfg.Names, cfg.Log)
	if err := c.ensureStateTopic(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return c, nil
}

// Reader exposes the controller's view of the state topic.
func (c *Controller) Reader() *state.Reader { return c.reader }

// Run reads the state topic until ctx ends.
func (c *Controller) Run(ctx context.Context) error { return c.reader.Run(ctx) }

// Close releases the Kafka client.
func (c *Controller) Close() { c.cl.Close() }

func (c *Controller) ensureStateTopic(ctx context.Context) error {
	topic := c.cfg.Names.StateTopic()
	compact, maxBytes := "compact", "67108864"
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact, "max.message.bytes": &maxBytes}, topic)
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("creating state topic %s: %w", topic, err)
		}
		c.cfg.Log.Warn("creating state topic, retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *Controller) waitReady(ctx context.Context) error {
	return c.reader.WaitUntil(ctx, func(state.Stage) bool { return true })
}

func (c *Controller) put(ctx context.Context, key string, v any) error {
	var val []byte
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		val = b
	}
	rec := &kgo.Record{Topic: c.cfg.Names.StateTopic(), Partition: 0, Key: []byte(key), Value: val}
	if err := c.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("writing %s to the state topic: %w", key, err)
	}
	// Wait until our own reader saw it, so reads after a write are consistent.
	return c.reader.WaitUntil(ctx, func(s state.Stage) bool {
		if key == state.KeyStage {
			want, _ := v.(state.Stage)
			return s.Stage == want.Stage && s.RunID == want.RunID && s.Fingerprint == want.Fingerprint
		}
		m := c.reader.Manifest(key[len(state.ManifestPrefix):])
		if v == nil {
			return m == nil
		}
		want, _ := v.(*state.Manifest)
		return m != nil && m.Fingerprint == want.Fingerprint && m.Partitioning == want.Partitioning
	})
}

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
	// Mark the old dataset gone first: a crash mid-load leaves stage empty, never a half-loaded
	// dataset that claims to be complete.
	if st.Stage != state.StageEmpty {
		if err := c.put(ctx, state.KeyStage, state.Stage{Stage: state.StageEmpty}); err != nil {
			return nil, err
		}
	}
	// Topics of types the new dataset also has are kept, purged and reused by loadType.
	if err := c.dropTypes(ctx, st.Types, ds.Types()); err != nil {
		return nil, err
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
	for _, typ := range ds.Types() {
		m, err := c.loadType(ctx, typ, byType[typ], part, nkeyed, ds.Span, fp)
		if err != nil {
			return nil, fmt.Errorf("loading type %s: %w", typ, err)
		}
		if err := c.put(ctx, state.ManifestPrefix+typ, m); err != nil {
			return nil, err
		}
	}
	if err := c.put(ctx, state.KeyStage, state.Stage{Stage: state.StageLoaded, Fingerprint: fp, Types: ds.Types(), Span: ds.Span}); err != nil {
		return nil, err
	}
	c.m.recordsLoaded.Add(float64(ds.RecordCount()))
	res.Took = time.Since(t0).String()
	c.cfg.Log.Info("dataset loaded", "dir", dir, "types", res.Types, "sources", res.Sources, "records", res.Records, "partitioning", part, "took", res.Took)
	return res, nil
}

// dropTypes forgets the manifests of types and deletes their topics, except
// the topics of the types in keepTopics.
func (c *Controller) dropTypes(ctx context.Context, types, keepTopics []string) error {
	for _, typ := range types {
		if err := c.put(ctx, state.ManifestPrefix+typ, nil); err != nil {
			return err
		}
		if slices.Contains(keepTopics, typ) {
			continue
		}
		if err := c.deleteTopic(ctx, c.cfg.Names.RecordsTopic(typ)); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) deleteTopic(ctx context.Context, topic string) error {
	_, err := c.adm.DeleteTopic(ctx, topic)
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("deleting topic %s: %w", topic, err)
	}
	return nil
}

// purgeIfFits empties an existing topic that already has nparts partitions
// and reports true, so the topic is reused rather than deleted and recreated.
// Reuse matters when an operator owns the topic (Strimzi's KafkaTopic, created
// by the storage layer): deleting it would fight the operator. A topic with a
// different partition count is deleted (false is returned, the caller creates
// it); where an operator owns it, keep the type's instances equal to the
// dataset's sources so this never happens.
func (c *Controller) purgeIfFits(ctx context.Context, topic string, nparts int) (bool, error) {
	details, err := c.adm.ListTopics(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("describing topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return false, nil // absent: create it
	}
	if len(d.Partitions) != nparts {
		c.cfg.Log.Warn("recreating topic with a different partition count; if an operator manages it, set its partitions to match the dataset",
			"topic", topic, "partitions", len(d.Partitions), "want", nparts)
		return false, c.deleteTopic(ctx, topic)
	}
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	resp, err := c.adm.DeleteRecords(ctx, ends.Offsets())
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return false, fmt.Errorf("purging old records of %s: %w", topic, err)
	}
	return true, nil
}

type pending struct {
	part int32
	src  *dataset.Source
	rec  *dataset.Record
}

func (c *Controller) loadType(ctx context.Context, typ string, srcs []*dataset.Source, part string, nkeyed int, span time.Duration, fp string) (*state.Manifest, error) {
	topic := c.cfg.Names.RecordsTopic(typ)
	nparts := len(srcs)
	if part == Keyed {
		nparts = nkeyed
	}
	m := &state.Manifest{Type: typ, Fingerprint: fp, Partitioning: part, Span: span}
	byPart := make([][]pending, nparts)
	for i, s := range srcs {
		p := int32(i)
		if part == Keyed {
			h := fnv.New32a()
			h.Write([]byte(s.Instance))
			p = int32(h.Sum32() % uint32(nparts))
		}
		m.Sources = append(m.Sources, state.SourceEntry{Instance: s.Instance, Partition: p, Records: len(s.Records), Config: s.Config})
		for j := range s.Records {
			byPart[p] = append(byPart[p], pending{p, s, &s.Records[j]})
		}
	}
	reused, err := c.purgeIfFits(ctx, topic, nparts)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !reused {
		_, err := c.adm.CreateTopic(ctx, int32(nparts), -1, nil, topic)
		if err == nil {
			break
		}
		// A just-deleted topic may linger on a real cluster.
		if time.Now().After(deadline) || ctx.Err() != nil || !errors.Is(err, kerr.TopicAlreadyExists) {
			return nil, fmt.Errorf("creating topic %s with %d partitions: %w", topic, nparts, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	var (
		mu       sync.Mutex
		firstErr error
		lo       = make([]int64, nparts)
		hi       = make([]int64, nparts)
	)
	for i := range lo {
		lo[i], hi[i] = -1, -1
	}
	for p, list := range byPart {
		sort.SliceStable(list, func(i, j int) bool { return list[i].rec.Offset < list[j].rec.Offset })
		for _, pr := range list {
			rec := &kgo.Record{Topic: topic, Partition: int32(p), Key: []byte(pr.src.Instance), Value: pr.rec.Payload,
				Headers: []kgo.RecordHeader{{Key: state.OffsetHeader, Value: strconv.AppendInt(nil, int64(pr.rec.Offset), 10)}}}
			c.cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
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
	if err := c.cl.Flush(ctx); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, fmt.Errorf("producing records: %w", firstErr)
	}
	for p := range byPart {
		r := state.PartitionRange{Partition: int32(p)}
		if lo[p] >= 0 {
			r.Start, r.End = lo[p], hi[p]
		}
		m.Partitions = append(m.Partitions, r)
	}
	return m, nil
}

// StartRequest is the body of POST /v1/start.
type StartRequest struct {
	StartTime time.Time `json:"start_time,omitzero"`
	Delay     string    `json:"delay,omitempty"`
	Repeat    bool      `json:"repeat,omitempty"`
	Loops     int       `json:"loops,omitempty"`
}

// Start begins a run.
func (c *Controller) Start(ctx context.Context, req StartRequest) (state.Stage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.waitReady(ctx); err != nil {
		return state.Stage{}, err
	}
	st := c.reader.Stage()
	switch st.Stage {
	case state.StageLoaded, state.StageStopped:
	case state.StageRunning:
		return st, fmt.Errorf("%w: already running (run %s)", ErrConflict, st.RunID)
	default:
		return st, fmt.Errorf("%w: nothing loaded", ErrConflict)
	}
	if req.Loops < 0 {
		return st, fmt.Errorf("%w: loops must be >= 0", ErrInvalid)
	}
	if req.Loops > 0 && !req.Repeat {
		return st, fmt.Errorf("%w: loops %d needs repeat: true (without repeat a run plays the dataset once)", ErrInvalid, req.Loops)
	}
	if !req.StartTime.IsZero() && req.Delay != "" {
		return st, fmt.Errorf("%w: give start_time or delay, not both", ErrInvalid)
	}
	if now := time.Now(); !req.StartTime.IsZero() && req.StartTime.Before(now) {
		return st, fmt.Errorf("%w: start_time %s is %s in the past: every record due before now would be sent at once; "+
			"give a future start_time or a delay", ErrInvalid, req.StartTime.UTC().Format(time.RFC3339Nano), now.Sub(req.StartTime).Round(time.Millisecond))
	}
	start := req.StartTime
	if start.IsZero() {
		d := 2 * time.Second
		if req.Delay != "" {
			var err error
			if d, err = time.ParseDuration(req.Delay); err != nil || d < 0 {
				return st, fmt.Errorf("%w: delay %q: want a non-negative duration", ErrInvalid, req.Delay)
			}
		}
		start = time.Now().Add(d)
	}
	st.Stage = state.StageRunning
	st.RunID = "r-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	st.StartTime = start.UTC()
	st.Repeat, st.Loops = req.Repeat, req.Loops
	if !req.Repeat {
		st.Loops = 0
	}
	st.StoppedAt = time.Time{}
	if err := c.put(ctx, state.KeyStage, st); err != nil {
		return st, err
	}
	c.m.runs.Inc()
	c.cfg.Log.Info("run started", "run", st.RunID, "start", st.StartTime, "repeat", st.Repeat, "loops", st.Loops)
	return st, nil
}

// Stop ends the active run.
func (c *Controller) Stop(ctx context.Context) (state.Stage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.waitReady(ctx); err != nil {
		return state.Stage{}, err
	}
	st := c.reader.Stage()
	if st.Stage != state.StageRunning {
		return st, fmt.Errorf("%w: not running (stage %s)", ErrConflict, st.Stage)
	}
	st.Stage = state.StageStopped
	st.StoppedAt = time.Now().UTC()
	if err := c.put(ctx, state.KeyStage, st); err != nil {
		return st, err
	}
	c.cfg.Log.Info("run stopped", "run", st.RunID)
	return st, nil
}

// Delete removes the loaded records and manifests.
func (c *Controller) Delete(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	st := c.reader.Stage()
	if st.Stage == state.StageRunning {
		return fmt.Errorf("%w: a run is active; stop it first", ErrConflict)
	}
	if err := c.put(ctx, state.KeyStage, state.Stage{Stage: state.StageEmpty}); err != nil {
		return err
	}
	return c.dropTypes(ctx, st.Types, nil)
}

// TypeStatus is the progress of one type.
type TypeStatus struct {
	Sources int   `json:"sources"`
	Records int64 `json:"records"`
	// Committed counts records sent and committed (all loops).
	Committed int64 `json:"committed"`
	// Failed counts records the workers could not send because their source's destination
	// could not be built (all loops); they are committed past, and never sent.
	Failed int64 `json:"failed"`
	// FailedSources is Failed per source instance ("*": sources left out of long commit metadata).
	FailedSources map[string]int64 `json:"failed_sources,omitempty"`
	// Progress is (committed + failed) / (records × loops): the share of the run that is finished.
	Progress float64 `json:"progress"`
}

// Status is the body of GET /v1/status.
type Status struct {
	Stage     string    `json:"stage"`
	RunID     string    `json:"run_id,omitempty"`
	StartTime time.Time `json:"start_time,omitzero"`
	Span      string    `json:"span,omitempty"`
	Repeat    bool      `json:"repeat"`
	Loops     int       `json:"loops"`
	// Done is true once a run with a finite number of loops has every
	// record of every type committed or failed: nothing is left to send.
	Done  bool                  `json:"done"`
	Types map[string]TypeStatus `json:"types"`
}

// Status reports the stage and per-type progress from the committed offsets.
func (c *Controller) Status(ctx context.Context) (*Status, error) {
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	st := c.reader.Stage()
	out := &Status{Stage: st.Stage, RunID: st.RunID, StartTime: st.StartTime, Repeat: st.Repeat, Loops: st.Loops, Types: map[string]TypeStatus{}}
	if st.Span > 0 {
		out.Span = st.Span.String()
	}
	for _, typ := range st.Types {
		m := c.reader.Manifest(typ)
		if m == nil {
			continue
		}
		ts := TypeStatus{Sources: len(m.Sources), Records: m.Records()}
		if st.RunID != "" {
			offs, err := c.adm.FetchOffsets(ctx, c.cfg.Names.Group(typ))
			if err == nil {
				for _, pr := range m.Partitions {
					o, ok := offs.Lookup(c.cfg.Names.RecordsTopic(typ), pr.Partition)
					if !ok || o.Err != nil {
						continue
					}
					if meta, ok := state.DecodeCommitMeta(o.Metadata); ok && meta.Run == st.RunID {
						failed := meta.FailedTotal()
						ts.Committed += state.Progress(pr, o.At, meta) - failed
						ts.Failed += failed
						for src, n := range meta.Failed {
							if ts.FailedSources == nil {
								ts.FailedSources = map[string]int64{}
							}
							ts.FailedSources[src] += n
						}
					}
				}
			}
		}
		if loops := st.LoopCount(); loops > 0 && ts.Records > 0 {
			ts.Progress = float64(ts.Committed+ts.Failed) / float64(ts.Records*int64(loops))
		}
		out.Types[typ] = ts
	}
	out.Done = st.Stage == state.StageRunning && st.LoopCount() > 0 && len(out.Types) > 0
	for _, ts := range out.Types {
		if ts.Committed+ts.Failed < ts.Records*int64(st.LoopCount()) {
			out.Done = false
		}
	}
	return out, nil
}

// checkHostPort accepts host:port with a port from 1 to 65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1-65535", port)
	}
	return nil
}
