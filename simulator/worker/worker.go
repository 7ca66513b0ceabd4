// Package worker owns the simulator's replay side: a member of the consumer group of one data-source
// type that, for each assigned partition, resumes from the committed offset and loop (commit
// metadata), hands every record to the worker's single scheduler to be sent at
// start_time + loop × span + offset, commits after sending and on revoke, and leaves the group when
// the run stops or the process ends.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/delivery"
	"github.com/simlab/simlab/simulator/limits"
	"github.com/simlab/simlab/simulator/sched"
	"github.com/simlab/simlab/simulator/sftpd"
	"github.com/simlab/simlab/simulator/state"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a worker.
type Config struct {
	Brokers        []string
	Names          state.Names
	Type           string
	ControllerURL  string
	CommitInterval time.Duration
	Lookahead      time.Duration
	Log            *slog.Logger
	Metrics        *Metrics
	// NoWait disables scheduling (benchmark ceiling): records are sent as soon as fetched.
	NoWait bool
	// NoUring sends with write(2) even where io_uring works (see sched.Scheduler.SendPath).
	NoUring bool
	// Quantum is the shortest time between two dispatches of the scheduler (sched.Scheduler.Quantum).
	Quantum time.Duration
	// HandoverLead is how long a worker keeps writing a revoked partition's records (those due
	// within it) while the new owner fetches and connects; the new owner writes from the cutover
	// on (CommitMeta.Cutover). Negative: stop at revoke (the new owner resumes from what was
	// written). 0: the default, 1s.
	HandoverLead time.Duration
	// InstanceID, if set, is the group member's client id (logs only).
	InstanceID string
	// HeartbeatInterval bounds how fast a rebalance is noticed (default 200ms).
	HeartbeatInterval time.Duration
	// SessionTimeout is how long a crashed worker keeps its partitions (default 6s, Kafka's minimum).
	SessionTimeout time.Duration
	// SFTPListen is where the SFTP server for sftp sources listens (started on first use).
	SFTPListen string
	// SFTPHostKey is the server's private host key (PEM); empty: a fresh ed25519 key.
	SFTPHostKey []byte
	// SFTPSpool, if set, is a directory shared by every worker of the type (SpoolDir gives its
	// layout): the owner of an sftp source's partition publishes the source's files there, and
	// every worker serves every sftp source of the type from there, so any worker accepts a
	// source's login and a worker's death loses no published file. Empty: each worker keeps the
	// files of the sources it owns in memory and serves only those (the type cannot scale out).
	SFTPSpool string
	// FDLimit is the open-files limit the worker plans with (0: the process's soft
	// RLIMIT_NOFILE when New runs). An assignment that needs more is refused; see FDsNeeded.
	FDLimit uint64
	// ReportInterval is how often the worker publishes its delivery summary to the reports
	// topic (default 1s; intervals end on whole multiples of it).
	ReportInterval time.Duration
}

// FDReserve is the file descriptors a worker keeps for everything but its sources: Kafka
// connections, the HTTP and SFTP servers and their clients, the controller client, logs, the
// scheduler's io_uring and the connection watcher's epoll set.
const FDReserve = 64

// FDsPerTCPSource is the file descriptors one assigned TCP source holds (its SUT connection).
// SFTP sources share the worker's one SFTP server and need none of their own.
const FDsPerTCPSource = 1

// FDsNeeded is the open-files budget of an assignment of tcpSources TCP sources.
func FDsNeeded(tcpSources int) uint64 { return FDReserve + FDsPerTCPSource*uint64(tcpSources) }

// Worker replays one type.
type Worker struct {
	cfg    Config
	reader *state.Reader
	sch    *sched.Scheduler

	sftpMu sync.Mutex
	sftp   *sftpd.Server

	// refusal is why the worker refused its assignment in the current run ("" if it did not).
	refusal atomic.Pointer[string]

	// Delivery truth (delivery package): what this worker sent, per source, published per interval.
	rec      delivery.Recorder
	id       string // the worker's id in its summaries: InstanceID plus a random suffix
	seq      atomic.Int64
	pubMu    sync.Mutex // serialises summaries, so seq follows time
	producer *kgo.Client
	cur      atomic.Pointer[session]
	// sftpUsers maps an SFTP login to the source instance it serves (for pull accounting).
	sftpUsers sync.Map
	// spoolUsers are the logins served from the spool (worker.serveSpool).
	spoolUsers    map[string]bool
	noSpoolWarned sync.Once
}

// SpoolDir is the directory of one source's files in one run on the spool:
// <spool>/<type>/<run>/<instance>. A run has its own directories, so a new run never shows the
// files of an earlier one; each worker removes the type's earlier runs when a run starts.
func SpoolDir(spool, typ, run, instance string) string {
	return filepath.Join(spool, typ, run, instance)
}

// SFTP returns the worker's SFTP server, starting it on first use.
func (w *Worker) SFTP() (*sftpd.Server, error) {
	w.sftpMu.Lock()
	defer w.sftpMu.Unlock()
	if w.sftp != nil {
		return w.sftp, nil
	}
	if w.cfg.SFTPListen == "" {
		return nil, errors.New("sftp sources need --sftp-listen")
	}
	s, err := sftpd.Listen(w.cfg.SFTPListen, w.cfg.SFTPHostKey, w.cfg.Log)
	if err != nil {
		return nil, err
	}
	w.cfg.Log.Info("sftp server listening", "addr", s.Addr())
	s.OnPull(w.pulled)
	w.sftp = s
	return s, nil
}

// New returns a worker; call Run.
func New(cfg Config) *Worker {
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 200 * time.Millisecond
	}
	if cfg.Lookahead <= 0 {
		cfg.Lookahead = 5 * time.Second
	}
	if cfg.HandoverLead == 0 {
		cfg.HandoverLead = time.Second
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 200 * time.Millisecond
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 6 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.FDLimit == 0 {
		if n, err := limits.NoFile(); err == nil {
			cfg.FDLimit = n
		} else {
			cfg.Log.Warn("open-files limit unknown: assignments are not checked against it", "err", err)
		}
	}
	cfg.Metrics.fdLimit.Set(float64(cfg.FDLimit))
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = time.Second
	}
	w := &Worker{cfg: cfg, reader: state.NewReader(cfg.Brokers, cfg.Names, cfg.Log), sch: sched.New()}
	w.id = workerID(cfg.InstanceID)
	w.sch.NoWait = cfg.NoWait
	w.sch.Quantum = cfg.Quantum
	if cfg.NoUring {
		w.sch.NoUring()
	}
	return w
}

// HandoversInProgress counts the partitions this worker gave up in a rebalance and still writes
// (those due before their cutover), 0 outside a run.
func (w *Worker) HandoversInProgress() int {
	if s := w.cur.Load(); s != nil {
		return s.handoversInProgress()
	}
	return 0
}

// SendPath says how the worker writes due records (io_uring or write(2), and why).
func (w *Worker) SendPath() string { return w.sch.SendPath() }

// Ready reports whether the worker read the state topic and did not refuse its assignment.
func (w *Worker) Ready() bool { ok, _ := w.Readiness(); return ok }

// Readiness reports Ready and, when not ready, why.
func (w *Worker) Readiness() (bool, string) {
	if !w.reader.Ready() {
		return false, "state topic not read yet"
	}
	if r := w.refusal.Load(); r != nil && *r != "" {
		return false, *r
	}
	return true, ""
}

// refuse records that the assignment needs more open files than the limit; it logs once.
func (w *Worker) refuse(run string, need uint64, sources, partitions int) {
	reason := fmt.Sprintf("assignment refused: %d partitions with %d TCP sources need %d open files "+
		"(%d per TCP source + %d reserve), the open-files limit is %d; raise the limit (ulimit -n, the "+
		"container runtime's nofile) or run more workers of this type", partitions, sources, need,
		FDsPerTCPSource, FDReserve, w.cfg.FDLimit)
	if old := w.refusal.Swap(&reason); old == nil || *old == "" {
		w.cfg.Log.Error("refusing the assignment: too few open files for its sources; leaving the group for the rest of the run",
			"run", run, "need", need, "limit", w.cfg.FDLimit, "tcp_sources", sources, "partitions", partitions)
		w.cfg.Metrics.refused.Inc()
	}
}

// Run replays until ctx ends: it waits for a running stage, plays the run, and leaves the group
// when the run stops; it returns nil on ctx end after leaving the group.
func (w *Worker) Run(ctx context.Context) error {
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	go func() {
		if err := w.reader.Run(rctx); err != nil && rctx.Err() == nil {
			w.cfg.Log.Error("state reader stopped", "err", err)
		}
	}()
	schStop := make(chan struct{})
	defer close(schStop)
	defer func() {
		w.sftpMu.Lock()
		if w.sftp != nil {
			w.sftp.Close()
		}
		w.sftpMu.Unlock()
	}()
	go w.sch.Run(schStop)
	if p, err := kgo.NewClient(kgo.SeedBrokers(w.cfg.Brokers...), kgo.DefaultProduceTopic(w.cfg.Names.ReportsTopic()),
		kgo.ProducerBatchMaxBytes(contract.ReportsTopicMaxMessageBytes), kgo.RecordDeliveryTimeout(30*time.Second)); err != nil {
		w.cfg.Log.Error("reports producer: delivery summaries are not published", "err", err)
	} else {
		w.producer = p
		defer p.Close()
		go w.publishLoop(rctx)
	}
	for {
		var st state.Stage
		err := w.reader.WaitUntil(ctx, func(s state.Stage) bool {
			st = s
			return s.Stage == state.StageRunning && contains(s.Types, w.cfg.Type)
		})
		if err != nil {
			return nil
		}
		m, err := w.fetchManifest(ctx, st)
		if err != nil {
			w.cfg.Log.Warn("fetching the type's sources from the controller", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		if err := w.session(ctx, st, m); err != nil {
			w.cfg.Log.Error("session ended with error", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if r := w.refusal.Load(); r != nil && *r != "" {
			// Stay out of the group for the rest of this run: rejoining would only move the
			// partitions back and forth. A new run (or a restart with a higher limit) tries again.
			if err := w.reader.WaitUntil(ctx, func(x state.Stage) bool { return x.Stage != state.StageRunning || x.RunID != st.RunID }); err != nil {
				return nil
			}
			w.refusal.Store(nil)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (w *Worker) fetchManifest(ctx context.Context, st state.Stage) (*state.Manifest, error) {
	if w.cfg.ControllerURL == "" {
		if m := w.reader.Manifest(w.cfg.Type); m != nil && m.Fingerprint == st.Fingerprint {
			return m, nil
		}
		return nil, errors.New("no controller URL and no manifest in the state topic")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := strings.TrimRight(w.cfg.ControllerURL, "/") + "/v1/types/" + w.cfg.Type + "/sources"
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var m state.Manifest
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if m.Fingerprint != st.Fingerprint {
		return nil, fmt.Errorf("controller serves dataset %.12s, stage says %.12s", m.Fingerprint, st.Fingerprint)
	}
	return &m, nil
}

// session is one membership in the group for one run.
type session struct {
	w     *Worker
	st    state.Stage
	m     *state.Manifest
	topic string
	cl    *kgo.Client
	adm   *kadm.Client
	srcs  map[string]state.SourceEntry
	mu    sync.Mutex
	parts map[int32]*partState
	// clReady is closed once cl and adm are set.
	clReady chan struct{}
	// tcpByPart counts the TCP sources of each partition (for the open-files budget).
	tcpByPart map[int32]int
	// end ends the session (set before the client exists).
	end context.CancelFunc
	// handing holds the revoked partitions still writing what falls due before their cutover.
	handing map[*partState]struct{}
	// handed is signalled (on mu) when handovers end.
	handed *sync.Cond
	// flow pauses and resumes partitions' fetching (flow.go; on mu).
	flow flow
}

func (w *Worker) session(ctx context.Context, st state.Stage, m *state.Manifest) error {
	s := &session{w: w, st: st, m: m, topic: w.cfg.Names.RecordsTopic(w.cfg.Type), parts: map[int32]*partState{},
		srcs: map[string]state.SourceEntry{}, tcpByPart: map[int32]int{}, handing: map[*partState]struct{}{}}
	s.handed = sync.NewCond(&s.mu)
	for _, e := range m.Sources {
		s.srcs[e.Instance] = e
		if e.Config.Protocol == dataset.ProtoTCP {
			s.tcpByPart[e.Partition]++
		}
	}
	w.serveSpool(st, m)
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	s.end = scancel
	opts := []kgo.Opt{
		kgo.SeedBrokers(w.cfg.Brokers...),
		kgo.ConsumerGroup(w.cfg.Names.Group(w.cfg.Type)),
		kgo.ConsumeTopics(s.topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.SessionTimeout(w.cfg.SessionTimeout),
		kgo.HeartbeatInterval(w.cfg.HeartbeatInterval),
		kgo.RebalanceTimeout(10 * time.Second),
		kgo.AdjustFetchOffsetsFn(s.adjust),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		kgo.FetchMaxPartitionBytes(256 << 10),
		kgo.FetchMaxBytes(1 << 20),
	}
	if w.cfg.InstanceID != "" {
		opts = append(opts, kgo.ClientID(w.cfg.InstanceID))
	}
	s.clReady = make(chan struct{})
	w.rec.Begin(st.RunID, time.Now())
	w.cur.Store(s)
	defer func() {
		w.cur.Store(nil)
		w.publish(true)
		w.rec.End()
	}()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	close(s.clReady) // the group may call adjust before NewClient returns
	w.cfg.Log.Info("joining group", "run", st.RunID)
	go func() { // end the session when the run stops or changes
		_ = w.reader.WaitUntil(sctx, func(x state.Stage) bool { return x.Stage != state.StageRunning || x.RunID != st.RunID })
		scancel()
	}()
	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		t := time.NewTicker(w.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				s.commit(sctx, s.snapshot(nil), false, false)
			}
		}
	}()
	s.poll(sctx)
	if ctx.Err() != nil {
		// Shutting down mid-run (a scale-in, a rolling update): each handover in progress left
		// its new owner the records from its cutover on, so this worker writes those due before
		// it first (bounded by the handover lead), or they would be lost.
		s.waitHandovers()
	}
	// Stop sending at once, then commit what was sent and leave the group.
	s.cancelAll()
	<-commitDone
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	s.commit(cctx, s.snapshot(nil), true, false)
	cl.CloseAllowingRebalance() // revoked() runs for every partition (nothing left to send), then leave
	s.closeDests(nil)
	w.cfg.Log.Info("left group", "run", st.RunID)
	return nil
}
