package campaign

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/delivery"
	"github.com/simlab/simlab/simulator/state"
)

// Schema names the report's JSON schema (docs/CAMPAIGNS.md). A change that removes or renames a
// field gets a new version; new fields may be added within a version.
const Schema = "simlab.campaign.report/v1"

// Report is a campaign's outcome: report.json, and the data of report.html.
type Report struct {
	Schema     string      `json:"schema"`
	RunID      string      `json:"run_id"`
	Stack      string      `json:"stack"`
	Controller string      `json:"controller_url"`
	Dataset    DatasetInfo `json:"dataset"`
	Start      time.Time   `json:"start"`
	StoppedAt  time.Time   `json:"stopped_at,omitzero"`
	// End is when the last worker summary of the run ended.
	End   time.Time `json:"end"`
	Loops int       `json:"loops"`
	// Verdict: "pass" (every threshold held), "fail", or "none" (no thresholds).
	Verdict    string                `json:"verdict"`
	Thresholds []Verdict             `json:"thresholds"`
	Totals     Stats                 `json:"totals"`
	Types      map[string]*TypeStats `json:"types"`
	// Workers is every worker that took part, including those that left.
	Workers         []delivery.WorkerInfo `json:"workers"`
	WorkersOverTime []WorkersPoint        `json:"workers_over_time"`
	Series          []SeriesPoint         `json:"series"`
	WorstSources    []WorstSource         `json:"worst_sources"`
	Measurement     string                `json:"measurement"`
}

// DatasetInfo identifies the dataset.
type DatasetInfo struct {
	Path        string `json:"path"`
	Fingerprint string `json:"fingerprint"`
	Types       int    `json:"types"`
	Sources     int    `json:"sources"`
	Records     int    `json:"records"`
	Span        string `json:"span"`
}

// Stats are the counts and lateness of the run, a type or a source.
type Stats struct {
	Expected     int64 `json:"expected"`
	Sent         int64 `json:"sent"`
	Acknowledged int64 `json:"acknowledged"`
	Lost         int64 `json:"lost"`
	Duplicated   int64 `json:"duplicated"`
	// PossibleDuplicates are records written again after a broken connection (at most this
	// many duplicates at the SUT on top of Duplicated).
	PossibleDuplicates int64                 `json:"possible_duplicates"`
	Failed             int64                 `json:"failed"`
	Lateness           delivery.Percentiles  `json:"lateness"`
	PullDelay          *delivery.Percentiles `json:"pull_delay,omitempty"`
}

// TypeStats is one type: its stats, lateness histogram and sources.
type TypeStats struct {
	Stats
	// LatenessHist is [upper bound in µs, count] pairs, ascending.
	LatenessHist [][2]int64       `json:"lateness_hist"`
	Sources      map[string]Stats `json:"sources"`
}

// WorkersPoint is how many workers of each type reported in one second.
type WorkersPoint struct {
	T     time.Time      `json:"t"`
	Types map[string]int `json:"types"`
}

// SeriesPoint is one second of the run.
type SeriesPoint struct {
	T     time.Time             `json:"t"`
	Types map[string]SeriesType `json:"types"`
}

// SeriesType is one type in one second: records due and sent in it, lateness of those sent.
type SeriesType struct {
	Due     int64   `json:"due"`
	Sent    int64   `json:"sent"`
	Acked   int64   `json:"acked"`
	P50     float64 `json:"late_p50_ms"`
	P99     float64 `json:"late_p99_ms"`
	Max     float64 `json:"late_max_ms"`
	Workers int     `json:"workers"`
}

// WorstSource is a source with its worst numbers.
type WorstSource struct {
	Source string  `json:"source"`
	P99    float64 `json:"late_p99_ms"`
	Max    float64 `json:"late_max_ms"`
	Lost   int64   `json:"lost"`
	Sent   int64   `json:"sent"`
}

// Measurement states what the numbers mean.
const Measurement = "Counts and lateness are measured by the workers where each record leaves: " +
	"sent = written (TCP) or published (SFTP); acknowledged = write completed (TCP) or first pulled by the SUT (SFTP); " +
	"lateness = due time to write completed / published, from histograms whose percentiles are at most 6.25% (or 1us) high; max is exact. " +
	"expected = records due before the run ended; lost = expected - sent per source; duplicated = sent - expected per source; " +
	"possible_duplicates = records re-sent after a broken connection."

// Expectation is what a run should deliver: every record's due offset per source.
type Expectation struct {
	// Offsets per type and instance, one loop, ascending.
	Offsets map[string]map[string][]time.Duration
	// Counts per type and instance (one loop), when offsets are unknown (no local dataset).
	Counts map[string]map[string]int64
	Span   time.Duration
	Info   DatasetInfo
}

// ExpectDataset builds the expectation from a local copy of the dataset.
func ExpectDataset(ds *dataset.Dataset, path string) *Expectation {
	e := &Expectation{Offsets: map[string]map[string][]time.Duration{}, Span: ds.Span,
		Info: DatasetInfo{Path: path, Fingerprint: ds.Fingerprint, Types: len(ds.Types()), Sources: len(ds.Sources), Records: ds.RecordCount(), Span: ds.Span.String()}}
	for _, s := range ds.Sources {
		if e.Offsets[s.Type] == nil {
			e.Offsets[s.Type] = map[string][]time.Duration{}
		}
		offs := make([]time.Duration, len(s.Records))
		for i, r := range s.Records {
			offs[i] = r.Offset
		}
		e.Offsets[s.Type][s.Instance] = offs
	}
	return e
}

// ExpectManifests builds the expectation from the controller's manifests (counts only).
func ExpectManifests(ms map[string]*state.Manifest, fp string) *Expectation {
	e := &Expectation{Counts: map[string]map[string]int64{}, Info: DatasetInfo{Fingerprint: fp}}
	for typ, m := range ms {
		e.Counts[typ] = map[string]int64{}
		e.Span = m.Span
		for _, s := range m.Sources {
			e.Counts[typ][s.Instance] = int64(s.Records)
			e.Info.Records += s.Records
		}
		e.Info.Sources += len(m.Sources)
		e.Info.Types++
	}
	e.Info.Span = e.Span.String()
	return e
}

// runWindow is a run's timing: its start, loops (0: until stopped) and when it ended (zero: not).
type runWindow struct {
	start time.Time
	loops int
	until time.Time
}

// due calls f with the due time of every record of the run due before w.until (all loops).
func (e *Expectation) due(w runWindow, f func(typ, inst string, at time.Time)) {
	for typ, srcs := range e.Offsets {
		for inst, offs := range srcs {
			for loop := 0; w.loops == 0 || loop < w.loops; loop++ {
				base := w.start.Add(time.Duration(loop) * e.Span)
				if !w.until.IsZero() && !base.Before(w.until) {
					break
				}
				for _, off := range offs {
					at := base.Add(off)
					if !w.until.IsZero() && !at.Before(w.until) {
						break
					}
					f(typ, inst, at)
				}
				if w.loops == 0 && w.until.IsZero() {
					break // unbounded and still running: nothing beyond the first loop is known
				}
			}
		}
	}
}

// expectedPerSource counts the records due in the run window per type and instance.
func (e *Expectation) expectedPerSource(w runWindow) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	if e.Offsets == nil {
		loops := int64(max(w.loops, 1))
		for typ, srcs := range e.Counts {
			out[typ] = map[string]int64{}
			for inst, n := range srcs {
				out[typ][inst] = n * loops
			}
		}
		return out
	}
	for typ, srcs := range e.Offsets {
		out[typ] = map[string]int64{}
		for inst := range srcs {
			out[typ][inst] = 0
		}
	}
	e.due(w, func(typ, inst string, _ time.Time) { out[typ][inst]++ })
	return out
}

// dueSeries counts the records due per type and second (unix seconds).
func (e *Expectation) dueSeries(w runWindow) map[int64]map[string]int64 {
	out := map[int64]map[string]int64{}
	e.due(w, func(typ, _ string, at time.Time) {
		s := at.Truncate(time.Second).Unix()
		if out[s] == nil {
			out[s] = map[string]int64{}
		}
		out[s][typ]++
	})
	return out
}

func statsOf(exp int64, sv *delivery.SourceView) Stats {
	s := Stats{Expected: exp}
	if sv != nil {
		s.Sent, s.Acknowledged, s.PossibleDuplicates, s.Failed = sv.Sent, sv.Acked, sv.Resent, sv.Failed
		s.Lateness, s.PullDelay = sv.Lateness, sv.PullDelay
	}
	s.Lost = max(0, s.Expected-s.Sent)
	s.Duplicated = max(0, s.Sent-s.Expected)
	return s
}

// BuildReport combines the expectation with the workers' aggregate of the run.
func BuildReport(e *Expectation, v *delivery.View, w runWindow, stack, controllerURL string) *Report {
	r := &Report{Schema: Schema, RunID: v.Run, Stack: stack, Controller: controllerURL, Dataset: e.Info, Start: w.start.UTC(),
		StoppedAt: w.until.UTC(), End: v.Updated, Loops: w.loops, Verdict: "none", Thresholds: []Verdict{}, Types: map[string]*TypeStats{},
		Workers: append([]delivery.WorkerInfo{}, v.Workers...), WorkersOverTime: []WorkersPoint{}, Series: []SeriesPoint{}, WorstSources: []WorstSource{}, Measurement: Measurement}
	if w.until.IsZero() {
		r.StoppedAt = time.Time{}
	}
	exp := e.expectedPerSource(w)
	types := map[string]bool{}
	for t := range exp {
		types[t] = true
	}
	for t := range v.Types {
		types[t] = true
	}
	for typ := range types {
		tv := v.Types[typ]
		ts := &TypeStats{Sources: map[string]Stats{}, LatenessHist: [][2]int64{}}
		insts := map[string]bool{}
		for i := range exp[typ] {
			insts[i] = true
		}
		if tv != nil {
			for i := range tv.Sources {
				insts[i] = true
			}
			ts.LatenessHist = tv.Hist
		}
		var total int64
		for inst := range insts {
			var sv *delivery.SourceView
			if tv != nil {
				sv = tv.Sources[inst]
			}
			s := statsOf(exp[typ][inst], sv)
			ts.Sources[inst] = s
			total += s.Expected
			ts.Lost += s.Lost
			ts.Duplicated += s.Duplicated
			r.WorstSources = append(r.WorstSources, WorstSource{Source: typ + "/" + inst, P99: s.Lateness.P99, Max: s.Lateness.Max, Lost: s.Lost, Sent: s.Sent})
		}
		lost, dup := ts.Lost, ts.Duplicated
		var sv *delivery.SourceView
		if tv != nil {
			sv = &tv.SourceView
		}
		ts.Stats = statsOf(total, sv)
		ts.Lost, ts.Duplicated = lost, dup // per source, not netted over the type
		r.Types[typ] = ts
		r.Totals.Expected += ts.Expected
		r.Totals.Sent += ts.Sent
		r.Totals.Acknowledged += ts.Acknowledged
		r.Totals.Lost += ts.Lost
		r.Totals.Duplicated += ts.Duplicated
		r.Totals.PossibleDuplicates += ts.PossibleDuplicates
		r.Totals.Failed += ts.Failed
	}
	if v.Totals != nil {
		r.Totals.Lateness, r.Totals.PullDelay = v.Totals.Lateness, v.Totals.PullDelay
	}
	sort.Slice(r.WorstSources, func(i, j int) bool {
		a, b := r.WorstSources[i], r.WorstSources[j]
		if a.Lost != b.Lost {
			return a.Lost > b.Lost
		}
		if a.P99 != b.P99 {
			return a.P99 > b.P99
		}
		return a.Source < b.Source
	})
	if len(r.WorstSources) > 10 {
		r.WorstSources = r.WorstSources[:10]
	}
	// The series: every second something was due or sent.
	due := map[int64]map[string]int64{}
	if e.Offsets != nil {
		due = e.dueSeries(w)
	}
	sent := map[int64]delivery.Point{}
	for _, p := range v.Series {
		sent[p.T.Unix()] = p
	}
	secs := map[int64]bool{}
	for s := range due {
		secs[s] = true
	}
	for s := range sent {
		secs[s] = true
	}
	keys := make([]int64, 0, len(secs))
	for s := range secs {
		keys = append(keys, s)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, s := range keys {
		sp := SeriesPoint{T: time.Unix(s, 0).UTC(), Types: map[string]SeriesType{}}
		wp := WorkersPoint{T: sp.T, Types: map[string]int{}}
		for typ := range types {
			st := SeriesType{Due: due[s][typ]}
			if p, ok := sent[s]; ok {
				pt := p.Types[typ]
				st.Sent, st.Acked, st.P50, st.P99, st.Max, st.Workers = pt.Sent, pt.Acked, pt.P50, pt.P99, pt.Max, pt.Workers
			}
			sp.Types[typ] = st
			wp.Types[typ] = st.Workers
		}
		r.Series = append(r.Series, sp)
		if _, ok := sent[s]; ok {
			r.WorkersOverTime = append(r.WorkersOverTime, wp)
		}
	}
	return r
}

// typeNames lists the report's types, sorted.
func (r *Report) typeNames() []string {
	var out []string
	for t := range r.Types {
		out = append(out, t)
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) { sort.Strings(s) }

// Judged sets the thresholds' verdicts.
func (r *Report) Judged(vs []Verdict) {
	r.Thresholds = vs
	r.Verdict = "none"
	if len(vs) > 0 {
		r.Verdict = "pass"
	}
	for _, v := range vs {
		if !v.OK {
			r.Verdict = "fail"
		}
	}
}

// Write writes report.json and report.html into dir (created).
func (r *Report) Write(dir string) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	jsonPath, htmlPath = filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", "", err
	}
	h, err := r.HTML()
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(htmlPath, h, 0o644); err != nil {
		return "", "", err
	}
	return jsonPath, htmlPath, nil
}

// ReadReport reads a report.json.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema != Schema {
		return nil, fmt.Errorf("%s: schema %q, want %q", path, r.Schema, Schema)
	}
	return &r, nil
}
