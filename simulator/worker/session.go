package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/sched"
	"github.com/simlab/simlab/simulator/sftpd"
	"github.com/simlab/simlab/simulator/state"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// adjust runs when partitions are assigned, before fetching: it reads the committed offsets with
// their metadata and positions each partition at its committed offset and loop for this run, or
// at the start of the partition's records when the commit belongs to another run.
func (s *session) adjust(ctx context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	w := s.w
	select {
	case <-s.clReady:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	committed, err := s.adm.FetchOffsets(ctx, w.cfg.Names.Group(w.cfg.Type))
	if err != nil {
		return nil, err
	}
	ranges := map[int32]state.PartitionRange{}
	for _, r := range s.m.Partitions {
		ranges[r.Partition] = r
	}
	out := map[string]map[int32]kgo.Offset{}
	for topic, ps := range offs {
		out[topic] = map[int32]kgo.Offset{}
		for p := range ps {
			rng := ranges[p]
			at, loop := rng.Start, 0
			var failed map[string]int64
			var cutover int64
			if o, ok := committed.Lookup(topic, p); ok && o.Err == nil {
				if meta, ok := state.DecodeCommitMeta(o.Metadata); ok && meta.Run == s.st.RunID && o.At >= rng.Start && o.At <= rng.End {
					at, loop, failed, cutover = o.At, meta.Loop, meta.Failed, meta.Cutover
				}
			}
			loops := s.st.LoopCount()
			// paused: true makes the poll loop resume the partition explicitly: the client keeps a
			// pause from an earlier assignment of the same partition.
			st := &partState{topic: topic, part: p, rng: rng, loops: loops, fetchLoop: loop, paused: true,
				pos: at, posLoop: loop, committed: at, commLoop: loop, dests: map[string]*sched.Dest{},
				broken: map[string]error{}, failed: failed, skipBefore: cutover}
			if rng.End == rng.Start || (loops > 0 && loop >= loops) {
				st.exhausted = true
				at = rng.End
			}
			s.mu.Lock()
			if old := s.parts[p]; old != nil {
				old.cancelled.Store(true)
			}
			s.parts[p] = st
			s.flow.assigned(st)
			s.mu.Unlock()
			w.cfg.Metrics.assigned.Inc()
			w.cfg.Log.Debug("partition assigned", "partition", p, "offset", at, "loop", loop)
			out[topic][p] = kgo.NewOffset().At(at).WithEpoch(-1)
		}
	}
	w.cfg.Metrics.rebalances.Inc()
	if s.overLimit() {
		// Fetch nothing: the session ends and the worker leaves the group.
		for topic, ps := range out {
			for p := range ps {
				out[topic][p] = kgo.NewOffset().At(ranges[p].End).WithEpoch(-1)
			}
		}
	}
	return out, nil
}

// overLimit checks the whole assignment against the open-files limit. Over it, the worker refuses:
// it stops every partition before any connection to the SUT is opened for the new ones, ends the
// session (leaving the group, so other workers get the partitions), and is not ready for the rest
// of the run; it never opens connections it has no descriptors for.
func (s *session) overLimit() bool {
	w := s.w
	s.mu.Lock()
	tcp := 0
	for p := range s.parts {
		tcp += s.tcpByPart[p]
	}
	nparts := len(s.parts)
	need := FDsNeeded(tcp)
	over := w.cfg.FDLimit > 0 && need > w.cfg.FDLimit
	if over {
		for _, ps := range s.parts {
			ps.cancelled.Store(true)
			ps.exhausted = true
		}
	}
	s.mu.Unlock()
	w.cfg.Metrics.fdNeeded.Set(float64(need))
	if over {
		w.refuse(s.st.RunID, need, tcp, nparts)
		s.end()
	}
	return over
}

// revoked hands the partitions over. With a handover lead, each gets a cutover (now + lead, no
// later than its last fetched record): this worker keeps writing what falls due before it, the
// commit carries it, and the new owner writes from it on; the new owner meanwhile fetches and
// connects, so records due after the cutover are on time. Without one (or when that commit
// fails) it stops the sends, waits for writes in progress, and commits what was sent.
func (s *session) revoked(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	parts := s.take(lost)
	if len(parts) == 0 {
		return
	}
	s.w.cfg.Metrics.rebalances.Inc()
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if lead := s.w.cfg.HandoverLead; lead > 0 {
		// Only live partitions hand over: a stopped one (the session ending) writes nothing more.
		var live, stopped []*partState
		now := time.Now().UnixNano()
		for _, p := range parts {
			if p.stopped() {
				stopped = append(stopped, p)
				continue
			}
			p.cutover.Store(max(now, min(now+int64(lead), p.fetchedDue.Load()+1)))
			live = append(live, p)
		}
		if len(live) > 0 && s.commit(cctx, live, true, true) {
			s.mu.Lock()
			for _, p := range live {
				s.handing[p] = struct{}{}
			}
			s.mu.Unlock()
			go s.finishHandover(live)
			parts = stopped
		} else {
			// Without the cutover committed the new owner writes everything from the committed
			// position: stop now (the usual at-least-once handover).
			for _, p := range live {
				p.cutover.Store(0)
			}
		}
		if len(parts) == 0 {
			return
		}
	}
	s.stopParts(parts)
	s.commit(cctx, s.snapshot(parts), true, false)
	s.closeDests(parts)
}

// finishHandover waits until every record due before each partition's cutover was written (or
// the partition stopped, or the cutover is long past), then stops the partitions and closes
// their connections.
func (s *session) finishHandover(parts []*partState) {
	for _, p := range parts {
		c := p.cutover.Load()
		for !p.stopped() && p.undoneBefore(c) && time.Now().UnixNano() < c+int64(10*time.Second) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	s.stopParts(parts)
	s.closeDests(parts)
	s.mu.Lock()
	for _, p := range parts {
		delete(s.handing, p)
	}
	s.handed.Broadcast()
	s.mu.Unlock()
}

// waitHandovers waits until no handover is in progress.
func (s *session) waitHandovers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.handing) > 0 {
		s.handed.Wait()
	}
}

// handoversInProgress counts the revoked partitions still writing before their cutover.
func (s *session) handoversInProgress() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.handing)
}

// lost drops the partitions without committing (another member may own them already).
func (s *session) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	parts := s.take(lost)
	s.stopParts(parts)
	s.closeDests(parts)
	s.w.cfg.Metrics.rebalances.Inc()
}

func (s *session) take(tps map[string][]int32) []*partState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*partState
	for _, ps := range tps {
		for _, p := range ps {
			if st := s.parts[p]; st != nil {
				out = append(out, st)
				delete(s.parts, p)
				s.w.cfg.Metrics.assigned.Dec()
			}
		}
	}
	return out
}

func (s *session) stopParts(parts []*partState) {
	for _, p := range parts {
		p.cancelled.Store(true)
	}
	for _, p := range parts {
		p.mu.Lock()
		ds := make([]*sched.Dest, 0, len(p.dests))
		for _, d := range p.dests {
			ds = append(ds, d)
		}
		p.mu.Unlock()
		for _, d := range ds {
			d.Barrier()
		}
	}
}

func (s *session) closeDests(parts []*partState) {
	if parts == nil {
		s.mu.Lock()
		for _, p := range s.parts {
			parts = append(parts, p)
		}
		for p := range s.handing {
			parts = append(parts, p)
		}
		s.mu.Unlock()
	}
	for _, p := range parts {
		p.mu.Lock()
		ds := p.dests
		p.dests = map[string]*sched.Dest{}
		p.mu.Unlock()
		for _, d := range ds {
			d.Close()
		}
	}
}

// cancelAll stops every send of the session (stop, shutdown), handovers in progress included.
func (s *session) cancelAll() {
	s.mu.Lock()
	var parts []*partState
	for _, p := range s.parts {
		parts = append(parts, p)
	}
	for p := range s.handing {
		parts = append(parts, p)
	}
	s.mu.Unlock()
	s.stopParts(parts)
}

func (s *session) snapshot(parts []*partState) []*partState {
	if parts != nil {
		return parts
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*partState, 0, len(s.parts))
	for _, p := range s.parts {
		out = append(out, p)
	}
	return out
}

// commit commits every moved position with its run and loop (and a handover's cutover) as
// metadata; force commits unmoved positions too. The metadata is set through the pre-commit
// hook: a plain commit would overwrite it with an empty string. It reports success.
func (s *session) commit(ctx context.Context, parts []*partState, sync, force bool) bool {
	offsets := map[int32]kgo.EpochOffset{}
	metas := map[int32]string{}
	type mark struct {
		p    *partState
		off  int64
		loop int
	}
	var marks []mark
	for _, p := range parts {
		off, loop, failed, moved := p.position()
		if !moved && !force {
			continue
		}
		cut := p.cutover.Load()
		if cut == 0 {
			cut = p.skipBefore // until a later owner starts past it, it still tells what to skip
		}
		offsets[p.part] = kgo.EpochOffset{Epoch: -1, Offset: off}
		metas[p.part] = state.CommitMeta{Run: s.st.RunID, Loop: loop, Failed: failed, Cutover: cut}.Encode()
		marks = append(marks, mark{p, off, loop})
	}
	if len(offsets) == 0 {
		return true
	}
	pre := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				pp := &req.Topics[i].Partitions[j]
				if m, ok := metas[pp.Partition]; ok {
					pp.Metadata = &m
				}
			}
		}
		return nil
	})
	var failed error
	s.cl.CommitOffsetsSync(pre, map[string]map[int32]kgo.EpochOffset{s.topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				failed = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode != 0 {
						failed = errCode(p.ErrorCode)
					}
				}
			}
		})
	if failed != nil {
		if ctx.Err() == nil {
			s.w.cfg.Log.Warn("commit failed", "err", failed, "final", sync)
		}
		return false
	}
	for _, m := range marks {
		m.p.markCommitted(m.off, m.loop)
	}
	s.w.cfg.Metrics.commits.Inc()
	return true
}

// maxPending bounds the fetched-but-unwritten records per partition.
const maxPending = 200000

// poll fetches records, turns them into scheduled items, and pauses partitions that are more than
// the lookahead ahead of time.
func (s *session) poll(ctx context.Context) {
	w := s.w
	start := s.st.StartTime.UnixNano()
	span := int64(s.m.Span)
	s.flow.look = int64(w.cfg.Lookahead)
	var items []*sched.Item
	rewind := map[int32]kgo.EpochOffset{}
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fs := s.cl.PollRecords(pctx, 50000)
		cancel()
		fs.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil && pctx.Err() == nil {
				w.cfg.Log.Debug("fetch", "partition", p, "err", err)
			}
		})
		items = items[:0]
		s.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			ps := s.parts[r.Partition]
			if ps == nil || ps.stopped() || ps.exhausted || r.Offset < ps.rng.Start || r.Offset >= ps.rng.End {
				return
			}
			var off int64
			for _, h := range r.Headers {
				if h.Key == state.OffsetHeader {
					d, err := state.ParseOffsetHeader(h.Value)
					if err == nil {
						off = int64(d)
					}
				}
			}
			it := &sched.Item{Due: start + int64(ps.fetchLoop)*span + off, Payload: r.Value, Owner: ps,
				Offset: r.Offset, Loop: ps.fetchLoop}
			ps.track(it)
			ps.lastDue = it.Due
			s.flow.fetched(ps)
			ps.fetchedDue.Store(it.Due)
			if it.Due < ps.skipBefore {
				// The previous owner writes it (handover cutover): written, as far as this
				// worker's position goes.
				ps.Done(it)
			} else if it.Dest = s.dest(ps, string(r.Key)); it.Dest != nil {
				items = append(items, it)
			} else {
				// Not sendable: counted as failed for its source (status, metrics), never
				// silently skipped; the commit position moves past it with that count.
				ps.fail(it, string(r.Key))
				w.rec.Failed(string(r.Key))
				w.cfg.Metrics.failed.WithLabelValues(string(r.Key), failReason(ps.broken[string(r.Key)])).Inc()
			}
			if r.Offset+1 == ps.rng.End {
				ps.fetchLoop++
				if ps.loops > 0 && ps.fetchLoop >= ps.loops {
					ps.exhausted = true
				} else {
					rewind[ps.part] = kgo.EpochOffset{Epoch: -1, Offset: ps.rng.Start}
				}
			}
		})
		// Flow control (flow.go): fetch at most the lookahead ahead of time, and stop fetching
		// while a partition has too many unwritten records (a SUT that is down), so memory
		// stays bounded.
		pause, resume := s.flow.decide(time.Now().UnixNano(), s.live)
		s.mu.Unlock()
		w.sch.Push(items...)
		if len(rewind) > 0 {
			s.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{s.topic: rewind})
			rewind = map[int32]kgo.EpochOffset{}
		}
		if len(pause) > 0 {
			s.cl.PauseFetchPartitions(map[string][]int32{s.topic: pause})
		}
		if len(resume) > 0 {
			s.cl.ResumeFetchPartitions(map[string][]int32{s.topic: resume})
		}
		s.cl.AllowRebalance()
	}
}

// live reports whether ps is still one of the session's partitions (under s.mu).
func (s *session) live(ps *partState) bool { return s.parts[ps.part] == ps }

// Reasons a record's destination cannot be built (the reason label of
// simulator_worker_records_failed_total).
var (
	errUnknownSource = errors.New("unknown_source")
	errSFTP          = errors.New("sftp_unavailable")
	errProtocol      = errors.New("unsupported_protocol")
)

// failReason is the metric label of a destination error.
func failReason(err error) string {
	for _, e := range []error{errUnknownSource, errSFTP, errProtocol} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "other"
}

// dest returns the sender of a source in a partition, creating it on first use; nil when it cannot
// be built (the reason is kept in ps.broken and logged once per source and assignment).
func (s *session) dest(ps *partState, instance string) *sched.Dest {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if d := ps.dests[instance]; d != nil {
		return d
	}
	if ps.broken[instance] != nil {
		return nil
	}
	d, err := s.newDest(ps, instance)
	if err != nil {
		ps.broken[instance] = err
		s.w.cfg.Log.Error("source cannot be sent: its records are counted as failed and not sent",
			"source", s.w.cfg.Type+"/"+instance, "partition", ps.part, "reason", failReason(err), "err", err)
		return nil
	}
	ps.dests[instance] = d
	return d
}

func (s *session) newDest(ps *partState, instance string) (*sched.Dest, error) {
	e, ok := s.srcs[instance]
	if !ok {
		return nil, fmt.Errorf("%w: source %q is not in the type's manifest", errUnknownSource, instance)
	}
	switch e.Config.Protocol {
	case dataset.ProtoTCP:
		return sched.NewDest(s.w.cfg.Type+"/"+instance, e.Config.TCP.Address, e.Config.Framing, s.w.cfg.Log, s.w.hooksFor(instance, e.Config.Protocol)), nil
	case dataset.ProtoSFTP:
		d, err := s.sftpDest(ps, instance, e)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errSFTP, err)
		}
		return d, nil
	default:
		return nil, fmt.Errorf("%w: protocol %q is not supported by this worker", errProtocol, e.Config.Protocol)
	}
}

// sftpDest publishes each due record as a file <pattern with {seq}> in the source's root, where seq
// is loop × records-in-partition + position: stable across handovers and loops.
func (s *session) sftpDest(ps *partState, instance string, e state.SourceEntry) (*sched.Dest, error) {
	srv, err := s.w.SFTP()
	if err != nil {
		return nil, err
	}
	c := e.Config.SFTP
	acct, err := s.w.sftpAccount(s.st.RunID, instance, e)
	if err != nil {
		return nil, err
	}
	srv.Add(acct)
	n := ps.rng.End - ps.rng.Start
	pattern := c.FilePattern
	deliver := func(items []*sched.Item) error {
		for _, it := range items {
			seq := int64(it.Loop)*n + it.Offset - ps.rng.Start
			name := strings.ReplaceAll(pattern, "{seq}", strconv.FormatInt(seq, 10))
			if err := srv.Put(c.User, name, it.Payload); err != nil {
				return err
			}
		}
		return nil
	}
	s.w.sftpUsers.Store(c.User, instance)
	closed := func() { srv.Remove(c.User) }
	if acct.Dir != "" {
		// On the spool the files stay, served by every worker; only the publishing moves.
		closed = func() { srv.Release(c.User) }
	}
	return sched.NewFuncDest(s.w.cfg.Type+"/"+instance, deliver, closed, s.w.cfg.Log, s.w.hooksFor(instance, e.Config.Protocol)), nil
}

// sftpAccount is the login of an sftp source, on the spool (its directory for the run) when the
// worker has one.
func (w *Worker) sftpAccount(run, instance string, e state.SourceEntry) (sftpd.Account, error) {
	c := e.Config.SFTP
	keys, err := sftpd.ParseAuthorizedKeys(c.AuthorizedKeys)
	if err != nil {
		return sftpd.Account{}, err
	}
	acct := sftpd.Account{User: c.User, AuthorizedKeys: keys}
	if c.PasswordEnv != "" {
		acct.Password = os.Getenv(c.PasswordEnv)
		if acct.Password == "" && len(keys) == 0 {
			return sftpd.Account{}, fmt.Errorf("environment variable %s (sftp.password_env) is empty", c.PasswordEnv)
		}
	}
	if w.cfg.SFTPSpool != "" {
		acct.Dir = SpoolDir(w.cfg.SFTPSpool, w.cfg.Type, run, instance)
	}
	return acct, nil
}

// serveSpool, at the start of a session, makes every sftp source of the type log in here, served
// from its directory of the run on the spool (whichever worker owns it), and removes the type's
// earlier runs from the spool. Without a spool it warns once that the type cannot scale out.
func (w *Worker) serveSpool(st state.Stage, m *state.Manifest) {
	var sftpSrcs []state.SourceEntry
	for _, e := range m.Sources {
		if e.Config.Protocol == dataset.ProtoSFTP && e.Config.SFTP != nil {
			sftpSrcs = append(sftpSrcs, e)
		}
	}
	if len(sftpSrcs) == 0 {
		return
	}
	if w.cfg.SFTPSpool == "" {
		w.noSpoolWarned.Do(func() {
			w.cfg.Log.Warn("sftp sources without --sftp-spool: this worker keeps the files of the sources it owns in memory "+
				"and serves only those, and loses them when it dies; the type cannot scale out beyond one worker",
				"type", w.cfg.Type, "sftp_sources", len(sftpSrcs))
		})
		return
	}
	srv, err := w.SFTP()
	if err != nil {
		w.cfg.Log.Error("sftp server: the type's sources cannot log in here", "err", err)
		return
	}
	users := map[string]bool{}
	for _, e := range sftpSrcs {
		acct, err := w.sftpAccount(st.RunID, e.Instance, e)
		if err != nil {
			continue // its owner counts its records as failed and logs why
		}
		srv.Add(acct)
		users[acct.User] = true
		w.sftpUsers.Store(acct.User, e.Instance)
	}
	for u := range w.spoolUsers {
		if !users[u] {
			srv.Remove(u)
			w.sftpUsers.Delete(u)
		}
	}
	w.spoolUsers = users
	w.cfg.Log.Info("serving the type's sftp sources from the spool", "spool", w.cfg.SFTPSpool, "run", st.RunID, "sources", len(users))
	go w.removeEarlierRuns(st.RunID)
}

// removeEarlierRuns removes the type's directories of other runs from the spool.
func (w *Worker) removeEarlierRuns(run string) {
	dir := filepath.Join(w.cfg.SFTPSpool, w.cfg.Type)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() != run {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				w.cfg.Log.Debug("removing an earlier run from the sftp spool", "run", e.Name(), "err", err)
			}
		}
	}
}
