// Package sink owns the stand-in for the system under test: a TCP receiver that timestamps every
// record as it is fully read, identifies it by the generator's mark (source, seq, offset), and
// reports per type what was expected, received, lost, duplicated, early, and how late.
package sink

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
)

// Receipt is one received record.
type Receipt struct {
	Seq    int32
	Offset time.Duration
	At     int64 // unix ns, when the record was fully read
}

// Sink receives records over TCP.
type Sink struct {
	framing string
	ln      net.Listener
	addr    string

	index atomic.Pointer[contentIndex]

	mu       sync.Mutex
	bySource map[string][]Receipt
	// pending are receipts whose content matches several records: resolved at report time.
	pending []pending
	// unmatched are receipts that carry no mark and match no record of the dataset.
	unmatched []unmatched
	// connSource is, per connection, the sources its attributed records came from.
	connSource map[string]map[string]struct{}
	// framingMismatches counts connections whose stream does not fit the sink's framing.
	framingMismatches int64
	mismatchSamples   []string
	log               *slog.Logger
	conns             map[net.Conn]struct{}
	unparsed          atomic.Int64
	total             atomic.Int64
	wg                sync.WaitGroup
	closed            bool
}

// Listen starts a sink on addr (e.g. 127.0.0.1:0) reading frames of the given framing.
func Listen(addr, framing string) (*Sink, error) {
	s := &Sink{framing: framing, bySource: map[string][]Receipt{}, conns: map[net.Conn]struct{}{}, connSource: map[string]map[string]struct{}{},
		log: slog.Default()}
	if err := s.listen(addr); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sink) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ln, s.addr, s.closed = ln, ln.Addr().String(), false
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go s.serve(c)
		}
	}()
	return nil
}

// SetLogger sets where the sink logs (framing mismatches); default slog.Default().
func (s *Sink) SetLogger(l *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = l
}

// Addr is the listen address.
func (s *Sink) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Total is the number of records received (including duplicates and unparsed ones).
func (s *Sink) Total() int64 { return s.total.Load() }

// Close stops listening and drops every connection (what a crashing SUT looks like).
func (s *Sink) Close() {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Restart closes everything and listens again on the same address, keeping what was received.
func (s *Sink) Restart() error {
	addr := s.Addr()
	s.Close()
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly
		if err = s.listen(addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

func (s *Sink) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	br := bufio.NewReaderSize(c, 256<<10)
	conn := c.RemoteAddr().String()
	var batch []item
	defer func() { s.add(batch) }()
	mismatched := false
	// emit classifies a frame and queues it; the first frame of a connection that matches no
	// record of the dataset (or only by its mark) and looks like another framing makes the
	// connection a framing mismatch, and that frame unattributed.
	emit := func(frame []byte, now int64) {
		s.total.Add(1)
		it := s.classify(frame, now, conn)
		it.conn = conn
		if (it.un != nil || it.viaMark) && !mismatched && s.framing != dataset.FramingRaw {
			if guess := s.guessFraming(frame); guess != "" {
				mismatched = true
				if it.un == nil {
					it = item{conn: conn, un: &unmatched{conn: conn, size: len(frame), sum: sha256.Sum256(frame), at: now}}
				}
				s.add(batch)
				batch = batch[:0]
				s.mismatch(conn, guess)
			}
		}
		batch = append(batch, it)
		if br.Buffered() == 0 || len(batch) >= 1024 {
			s.add(batch)
			batch = batch[:0]
		}
	}
	if s.framing == dataset.FramingRaw {
		s.serveRaw(br, conn, emit)
		return
	}
	var frame []byte
	for {
		var err error
		frame, err = s.next(br, frame[:0])
		if err == io.ErrUnexpectedEOF && len(frame) > 0 {
			emit(frame, time.Now().UnixNano()) // the sender closed after a frame without its end
			return
		}
		if err != nil {
			var fe frameError
			if errors.As(err, &fe) {
				s.add(batch)
				batch = batch[:0]
				s.mismatch(conn, string(fe))
				io.Copy(io.Discard, br) // keep the sender from reconnecting and resending in a loop
			}
			return
		}
		if emit(frame, time.Now().UnixNano()); mismatched {
			io.Copy(io.Discard, br) // the rest cannot be framed either
			return
		}
	}
}

// frameError is a frame header no sender of this framing writes.
type frameError string

func (e frameError) Error() string { return string(e) }

// guessFraming says which framing an unattributable frame (read with the sink's newline framing)
// looks like, or "" if none.
func (s *Sink) guessFraming(frame []byte) string {
	idx := s.index.Load()
	known := func(p []byte) bool {
		if _, ok := dataset.ParseMark(p); ok {
			return true
		}
		return idx != nil && idx.has(p)
	}
	if len(frame) >= 4 {
		if n := binary.BigEndian.Uint32(frame); int64(n) <= int64(len(frame)-4) && known(frame[4:4+n]) {
			return fmt.Sprintf("the sink expects %s framing; the stream looks %s-framed (a 4-byte length %d before a known payload)",
				s.framing, dataset.FramingLength, n)
		}
	}
	if _, ok := dataset.ParseMark(frame); ok && bytes.Contains(frame[1:], []byte("SIMREC ")) {
		return fmt.Sprintf("the sink expects %s framing; the stream looks %s (several marked records without a newline between them)",
			s.framing, dataset.FramingRaw)
	}
	if idx != nil {
		for _, l := range idx.lengths {
			if l >= len(frame) {
				break
			}
			if idx.has(frame[:l]) {
				return fmt.Sprintf("the sink expects %s framing; the stream looks %s (a %d-byte line starts with a %d-byte payload of the dataset)",
					s.framing, dataset.FramingRaw, len(frame), l)
			}
		}
	}
	return ""
}

// serveRaw splits a raw stream (payloads back to back) by content: at each point it takes the
// shortest payload length of the dataset whose bytes are a record of it. A stream that stops
// matching (another framing, or bytes not in the dataset) is reported as a framing mismatch and
// the rest of it discarded. 0-byte payloads are invisible in a raw stream.
func (s *Sink) serveRaw(br *bufio.Reader, conn string, emit func([]byte, int64)) {
	idx := s.index.Load()
	if idx == nil || len(idx.lengths) == 0 {
		s.mismatch(conn, fmt.Sprintf("the sink expects %s framing but has no dataset with non-empty payloads to split the stream by (give --dataset)", dataset.FramingRaw))
		io.Copy(io.Discard, br)
		return
	}
	maxLen := idx.lengths[len(idx.lengths)-1]
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := br.Read(chunk)
		now := time.Now().UnixNano()
		buf = append(buf, chunk[:n]...)
	match:
		for len(buf) > 0 {
			for _, l := range idx.lengths {
				if l > len(buf) {
					break
				}
				if idx.has(buf[:l]) {
					emit(buf[:l], now)
					buf = buf[l:]
					continue match
				}
			}
			if len(buf) >= maxLen || err != nil {
				s.mismatch(conn, s.guessRaw(buf, idx))
				io.Copy(io.Discard, br)
				return
			}
			break
		}
		if err != nil {
			return
		}
		if len(buf) == 0 {
			buf = buf[:0:0] // let a consumed buffer go
		}
	}
}

// guessRaw describes where a raw stream stopped matching the dataset.
func (s *Sink) guessRaw(rest []byte, idx *contentIndex) string {
	base := fmt.Sprintf("the sink expects %s framing; %d bytes match no record of the dataset", dataset.FramingRaw, len(rest))
	if len(rest) > 1 && rest[0] == '\n' {
		for _, l := range idx.lengths {
			if l < len(rest) && idx.has(rest[1:1+l]) {
				return base + fmt.Sprintf(" and the stream looks %s-framed (a newline after each payload)", dataset.FramingNewline)
			}
		}
	}
	if len(rest) >= 4 {
		if n := binary.BigEndian.Uint32(rest); int64(n) <= int64(len(rest)-4) && idx.has(rest[4:4+n]) {
			return base + fmt.Sprintf(" and the stream looks %s-framed (a 4-byte length before each payload)", dataset.FramingLength)
		}
	}
	return base
}

// mismatch records a framing mismatch on a connection: counted, described in the report, and one
// log line.
func (s *Sink) mismatch(conn, why string) {
	s.mu.Lock()
	var srcs []string
	for src := range s.connSource[conn] {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	d := "connection from " + conn
	if len(srcs) > 0 {
		d += " (source " + strings.Join(srcs, ", ") + ")"
	}
	d += ": " + why
	s.framingMismatches++
	if len(s.mismatchSamples) < maxSamples {
		s.mismatchSamples = append(s.mismatchSamples, d)
	}
	log := s.log
	s.mu.Unlock()
	log.Warn("sink: framing mismatch; the records of this connection are not counted", "conn", conn, "sources", srcs, "why", why)
}

// item is one received record, classified: attributed (src set), pending (several candidate
// records share its content) or unmatched.
type item struct {
	conn  string
	src   string
	r     Receipt
	cands []candidate
	size  int
	sum   [sha256.Size]byte
	un    *unmatched
	// viaMark: a dataset was given but the payload is not in it; attributed by its mark.
	viaMark bool
}

type pending struct {
	cands []candidate
	at    int64
	conn  string
	size  int
	sum   [sha256.Size]byte
}

type unmatched struct {
	conn string
	size int
	sum  [sha256.Size]byte
	at   int64
	// sources is set when the content matches records of several sources and the connection's own
	// source is unknown or not among them.
	sources []string
}

// candidate is one record of the dataset a received payload may be.
type candidate struct {
	src    string
	seq    int32
	offset time.Duration
}

// contentIndex maps a payload's SHA-256 to the dataset's records with that content; lengths are
// the distinct non-zero payload lengths, ascending (to split a raw stream).
type contentIndex struct {
	byHash  map[[sha256.Size]byte][]candidate
	lengths []int
}

func (x *contentIndex) has(p []byte) bool {
	_, ok := x.byHash[sha256.Sum256(p)]
	return ok
}

// Expect gives the sink the dataset it should receive, so that payloads without the generator's
// mark (0-byte payloads, hand-made datasets) are matched by content: source, offset and SHA-256
// of the payload. Call it before records arrive. A payload that is in the dataset is identified by
// content even if it carries a mark; seq is then the record's index in its source (by offset).
func (s *Sink) Expect(d *dataset.Dataset) {
	idx := &contentIndex{byHash: map[[sha256.Size]byte][]candidate{}}
	lens := map[int]bool{}
	for _, src := range d.Sources {
		id := src.ID()
		for i, r := range src.Records {
			h := sha256.Sum256(r.Payload)
			idx.byHash[h] = append(idx.byHash[h], candidate{src: id, seq: int32(i), offset: r.Offset})
			if len(r.Payload) > 0 && !lens[len(r.Payload)] {
				lens[len(r.Payload)] = true
				idx.lengths = append(idx.lengths, len(r.Payload))
			}
		}
	}
	sort.Ints(idx.lengths)
	s.index.Store(idx)
}

func (s *Sink) classify(frame []byte, at int64, conn string) item {
	if idx := s.index.Load(); idx != nil {
		h := sha256.Sum256(frame)
		switch cs := idx.byHash[h]; {
		case len(cs) == 1:
			return item{src: cs[0].src, r: Receipt{Seq: cs[0].seq, Offset: cs[0].offset, At: at}}
		case len(cs) > 1:
			return item{cands: cs, r: Receipt{At: at}, size: len(frame), sum: h}
		}
		if m, ok := dataset.ParseMark(frame); ok {
			return item{src: m.Source, r: Receipt{Seq: int32(m.Seq), Offset: m.Offset, At: at}, viaMark: true}
		}
		return item{un: &unmatched{conn: conn, size: len(frame), sum: h, at: at}}
	}
	if m, ok := dataset.ParseMark(frame); ok {
		return item{src: m.Source, r: Receipt{Seq: int32(m.Seq), Offset: m.Offset, At: at}}
	}
	return item{un: &unmatched{conn: conn, size: len(frame), sum: sha256.Sum256(frame), at: at}}
}

// add records a batch of classified receipts of one connection.
func (s *Sink) add(batch []item) {
	if len(batch) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range batch {
		switch {
		case b.un != nil:
			s.unparsed.Add(1)
			s.unmatched = append(s.unmatched, *b.un)
		case b.cands != nil:
			s.pending = append(s.pending, pending{cands: b.cands, at: b.r.At, conn: b.conn, size: b.size, sum: b.sum})
		default:
			s.bySource[b.src] = append(s.bySource[b.src], b.r)
			cs := s.connSource[b.conn]
			if cs == nil {
				cs = map[string]struct{}{}
				s.connSource[b.conn] = cs
			}
			cs[b.src] = struct{}{}
		}
	}
}

func (s *Sink) next(br *bufio.Reader, buf []byte) ([]byte, error) {
	switch s.framing {
	case dataset.FramingLength:
		var h [4]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(h[:])
		if n > dataset.MaxRecordSize {
			why := fmt.Sprintf("the sink expects %s framing; a header says %d bytes, more than the maximum record size %d", dataset.FramingLength, n, dataset.MaxRecordSize)
			if printable(h[:]) {
				why += fmt.Sprintf("; it reads %q: the stream looks like text (%s or %s framing)", h[:], dataset.FramingNewline, dataset.FramingRaw)
			}
			return nil, frameError(why)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		return buf, nil
	default:
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			buf = append(buf, line...)
			for err == bufio.ErrBufferFull {
				// A line this long without a newline is no record of this framing: say what it is.
				if len(buf) > dataset.MaxRecordSize {
					why := s.guessFraming(buf)
					if why == "" {
						why = fmt.Sprintf("the sink expects %s framing; a line is longer than the maximum record size %d", s.framing, dataset.MaxRecordSize)
					}
					return nil, frameError(why)
				}
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
		} else {
			buf = append(buf, line...)
		}
		if err == io.EOF && len(buf) > 0 {
			return buf, io.ErrUnexpectedEOF // a last line without its newline
		}
		if err != nil {
			return nil, err
		}
		return buf[:len(buf)-1], nil
	}
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// Expectation says what the sink should have received.
type Expectation struct {
	Sources map[string]int // source id -> records per loop
	Start   time.Time
	Span    time.Duration
	Loops   int // loops that should have been fully played (>= 1)
	// MaxLoop bounds loop inference (0: Loops).
	MaxLoop int
	// Runs, when set, replaces Start and Loops: every run the sink should have received, in start
	// order, so that runs and loops are counted apart (start → stop → start, repeat with loops 0).
	// A receipt belongs to the last run started at or before it.
	Runs []Run
	// Offsets is each source's record offsets (ExpectOffsets), to count what a stopped or
	// unbounded run made due. Needed with Runs.
	Offsets map[string][]time.Duration
	// Until ends an unbounded run that was not stopped: records due before it are expected (the
	// time the sink stopped receiving).
	Until time.Time
}

// Run is one run: loop k of it is due at Start + k×Span + offset, for k < Loops (0: unbounded),
// and records due from Stopped on (if it was stopped) were never sent.
type Run struct {
	ID      string        `json:"run_id"`
	Start   time.Time     `json:"start_time"`
	Span    time.Duration `json:"-"`
	Loops   int           `json:"loops"`
	Stopped time.Time     `json:"stopped_at,omitzero"`
}

// RunReport is one run's outcome, over all types.
type RunReport struct {
	Run
	// LoopsSeen is the number of loops the run made due (begun before it was stopped, or Until).
	LoopsSeen  int64 `json:"loops_due"`
	Expected   int64 `json:"expected"`
	Received   int64 `json:"received"`
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	Early      int64 `json:"early"`
}

// ExpectOffsets is each source's record offsets, ascending.
func ExpectOffsets(d *dataset.Dataset) map[string][]time.Duration {
	out := map[string][]time.Duration{}
	for _, s := range d.Sources {
		offs := make([]time.Duration, len(s.Records))
		for i, r := range s.Records {
			offs[i] = r.Offset
		}
		out[s.ID()] = offs
	}
	return out
}

// ExpectDataset builds the per-source expectation of a dataset.
func ExpectDataset(d *dataset.Dataset) map[string]int {
	out := map[string]int{}
	for _, s := range d.Sources {
		out[s.ID()] = len(s.Records)
	}
	return out
}

// TypeReport is the per-type outcome.
type TypeReport struct {
	Expected   int64   `json:"expected"`
	Received   int64   `json:"received"`
	Lost       int64   `json:"lost"`
	Duplicated int64   `json:"duplicated"`
	Early      int64   `json:"early"`
	LateP50ms  float64 `json:"late_p50_ms"`
	LateP99ms  float64 `json:"late_p99_ms"`
	LateP999ms float64 `json:"late_p999_ms"`
	LateMaxms  float64 `json:"late_max_ms"`
	lates      []int64
}

// Report is the sink's JSON report.
type Report struct {
	Types map[string]*TypeReport `json:"types"`
	Total *TypeReport            `json:"total"`
	// Unparsed counts records that carry no mark and match no record of the dataset.
	Unparsed int64 `json:"unparsed"`
	// Unknown counts records attributed to sources the expectation does not have.
	Unknown int64 `json:"unknown_sources"`
	// Unattributed counts records the sink could not attribute to a record of a source: the
	// unparsed ones, and those whose content several sources share when their connection named
	// none. Lost may include them. UnattributedSamples describes the first few (connection, size,
	// content hash, why).
	Unattributed        int64    `json:"unattributed"`
	UnattributedSamples []string `json:"unattributed_samples,omitempty"`
	// FramingMismatches counts connections whose stream did not fit the sink's framing (e.g.
	// length32 expected, newline or raw received); their records from there on are not counted.
	// FramingMismatchSamples describes the first few (connection, its source if known, what the
	// stream looks like).
	FramingMismatches      int64    `json:"framing_mismatches"`
	FramingMismatchSamples []string `json:"framing_mismatch_samples,omitempty"`
	// Runs is the outcome per run, when the sink knew the runs (Expectation.Runs).
	Runs []*RunReport `json:"runs,omitempty"`
	// FailedAtWorkers is, per source ("type/instance"), how many of the lost records the workers
	// counted as failed (never sent: the source's destination could not be built), from the
	// controller's status; empty without a controller or when none failed.
	FailedAtWorkers map[string]int64 `json:"failed_at_workers,omitempty"`
	// Unavailable names each part of the report the sink could not compute, and why: "early" and
	// "lateness" without the run's start time, "failed_at_workers" and "loops" without the
	// controller's status. Those parts' fields are zero and mean "unknown", not "none".
	Unavailable map[string]string `json:"unavailable,omitempty"`
}

// OK is true when nothing was lost and nothing arrived early; false when either is unknown.
func (r *Report) OK() bool {
	_, earlyUnknown := r.Unavailable["early"]
	_, lostUnknown := r.Unavailable["lost"]
	return r.Total.Lost == 0 && r.Total.Early == 0 && !earlyUnknown && !lostUnknown
}

// SetUnavailable records that part of the report could not be computed, and why.
func (r *Report) SetUnavailable(part, why string) {
	if r.Unavailable == nil {
		r.Unavailable = map[string]string{}
	}
	r.Unavailable[part] = why
}

// Report computes the report against an expectation.
func (s *Sink) Report(e Expectation) *Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := &Report{Types: map[string]*TypeReport{}, Total: &TypeReport{}, Unparsed: s.unparsed.Load(),
		FramingMismatches: s.framingMismatches, FramingMismatchSamples: append([]string(nil), s.mismatchSamples...)}
	loops := e.Loops
	if loops < 1 {
		loops = 1
	}
	maxLoop := e.MaxLoop
	if maxLoop <= 0 {
		maxLoop = loops
	}
	if len(e.Runs) > 0 {
		s.reportRuns(e, rep)
		return rep
	}
	start := e.Start.UnixNano()
	timed := !e.Start.IsZero()
	if !timed {
		rep.SetUnavailable("early", "the run's start time is unknown")
		rep.SetUnavailable("lateness", "the run's start time is unknown")
	}
	for src, n := range e.Sources {
		t := rep.typ(src)
		t.Expected += int64(n * loops)
	}
	// loopKey places a receipt of src in its loop and returns its dedup key and due time.
	loopKey := func(src string, r Receipt) (key, k, due int64) {
		if timed && e.Span > 0 && maxLoop > 1 {
			k = int64(math.Round(float64(r.At-start-int64(r.Offset)) / float64(e.Span)))
			k = max(0, min(k, int64(maxLoop-1)))
		}
		return k*int64(e.Sources[src]+1) + int64(r.Seq), k, start + k*int64(e.Span) + int64(r.Offset)
	}
	bySource := s.resolve(loopKey, timed, rep)
	for src, rs := range bySource {
		n, known := e.Sources[src]
		if !known {
			rep.Unknown += int64(len(rs))
			continue
		}
		t := rep.typ(src)
		seen := make(map[int64]struct{}, len(rs))
		for _, r := range rs {
			key, k, due := loopKey(src, r)
			if _, dup := seen[key]; dup {
				t.Duplicated++
				continue
			}
			seen[key] = struct{}{}
			if k < int64(loops) && int(r.Seq) < n {
				t.Received++
			}
			if !timed {
				continue
			}
			if r.At < due {
				t.Early++
			}
			t.lates = append(t.lates, r.At-due)
		}
	}
	rep.totals()
	return rep
}

// totals computes lost, the percentiles and the total row from the per-type counts.
func (rep *Report) totals() {
	var all []int64
	for _, t := range rep.Types {
		t.Lost = max(0, t.Expected-t.Received)
		t.finish()
		all = append(all, t.lates...)
		rep.Total.Expected += t.Expected
		rep.Total.Received += t.Received
		rep.Total.Lost += t.Lost
		rep.Total.Duplicated += t.Duplicated
		rep.Total.Early += t.Early
	}
	rep.Total.lates = all
	rep.Total.finish()
}

// reportRuns is Report with the runs known: each receipt is placed in its run (the last started at
// or before it) and loop, and counted apart per (run, loop, record). Called with s.mu held.
func (s *Sink) reportRuns(e Expectation, rep *Report) {
	runs := append([]Run(nil), e.Runs...)
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Start.Before(runs[j].Start) })
	type window struct {
		start, span, limit int64 // limit: records due at or after it were not sent (0: none)
		kmax               int64 // last loop (-1: none due)
	}
	ws := make([]window, len(runs))
	for i, r := range runs {
		w := window{start: r.Start.UnixNano(), span: int64(r.Span)}
		switch {
		case !r.Stopped.IsZero():
			w.limit = r.Stopped.UnixNano()
		case i+1 < len(runs): // stopped unseen: the next run could only start after its stop
			w.limit = runs[i+1].Start.UnixNano()
			rep.SetUnavailable("lost", fmt.Sprintf("run %s was replaced by run %s before the sink saw it stopped: its records due "+
				"until run %s started are counted as expected, though some may never have been due before the stop", r.ID, runs[i+1].ID, runs[i+1].ID))
		case r.Loops == 0 && !e.Until.IsZero():
			w.limit = e.Until.UnixNano()
		}
		w.kmax = int64(max(r.Loops, 1) - 1)
		if w.limit != 0 {
			if w.limit <= w.start {
				w.kmax = -1
			} else if w.span > 0 {
				k := (w.limit - w.start) / w.span // the loop under way at the limit
				if r.Loops == 0 || k < w.kmax {
					w.kmax = k
				}
			} else {
				w.kmax = 0
			}
		} else if r.Loops == 0 {
			rep.SetUnavailable("lost", fmt.Sprintf("run %s repeats without end and the sink was given no end (Until)", r.ID))
		}
		ws[i] = w
	}
	rrs := make([]*RunReport, len(runs))
	for i, r := range runs {
		rrs[i] = &RunReport{Run: r, LoopsSeen: ws[i].kmax + 1}
	}
	// Expected: every record of every loop due before the run's limit.
	for src, n := range e.Sources {
		t := rep.typ(src)
		offs := e.Offsets[src]
		for i, w := range ws {
			var x int64
			for k := int64(0); k <= w.kmax; k++ {
				if w.limit == 0 || offs == nil {
					x += int64(n)
					continue
				}
				base := w.start + k*w.span
				x += int64(sort.Search(len(offs), func(j int) bool { return base+int64(offs[j]) >= w.limit }))
			}
			t.Expected += x
			rrs[i].Expected += x
		}
	}
	type key struct {
		run, loop int64
		seq       int32
	}
	loopKey := func(src string, r Receipt) (int64, int64, int64) {
		i := sort.Search(len(ws), func(j int) bool { return ws[j].start > r.At }) - 1
		i = max(i, 0)
		w := ws[i]
		k := int64(0)
		if w.span > 0 {
			k = int64(math.Round(float64(r.At-w.start-int64(r.Offset)) / float64(w.span)))
			k = max(0, min(k, max(w.kmax, 0)))
		}
		return int64(i)<<42 + k*int64(e.Sources[src]+1) + int64(r.Seq), k, w.start + k*w.span + int64(r.Offset)
	}
	bySource := s.resolve(loopKey, true, rep)
	for src, rs := range bySource {
		n, known := e.Sources[src]
		if !known {
			rep.Unknown += int64(len(rs))
			continue
		}
		t := rep.typ(src)
		seen := make(map[key]struct{}, len(rs))
		for _, r := range rs {
			_, k, due := loopKey(src, r)
			i := max(sort.Search(len(ws), func(j int) bool { return ws[j].start > r.At })-1, 0)
			kk := key{int64(i), k, r.Seq}
			rr := rrs[i]
			if _, dup := seen[kk]; dup {
				t.Duplicated++
				rr.Duplicated++
				continue
			}
			seen[kk] = struct{}{}
			if int(r.Seq) < n {
				t.Received++
				rr.Received++
				if w := ws[i]; k > w.kmax || (w.limit != 0 && due >= w.limit) {
					t.Expected++ // sent though not due before the run's end: received, not lost
					rr.Expected++
				}
			}
			if r.At < due {
				t.Early++
				rr.Early++
			}
			t.lates = append(t.lates, r.At-due)
		}
	}
	for _, rr := range rrs {
		rr.Lost = max(0, rr.Expected-rr.Received)
	}
	rep.Runs = rrs
	rep.totals()
}

// maxSamples bounds the unattributed records a report describes one by one.
const maxSamples = 10

// resolve returns the receipts per source with every pending receipt (content shared by several
// records) attributed: to the connection's own source when its other records name one, and there
// to the record, not yet received in its loop, whose due time is nearest the receipt. A receipt
// whose candidates remain in several sources, and every unmatched one, is counted in
// rep.Unattributed and described in rep.UnattributedSamples. Called with s.mu held.
func (s *Sink) resolve(loopKey func(string, Receipt) (int64, int64, int64), timed bool, rep *Report) map[string][]Receipt {
	out := make(map[string][]Receipt, len(s.bySource))
	taken := map[string]map[int64]struct{}{}
	for src, rs := range s.bySource {
		out[src] = rs[:len(rs):len(rs)] // appends below copy, never touching s.bySource
		tk := map[int64]struct{}{}
		for _, r := range rs {
			key, _, _ := loopKey(src, r)
			tk[key] = struct{}{}
		}
		taken[src] = tk
	}
	unattributed := func(conn string, size int, sum [sha256.Size]byte, why string) {
		rep.Unattributed++
		if len(rep.UnattributedSamples) < maxSamples {
			rep.UnattributedSamples = append(rep.UnattributedSamples,
				fmt.Sprintf("from %s: %d bytes, sha256 %s: %s", conn, size, hex.EncodeToString(sum[:8]), why))
		}
	}
	ps := append([]pending(nil), s.pending...)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].at < ps[j].at })
	for _, p := range ps {
		cands := p.cands
		if own := s.connSource[p.conn]; len(own) > 0 {
			var mine []candidate
			for _, c := range cands {
				if _, ok := own[c.src]; ok {
					mine = append(mine, c)
				}
			}
			if len(mine) > 0 {
				cands = mine
			}
		}
		srcs := map[string]struct{}{}
		for _, c := range cands {
			srcs[c.src] = struct{}{}
		}
		if len(srcs) > 1 {
			names := make([]string, 0, len(srcs))
			for n := range srcs {
				names = append(names, n)
			}
			sort.Strings(names)
			if len(names) > 3 {
				names = append(names[:3], fmt.Sprintf("and %d more", len(srcs)-3))
			}
			unattributed(p.conn, p.size, p.sum, "its content is that of records of several sources ("+strings.Join(names, ", ")+
				") and its connection carried no record that names one")
			continue
		}
		var best Receipt
		var bestKey int64
		bestFree, bestDist := false, int64(math.MaxInt64)
		for _, c := range cands {
			r := Receipt{Seq: c.seq, Offset: c.offset, At: p.at}
			key, _, due := loopKey(c.src, r)
			_, used := taken[c.src][key]
			dist := int64(c.offset) // without a start time: the earliest record first
			if timed {
				dist = p.at - due
				if dist < 0 {
					dist = -dist
				}
			}
			if (!used && !bestFree) || (!used == bestFree && dist < bestDist) {
				best, bestKey, bestFree, bestDist = r, key, !used, dist
			}
		}
		src := cands[0].src
		if taken[src] == nil {
			taken[src] = map[int64]struct{}{}
		}
		taken[src][bestKey] = struct{}{}
		out[src] = append(out[src], best)
	}
	why := "it carries no mark and no dataset was given to match its content against"
	if s.index.Load() != nil {
		why = "it carries no mark and matches no record of the dataset"
	}
	for _, u := range s.unmatched {
		unattributed(u.conn, u.size, u.sum, why)
	}
	return out
}

func (r *Report) typ(src string) *TypeReport {
	typ, _, _ := strings.Cut(src, "/")
	t := r.Types[typ]
	if t == nil {
		t = &TypeReport{}
		r.Types[typ] = t
	}
	return t
}

func (t *TypeReport) finish() {
	if len(t.lates) == 0 {
		return
	}
	sort.Slice(t.lates, func(i, j int) bool { return t.lates[i] < t.lates[j] })
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(t.lates)))) - 1
		i = max(0, min(i, len(t.lates)-1))
		return float64(t.lates[i]) / 1e6
	}
	t.LateP50ms, t.LateP99ms, t.LateP999ms = q(0.5), q(0.99), q(0.999)
	t.LateMaxms = float64(t.lates[len(t.lates)-1]) / 1e6
}

// WriteFile writes the report as JSON.
func (r *Report) WriteFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// CountBetween counts receipts with a receive time in [from, to).
func (s *Sink) CountBetween(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, rs := range s.bySource {
		for _, r := range rs {
			if r.At >= from.UnixNano() && r.At < to.UnixNano() {
				n++
			}
		}
	}
	return n
}

// Receipts is a copy of every attributed receipt so far, by source id ("<type>/<instance>"),
// in arrival order, for checks a Report does not make (per-source coverage, early per record).
func (s *Sink) Receipts() map[string][]Receipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]Receipt, len(s.bySource))
	for src, rs := range s.bySource {
		out[src] = append([]Receipt(nil), rs...)
	}
	return out
}

// LastReceipt is the receive time of the latest record.
func (s *Sink) LastReceipt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last int64
	for _, rs := range s.bySource {
		for _, r := range rs {
			last = max(last, r.At)
		}
	}
	return time.Unix(0, last)
}
