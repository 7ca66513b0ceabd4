// Package controller owns the simulator's control plane: loading datasets into Kafka (a topic per
// type), the stage of the simulation in the compacted state topic (it is that topic's only
// writer), the HTTP API of docs/API.md, and serving each type's manifest to workers.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/simulator/delivery"
	"github.com/simlab/simlab/simulator/state"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Partitioning layouts (contract.PerSource, contract.Keyed).
const (
	PerSource = contract.PerSource
	Keyed     = contract.Keyed
)

// Config configures a controller.
type Config struct {
	Brokers         []string
	Names           state.Names
	DatasetRoot     string
	Partitioning    string
	KeyedPartitions int
	// SUTAddress (host:port; empty: none) is the address_override of a load that names none:
	// the lab's system under test, so every TCP source goes there without the caller saying so.
	SUTAddress string
	Log        *slog.Logger
}

// Controller is the only writer of the state topic.
type Controller struct {
	cfg    Config
	cl     *kgo.Client
	adm    *kadm.Client
	reader *state.Reader
	mu     sync.Mutex // serialises state-changing operations
	m      *metrics
	// agg holds every run's delivery summaries from the reports topic (reports.go).
	agg *delivery.Aggregator
}

// ErrConflict is returned when an operation does not fit the current stage.
var ErrConflict = errors.New("conflict")

// ErrInvalid marks a request the API refuses as malformed (HTTP 400).
var ErrInvalid = errors.New("invalid request")

// New connects to Kafka and creates the state topic if needed. Run must be called to read it.
func New(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Partitioning == "" {
		cfg.Partitioning = contract.DefaultPartitioning
	}
	if cfg.KeyedPartitions <= 0 {
		cfg.KeyedPartitions = contract.DefaultKeyedPartitions
	}
	if cfg.SUTAddress != "" {
		if err := checkHostPort(cfg.SUTAddress); err != nil {
			return nil, fmt.Errorf("the SUT address %q: %v (want host:port, e.g. sut.example:9000)", cfg.SUTAddress, err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(contract.StateTopicMaxMessageBytes), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordDeliveryTimeout(60*time.Second))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	c := &Controller{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), m: newMetrics(), agg: delivery.NewAggregator()}
	c.reader = state.NewReader(cfg.Brokers, cfg.Names, cfg.Log)
	if err := c.ensureStateTopic(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	if err := c.ensureReportsTopic(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return c, nil
}

// Reader exposes the controller's view of the state topic.
func (c *Controller) Reader() *state.Reader { return c.reader }

// Run reads the state topic and the reports topic until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	go c.readReports(ctx)
	return c.reader.Run(ctx)
}

// Close releases the Kafka client.
func (c *Controller) Close() { c.cl.Close() }

func (c *Controller) ensureStateTopic(ctx context.Context) error {
	topic := c.cfg.Names.StateTopic()
	compact, maxBytes := "compact", strconv.Itoa(contract.StateTopicMaxMessageBytes)
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
	return c.putAll(ctx, []keyValue{{key, v}})
}

// keyValue is one write to the state topic: a stage, a manifest, or nil (a tombstone).
type keyValue struct {
	key string
	v   any
}

// putAll writes the values to the state topic in one produce call (one batch, appended at once,
// when they fit in it) and waits until the controller's own reader saw all of them, so reads
// after a write are consistent.
func (c *Controller) putAll(ctx context.Context, kvs []keyValue) error {
	recs := make([]*kgo.Record, 0, len(kvs))
	for _, kv := range kvs {
		var val []byte
		if kv.v != nil {
			b, err := json.Marshal(kv.v)
			if err != nil {
				return fmt.Errorf("encoding %s: %w", kv.key, err)
			}
			val = b
		}
		recs = append(recs, &kgo.Record{Topic: c.cfg.Names.StateTopic(), Partition: 0, Key: []byte(kv.key), Value: val})
	}
	if err := c.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("writing %s to the state topic: %w", kvs[0].key, err)
	}
	return c.reader.WaitUntil(ctx, func(s state.Stage) bool {
		for _, kv := range kvs {
			if !c.sees(s, kv) {
				return false
			}
		}
		return true
	})
}

// sees reports whether the reader's state reflects a write.
func (c *Controller) sees(s state.Stage, kv keyValue) bool {
	if kv.key == state.KeyStage {
		want, _ := kv.v.(state.Stage)
		return s.Stage == want.Stage && s.RunID == want.RunID && s.Fingerprint == want.Fingerprint
	}
	m := c.reader.Manifest(kv.key[len(state.ManifestPrefix):])
	if kv.v == nil {
		return m == nil
	}
	want, _ := kv.v.(*state.Manifest)
	return m != nil && m.Fingerprint == want.Fingerprint && m.Partitioning == want.Partitioning
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
	Done bool `json:"done"`
	// StoppedAt is when the run was stopped (stage stopped).
	StoppedAt time.Time             `json:"stopped_at,omitzero"`
	Types     map[string]TypeStatus `json:"types"`
}

// Status reports the stage and per-type progress from the committed offsets.
func (c *Controller) Status(ctx context.Context) (*Status, error) {
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	st := c.reader.Stage()
	out := &Status{Stage: st.Stage, RunID: st.RunID, StartTime: st.StartTime, Repeat: st.Repeat, Loops: st.Loops, Types: map[string]TypeStatus{}}
	if st.Stage == state.StageStopped {
		out.StoppedAt = st.StoppedAt
	}
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
