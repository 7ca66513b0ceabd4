// Package sink owns the stand-in for the system under test: a TCP receiver that timestamps every
// record as it is fully read, identifies it by the generator's mark (source, seq, offset), and
// reports per type what was expected, received, lost, duplicated, early, and how late.
package sink

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
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

	mu       sync.Mutex
	bySource map[string][]Receipt
	conns    map[net.Conn]struct{}
	unparsed atomic.Int64
	total    atomic.Int64
	wg       sync.WaitGroup
	closed   bool
}

// Listen starts a sink on addr (e.g. 127.0.0.1:0) reading frames of the given framing.
func Listen(addr, framing string) (*Sink, error) {
	s := &Sink{framing: framing, bySource: map[string][]Receipt{}, conns: map[net.Conn]struct{}{}}
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
	var batch []struct {
		src string
		r   Receipt
	}
	var frame []byte
	for {
		var err error
		frame, err = s.next(br, frame[:0])
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		s.total.Add(1)
		m, ok := dataset.ParseMark(frame)
		if !ok {
			s.unparsed.Add(1)
			continue
		}
		batch = append(batch, struct {
			src string
			r   Receipt
		}{m.Source, Receipt{Seq: int32(m.Seq), Offset: m.Offset, At: now}})
		if br.Buffered() == 0 || len(batch) >= 1024 {
			s.mu.Lock()
			for _, b := range batch {
				s.bySource[b.src] = append(s.bySource[b.src], b.r)
			}
			s.mu.Unlock()
			batch = batch[:0]
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
			return nil, errors.New("frame too large")
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		_, err := io.ReadFull(br, buf)
		return buf, err
	default:
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			buf = append(buf, line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			if err != nil {
				return nil, err
			}
			return buf[:len(buf)-1], nil
		}
		if err != nil {
			return nil, err
		}
		return line[:len(line)-1], nil
	}
}

// Expectation says what the sink should have received.
type Expectation struct {
	Sources map[string]int // source id -> records per loop
	Start   time.Time
	Span    time.Duration
	Loops   int // loops that should have been fully played (>= 1)
	// MaxLoop bounds loop inference (0: Loops).
	MaxLoop int
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
	Types    map[string]*TypeReport `json:"types"`
	Total    *TypeReport            `json:"total"`
	Unparsed int64                  `json:"unparsed"`
	Unknown  int64                  `json:"unknown_sources"`
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
	return r.Total.Lost == 0 && r.Total.Early == 0 && !earlyUnknown
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
	rep := &Report{Types: map[string]*TypeReport{}, Total: &TypeReport{}, Unparsed: s.unparsed.Load()}
	loops := e.Loops
	if loops < 1 {
		loops = 1
	}
	maxLoop := e.MaxLoop
	if maxLoop <= 0 {
		maxLoop = loops
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
	for src, rs := range s.bySource {
		n, known := e.Sources[src]
		if !known {
			rep.Unknown += int64(len(rs))
			continue
		}
		t := rep.typ(src)
		seen := make(map[int64]struct{}, len(rs))
		for _, r := range rs {
			k := int64(0)
			if timed && e.Span > 0 && maxLoop > 1 {
				k = int64(math.Round(float64(r.At-start-int64(r.Offset)) / float64(e.Span)))
				k = max(0, min(k, int64(maxLoop-1)))
			}
			due := start + k*int64(e.Span) + int64(r.Offset)
			key := k*int64(n+1) + int64(r.Seq)
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
	return rep
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
