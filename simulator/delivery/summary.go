package delivery

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// SummaryVersion is the version of the Summary wire format.
const SummaryVersion = 1

// Summary is what one worker reports for one interval of one run, keyed by run id on the reports
// topic: Totals is the type's delta over [From, To); Sources, present in every SourceEvery-th
// summary and in the final one, holds each source's delta since the previous summary that had
// sources (so the topic carries per-source data at a tenth of the rate). Seq increases per worker,
// so a summary read twice is counted once. Final marks the worker's last summary of the run (it
// left the group).
type Summary struct {
	V      int    `json:"v"`
	Run    string `json:"run"`
	Type   string `json:"type"`
	Worker string `json:"worker"`
	Seq    int64  `json:"seq"`
	// Part tells apart the parts of a summary split to fit the topic's message limit.
	Part       int                `json:"part,omitempty"`
	From       time.Time          `json:"from"`
	To         time.Time          `json:"to"`
	Final      bool               `json:"final,omitempty"`
	Partitions int                `json:"partitions"`
	Totals     *Counts            `json:"totals,omitempty"`
	Sources    map[string]*Counts `json:"sources,omitempty"`
}

// Counts are one source's deltas in a summary.
type Counts struct {
	// Sent: records written (TCP: the write completed; SFTP: the file was published).
	Sent int64 `json:"sent"`
	// Acked: TCP: the write completed (the SUT's kernel took the bytes); SFTP: the SUT pulled
	// (first read) the file.
	Acked int64 `json:"acked"`
	// Resent: records written again after their connection broke (possible duplicates).
	Resent int64 `json:"resent,omitempty"`
	// Failed: records that could not be sent (the source's destination cannot be built).
	Failed int64 `json:"failed,omitempty"`
	// Late: due time → write completed (TCP) or → published (SFTP).
	Late Hist `json:"-"`
	// Pull: SFTP only: published → first pulled by the SUT.
	Pull Hist `json:"-"`
}

type wireCounts struct {
	Sent   int64     `json:"sent"`
	Acked  int64     `json:"acked"`
	Resent int64     `json:"resent,omitempty"`
	Failed int64     `json:"failed,omitempty"`
	Late   *wireHist `json:"late,omitempty"`
	Pull   *wireHist `json:"pull,omitempty"`
}

// MarshalJSON encodes the histograms as sparse bucket lists.
func (c *Counts) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireCounts{c.Sent, c.Acked, c.Resent, c.Failed, c.Late.wire(), c.Pull.wire()})
}

// UnmarshalJSON decodes MarshalJSON's form.
func (c *Counts) UnmarshalJSON(b []byte) error {
	var w wireCounts
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Counts{Sent: w.Sent, Acked: w.Acked, Resent: w.Resent, Failed: w.Failed, Late: *w.Late.hist(), Pull: *w.Pull.hist()}
	return nil
}

func (c *Counts) add(o *Counts) {
	c.Sent += o.Sent
	c.Acked += o.Acked
	c.Resent += o.Resent
	c.Failed += o.Failed
	c.Late.Merge(&o.Late)
	c.Pull.Merge(&o.Pull)
}

func (c *Counts) empty() bool {
	return c.Sent == 0 && c.Acked == 0 && c.Resent == 0 && c.Failed == 0 && c.Pull.Count == 0
}

// Encode renders a summary in parts of at most max bytes each (split by source, numbered by Part).
func (s *Summary) Encode(max int) ([][]byte, error) {
	parts, err := s.split(max)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(parts))
	for i, p := range parts {
		p.Part = i
		if out[i], err = json.Marshal(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s Summary) split(max int) ([]Summary, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if len(b) <= max-16 {
		return []Summary{s}, nil
	}
	if s.Totals != nil && len(s.Sources) > 0 {
		// The type's totals first, alone; then the sources.
		head, rest := s, s
		head.Sources, rest.Totals = nil, nil
		tail, err := rest.split(max)
		if err != nil {
			return nil, err
		}
		return append([]Summary{head}, tail...), nil
	}
	if len(s.Sources) <= 1 {
		return nil, fmt.Errorf("summary of run %s is %d bytes, over %d, and cannot be split further", s.Run, len(b), max)
	}
	a, z := s, s
	a.Sources, z.Sources = map[string]*Counts{}, map[string]*Counts{}
	i := 0
	for k, v := range s.Sources {
		if i%2 == 0 {
			a.Sources[k] = v
		} else {
			z.Sources[k] = v
		}
		i++
	}
	pa, err := a.split(max)
	if err != nil {
		return nil, err
	}
	pz, err := z.split(max)
	if err != nil {
		return nil, err
	}
	return append(pa, pz...), nil
}

// Decode parses one summary.
func Decode(b []byte) (*Summary, error) {
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.V != SummaryVersion || s.Run == "" || s.Worker == "" {
		return nil, fmt.Errorf("not a delivery summary (v %d, run %q, worker %q)", s.V, s.Run, s.Worker)
	}
	return &s, nil
}

// SourceEvery is how many summaries apart a worker includes its sources (and always in the last).
const SourceEvery = 10

// Recorder collects one worker's deltas for the current run; Take returns and resets them. Its
// methods are safe for concurrent use (the scheduler and every sender call them).
type Recorder struct {
	mu      sync.Mutex
	run     string
	from    time.Time
	total   *Counts
	sources map[string]*Counts
	// gen changes whenever sources is replaced (Begin, Take with sources, End): a Source
	// handle's cached Counts is valid while its gen matches.
	gen uint64
}

// Source is one source's handle on a Recorder: Sent through it skips the per-record map lookup
// of the source's name (with 10,000 sources ~3 % of a worker's CPU). Safe for concurrent use.
type Source struct {
	r   *Recorder
	src string
	gen uint64
	c   *Counts
}

// Source returns the handle of src.
func (r *Recorder) Source(src string) *Source { return &Source{r: r, src: src} }

// counts is the source's Counts in the current interval (under r.mu, r.sources != nil).
func (h *Source) counts() *Counts {
	if h.c == nil || h.gen != h.r.gen {
		h.c, h.gen = h.r.get(h.src), h.r.gen
	}
	return h.c
}

// Sent is Recorder.Sent for this source.
func (h *Source) Sent(late time.Duration, acked bool) {
	r := h.r
	r.mu.Lock()
	if r.sources != nil {
		r.sent(h.counts(), late, acked)
	}
	r.mu.Unlock()
}

// sent counts one record written for c and the total (under r.mu).
func (r *Recorder) sent(c *Counts, late time.Duration, acked bool) {
	for _, c := range [2]*Counts{c, r.total} {
		c.Sent++
		if acked {
			c.Acked++
		}
		c.Late.Observe(late)
	}
}

// Begin starts counting for a run (anything not taken yet is dropped with the old run).
func (r *Recorder) Begin(run string, now time.Time) {
	r.mu.Lock()
	r.run, r.from, r.total, r.sources = run, now, &Counts{}, map[string]*Counts{}
	r.gen++
	r.mu.Unlock()
}

func (r *Recorder) get(src string) *Counts {
	c := r.sources[src]
	if c == nil {
		c = &Counts{}
		r.sources[src] = c
	}
	return c
}

// Sent counts one record written (lateness: due → write completed or published).
func (r *Recorder) Sent(src string, late time.Duration, acked bool) {
	r.mu.Lock()
	if r.sources != nil {
		r.sent(r.get(src), late, acked)
	}
	r.mu.Unlock()
}

// Pulled counts one SFTP file pulled for the first time, delay after it was published.
func (r *Recorder) Pulled(src string, delay time.Duration) {
	r.mu.Lock()
	if r.sources != nil {
		for _, c := range [2]*Counts{r.get(src), r.total} {
			c.Acked++
			c.Pull.Observe(delay)
		}
	}
	r.mu.Unlock()
}

// Resent counts records written again.
func (r *Recorder) Resent(src string, n int) {
	r.mu.Lock()
	if r.sources != nil {
		r.get(src).Resent += int64(n)
		r.total.Resent += int64(n)
	}
	r.mu.Unlock()
}

// Failed counts a record that could not be sent.
func (r *Recorder) Failed(src string) {
	r.mu.Lock()
	if r.sources != nil {
		r.get(src).Failed++
		r.total.Failed++
	}
	r.mu.Unlock()
}

// Take returns the type's deltas since the last Take as a summary (without Worker, Seq, Type and
// Partitions, which the publisher sets) and starts a new interval; with sources, it also hands
// over every source's deltas since the last Take with sources. ok is false outside a run.
func (r *Recorder) Take(now time.Time, sources bool) (Summary, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run == "" {
		return Summary{}, false
	}
	s := Summary{V: SummaryVersion, Run: r.run, From: r.from, To: now, Totals: r.total}
	if sources {
		s.Sources = r.sources
		for k, c := range s.Sources {
			if c.empty() {
				delete(s.Sources, k)
			}
		}
		r.sources = map[string]*Counts{}
		r.gen++
	}
	r.from, r.total = now, &Counts{}
	return s, true
}

// End stops counting for the run.
func (r *Recorder) End() {
	r.mu.Lock()
	r.run, r.total, r.sources = "", nil, nil
	r.gen++
	r.mu.Unlock()
}
