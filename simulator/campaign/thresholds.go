package campaign

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Threshold is one line of a thresholds file (docs/CAMPAIGNS.md):
//
//	[<metric>]{<type>} <op> <value> [abort-on-fail]
//
// e.g. `late_p99 < 5ms`, `lost == 0`, `sent_ratio{router} >= 0.999`, `late_max < 1s abort-on-fail`.
type Threshold struct {
	Line   int     `json:"line"`
	Expr   string  `json:"expr"`
	Metric string  `json:"metric"`
	Type   string  `json:"type,omitempty"` // "" = the whole run
	Op     string  `json:"op"`
	Value  float64 `json:"value"` // milliseconds for lateness metrics
	Abort  bool    `json:"abort_on_fail,omitempty"`
}

// metricKind says what a metric's value is.
type metricKind int

const (
	kindDuration metricKind = iota // compared in milliseconds; the value must be a Go duration
	kindCount                      // a record count; the value a whole number
	kindRatio                      // a ratio; the value a number
)

// metricInfo is a metric a threshold may name.
type metricInfo struct {
	kind metricKind
	// live: the metric only grows during a run, so abort-on-fail can judge it before the end.
	live bool
	help string
}

// Metrics are the names a threshold may use.
var Metrics = map[string]metricInfo{
	"late_p50":     {kindDuration, true, "median lateness (due → write completed / published)"},
	"late_p90":     {kindDuration, true, "90th percentile lateness"},
	"late_p99":     {kindDuration, true, "99th percentile lateness"},
	"late_p999":    {kindDuration, true, "99.9th percentile lateness"},
	"late_max":     {kindDuration, true, "largest lateness"},
	"late_mean":    {kindDuration, true, "mean lateness"},
	"pull_p99":     {kindDuration, true, "SFTP: 99th percentile of published → first pulled"},
	"pull_max":     {kindDuration, true, "SFTP: largest published → first pulled"},
	"expected":     {kindCount, false, "records due in the run"},
	"sent":         {kindCount, false, "records the workers wrote / published"},
	"acked":        {kindCount, false, "records acknowledged (TCP: write completed; SFTP: pulled)"},
	"lost":         {kindCount, false, "expected but never sent"},
	"duplicated":   {kindCount, true, "sent more often than expected"},
	"failed":       {kindCount, true, "records the workers could not send (configuration)"},
	"resent":       {kindCount, true, "records written again after a broken connection (possible duplicates)"},
	"sent_ratio":   {kindRatio, false, "sent / expected"},
	"acked_ratio":  {kindRatio, false, "acked / expected"},
	"lost_ratio":   {kindRatio, false, "lost / expected"},
	"workers_max":  {kindCount, true, "most workers reporting in one second (all types, or the type's)"},
	"workers_seen": {kindCount, true, "workers that took part in the run"},
}

var lineRE = regexp.MustCompile(`^([a-z_0-9]+)(?:\{([^{}\s]*)\})?\s*(<=|>=|==|!=|<|>)\s*(\S+)(?:\s+(abort-on-fail))?$`)

// ParseThresholds parses a thresholds file; every problem names the file and line.
func ParseThresholds(path string) ([]Threshold, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("thresholds: %w", err)
	}
	defer f.Close()
	return parseThresholds(path, f)
}

func parseThresholds(name string, r io.Reader) ([]Threshold, error) {
	var out []Threshold
	var errs []error
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		t, err := parseThreshold(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, n, err))
			continue
		}
		t.Line = n
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func parseThreshold(line string) (Threshold, error) {
	m := lineRE.FindStringSubmatch(line)
	if m == nil {
		return Threshold{}, fmt.Errorf("%q: want `<metric>[{<type>}] <op> <value> [abort-on-fail]`, e.g. `late_p99 < 5ms` (op: < <= > >= == !=)", line)
	}
	t := Threshold{Expr: line, Metric: m[1], Type: m[2], Op: m[3], Abort: m[5] != ""}
	info, ok := Metrics[t.Metric]
	if !ok {
		return t, fmt.Errorf("unknown metric %q (known: %s)", t.Metric, strings.Join(metricNames(), ", "))
	}
	if m[2] == "" && strings.Contains(line, "{") {
		return t, fmt.Errorf("%q: empty type in {}", line)
	}
	switch info.kind {
	case kindDuration:
		d, err := time.ParseDuration(m[4])
		if err != nil {
			return t, fmt.Errorf("%s: value %q: want a duration such as 5ms or 1.5s", t.Metric, m[4])
		}
		t.Value = float64(d) / float64(time.Millisecond)
	case kindCount:
		v, err := strconv.ParseInt(m[4], 10, 64)
		if err != nil || v < 0 {
			return t, fmt.Errorf("%s: value %q: want a whole number of records", t.Metric, m[4])
		}
		t.Value = float64(v)
	case kindRatio:
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil || v < 0 {
			return t, fmt.Errorf("%s: value %q: want a number such as 0.999", t.Metric, m[4])
		}
		t.Value = v
	}
	if t.Abort && !info.live {
		return t, fmt.Errorf("%s cannot abort a run (abort-on-fail): it is known only when the run has ended; abort-on-fail works with %s",
			t.Metric, strings.Join(liveNames(), ", "))
	}
	return t, nil
}

func metricNames() []string {
	var out []string
	for k := range Metrics {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func liveNames() []string {
	var out []string
	for k, v := range Metrics {
		if v.live {
			out = append(out, k)
		}
	}
	sortStrings(out)
	return out
}

// Verdict is one threshold judged against a report.
type Verdict struct {
	Threshold
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit,omitempty"`
	OK       bool    `json:"ok"`
	// Missing is set when the report has no such type.
	Missing string `json:"missing,omitempty"`
}

// String names the threshold and its measured value.
func (v Verdict) String() string {
	state := "ok"
	if !v.OK {
		state = "VIOLATED"
	}
	if v.Missing != "" {
		return fmt.Sprintf("%s (line %d): %s: %s", v.Expr, v.Line, state, v.Missing)
	}
	return fmt.Sprintf("%s (line %d): %s, measured %s", v.Expr, v.Line, state, v.measured())
}

func (v Verdict) measured() string {
	switch Metrics[v.Metric].kind {
	case kindDuration:
		return fmt.Sprintf("%.3fms", v.Measured)
	case kindRatio:
		return strconv.FormatFloat(v.Measured, 'f', -1, 64)
	}
	return strconv.FormatInt(int64(v.Measured), 10)
}

func compare(a float64, op string, b float64) bool {
	switch op {
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	case ">=":
		return a >= b
	case "==":
		return a == b
	case "!=":
		return a != b
	}
	return false
}

// Judge evaluates every threshold against a report (live: only the abort-on-fail ones).
func Judge(ts []Threshold, r *Report, live bool) []Verdict {
	var out []Verdict
	for _, t := range ts {
		if live && !t.Abort {
			continue
		}
		v := Verdict{Threshold: t}
		s := r.Totals
		if t.Type != "" {
			ty := r.Types[t.Type]
			if ty == nil {
				v.Missing = fmt.Sprintf("type %q is not in the run (types: %s)", t.Type, strings.Join(r.typeNames(), ", "))
				out = append(out, v)
				continue
			}
			s = ty.Stats
		}
		v.Measured = metricValue(t.Metric, s, r, t.Type)
		v.OK = compare(v.Measured, t.Op, t.Value)
		out = append(out, v)
	}
	return out
}

func metricValue(metric string, s Stats, r *Report, typ string) float64 {
	ratio := func(a int64) float64 {
		if s.Expected == 0 {
			if a == 0 {
				return 1
			}
			return 0
		}
		return float64(a) / float64(s.Expected)
	}
	switch metric {
	case "late_p50":
		return s.Lateness.P50
	case "late_p90":
		return s.Lateness.P90
	case "late_p99":
		return s.Lateness.P99
	case "late_p999":
		return s.Lateness.P999
	case "late_max":
		return s.Lateness.Max
	case "late_mean":
		return s.Lateness.Mean
	case "pull_p99":
		if s.PullDelay != nil {
			return s.PullDelay.P99
		}
	case "pull_max":
		if s.PullDelay != nil {
			return s.PullDelay.Max
		}
	case "expected":
		return float64(s.Expected)
	case "sent":
		return float64(s.Sent)
	case "acked":
		return float64(s.Acknowledged)
	case "lost":
		return float64(s.Lost)
	case "duplicated":
		return float64(s.Duplicated)
	case "failed":
		return float64(s.Failed)
	case "resent":
		return float64(s.PossibleDuplicates)
	case "sent_ratio":
		return ratio(s.Sent)
	case "acked_ratio":
		return ratio(s.Acknowledged)
	case "lost_ratio":
		if s.Expected == 0 {
			return 0
		}
		return float64(s.Lost) / float64(s.Expected)
	case "workers_max":
		m := 0
		for _, p := range r.WorkersOverTime {
			n := 0
			for t, c := range p.Types {
				if typ == "" || t == typ {
					n += c
				}
			}
			m = max(m, n)
		}
		return float64(m)
	case "workers_seen":
		n := 0
		for _, w := range r.Workers {
			if typ == "" || w.Type == typ {
				n++
			}
		}
		return float64(n)
	}
	return 0
}
