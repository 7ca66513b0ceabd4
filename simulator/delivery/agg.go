package delivery

import (
	"sort"
	"sync"
	"time"
)

// Step is the width of one point of a run's time series: summaries are bucketed by the second in
// which their interval ended (workers end their intervals on whole seconds).
const Step = time.Second

// Aggregator folds summaries into per-run totals, per type and source, and a time series. A
// summary seen twice (same worker, seq and part) counts once. Safe for concurrent use.
type Aggregator struct {
	mu   sync.Mutex
	runs map[string]*runAgg
}

type seenKey struct {
	worker string
	seq    int64
	part   int
}

type runAgg struct {
	seen    map[seenKey]struct{}
	types   map[string]*typeAgg
	workers map[string]*WorkerInfo
	series  map[int64]*point // unix seconds → point
	updated time.Time
}

type typeAgg struct {
	total   Counts
	sources map[string]*Counts
}

type point struct {
	types   map[string]*Counts
	workers map[string]map[string]struct{}
}

// NewAggregator returns an empty aggregator.
func NewAggregator() *Aggregator { return &Aggregator{runs: map[string]*runAgg{}} }

// Add folds one summary in; it reports false for a duplicate.
func (a *Aggregator) Add(s *Summary) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.runs[s.Run]
	if r == nil {
		r = &runAgg{seen: map[seenKey]struct{}{}, types: map[string]*typeAgg{}, workers: map[string]*WorkerInfo{}, series: map[int64]*point{}}
		a.runs[s.Run] = r
	}
	k := seenKey{s.Worker, s.Seq, s.Part}
	if _, dup := r.seen[k]; dup {
		return false
	}
	r.seen[k] = struct{}{}
	if s.To.After(r.updated) {
		r.updated = s.To
	}
	t := r.types[s.Type]
	if t == nil {
		t = &typeAgg{sources: map[string]*Counts{}}
		r.types[s.Type] = t
	}
	w := r.workers[s.Worker]
	if w == nil {
		w = &WorkerInfo{ID: s.Worker, Type: s.Type, First: s.From}
		r.workers[s.Worker] = w
	}
	if !s.To.Before(w.Last) {
		w.Last, w.Partitions, w.Left = s.To, s.Partitions, s.Final
	}
	sec := s.To.Add(-Step / 2).Truncate(Step).Unix()
	p := r.series[sec]
	if p == nil {
		p = &point{types: map[string]*Counts{}, workers: map[string]map[string]struct{}{}}
		r.series[sec] = p
	}
	if p.workers[s.Type] == nil {
		p.workers[s.Type] = map[string]struct{}{}
	}
	p.workers[s.Type][s.Worker] = struct{}{}
	pt := p.types[s.Type]
	if pt == nil {
		pt = &Counts{}
		p.types[s.Type] = pt
	}
	if s.Totals != nil {
		t.total.add(s.Totals)
		pt.add(s.Totals)
		w.Sent += s.Totals.Sent
	}
	for src, c := range s.Sources {
		sc := t.sources[src]
		if sc == nil {
			sc = &Counts{}
			t.sources[src] = sc
		}
		sc.add(c)
	}
	return true
}

// Runs lists the runs seen, oldest update first.
func (a *Aggregator) Runs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.runs))
	for id := range a.runs {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return a.runs[out[i]].updated.Before(a.runs[out[j]].updated) })
	return out
}

// Percentiles summarise a lateness histogram, in milliseconds.
type Percentiles struct {
	Count  int64   `json:"count"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	P999   float64 `json:"p999_ms"`
	Max    float64 `json:"max_ms"`
	Mean   float64 `json:"mean_ms"`
	Within string  `json:"resolution"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// PercentilesOf summarises h.
func PercentilesOf(h *Hist) Percentiles {
	return Percentiles{Count: h.Count, P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max), Mean: ms(h.Mean()), Within: Resolution}
}

// Resolution states how exact the percentiles are (each reports its bucket's upper bound).
const Resolution = "+6.25% or +1us"

// SourceView is one source's totals.
type SourceView struct {
	Sent      int64        `json:"sent"`
	Acked     int64        `json:"acked"`
	Resent    int64        `json:"resent"`
	Failed    int64        `json:"failed"`
	Lateness  Percentiles  `json:"lateness"`
	PullDelay *Percentiles `json:"pull_delay,omitempty"`
}

// TypeView is one type's (or, as Totals, the run's) totals.
type TypeView struct {
	SourceView
	// Hist is the lateness histogram as [upper bound in µs, count] pairs, ascending.
	Hist    [][2]int64             `json:"lateness_hist"`
	Sources map[string]*SourceView `json:"sources,omitempty"`
}

// WorkerInfo is one worker's part in a run (including workers that left).
type WorkerInfo struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
	Left       bool      `json:"left"`
	Partitions int       `json:"partitions"`
	Sent       int64     `json:"sent"`
}

// PointType is one type in one second of the series.
type PointType struct {
	Sent    int64   `json:"sent"`
	Acked   int64   `json:"acked"`
	Workers int     `json:"workers"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

// Point is one second of the series (T: its start).
type Point struct {
	T     time.Time            `json:"t"`
	Types map[string]PointType `json:"types"`
}

// View is a run's aggregate: the body of GET /v1/runs/{run}/delivery.
type View struct {
	Run     string               `json:"run_id"`
	Updated time.Time            `json:"updated"`
	Step    string               `json:"step"`
	Totals  *TypeView            `json:"totals"`
	Types   map[string]*TypeView `json:"types"`
	Workers []WorkerInfo         `json:"workers"`
	Series  []Point              `json:"series"`
}

func sourceView(c *Counts) SourceView {
	v := SourceView{Sent: c.Sent, Acked: c.Acked, Resent: c.Resent, Failed: c.Failed, Lateness: PercentilesOf(&c.Late)}
	if c.Pull.Count > 0 {
		p := PercentilesOf(&c.Pull)
		v.PullDelay = &p
	}
	return v
}

func histPairs(h *Hist) [][2]int64 {
	out := [][2]int64{}
	for _, p := range h.Pairs() {
		out = append(out, [2]int64{int64(BucketUpper(int(p[0])) / time.Microsecond), p[1]})
	}
	return out
}

// View returns the aggregate of a run (nil if no summary of it was seen); withSources adds
// every source's totals.
func (a *Aggregator) View(run string, withSources bool) *View {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.runs[run]
	if r == nil {
		return nil
	}
	v := &View{Run: run, Updated: r.updated, Step: Step.String(), Types: map[string]*TypeView{}, Workers: []WorkerInfo{}, Series: []Point{}}
	var all Counts
	for typ, t := range r.types {
		tv := &TypeView{SourceView: sourceView(&t.total), Hist: histPairs(&t.total.Late)}
		if withSources {
			tv.Sources = map[string]*SourceView{}
			for src, c := range t.sources {
				sv := sourceView(c)
				tv.Sources[src] = &sv
			}
		}
		v.Types[typ] = tv
		all.add(&t.total)
	}
	v.Totals = &TypeView{SourceView: sourceView(&all), Hist: histPairs(&all.Late)}
	for _, w := range r.workers {
		v.Workers = append(v.Workers, *w)
	}
	sort.Slice(v.Workers, func(i, j int) bool {
		a, b := v.Workers[i], v.Workers[j]
		return a.Type < b.Type || (a.Type == b.Type && (a.First.Before(b.First) || (a.First.Equal(b.First) && a.ID < b.ID)))
	})
	secs := make([]int64, 0, len(r.series))
	for s := range r.series {
		secs = append(secs, s)
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i] < secs[j] })
	for _, s := range secs {
		p := r.series[s]
		pt := Point{T: time.Unix(s, 0).UTC(), Types: map[string]PointType{}}
		for typ, ws := range p.workers {
			c := p.types[typ]
			pt.Types[typ] = PointType{Sent: c.Sent, Acked: c.Acked, Workers: len(ws),
				P50: ms(c.Late.Quantile(0.5)), P99: ms(c.Late.Quantile(0.99)), Max: ms(c.Late.Max)}
		}
		v.Series = append(v.Series, pt)
	}
	return v
}
