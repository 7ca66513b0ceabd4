package delivery

import (
	"math/rand"
	"sort"
	"testing"
	"time"
)

func TestHistQuantileWithinResolution(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var h Hist
	var xs []time.Duration
	for range 20000 {
		d := time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond))
		xs = append(xs, d)
		h.Observe(d)
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := xs[int(q*float64(len(xs))+0.999999)-1]
		got := h.Quantile(q)
		if got < exact || float64(got) > float64(exact)*1.0625+float64(time.Microsecond) {
			t.Errorf("q%.3f: got %v, exact %v: outside +6.25%%/+1us", q, got, exact)
		}
	}
	if h.Max != xs[len(xs)-1] || h.Quantile(1) != h.Max {
		t.Errorf("max %v, quantile(1) %v, want %v", h.Max, h.Quantile(1), xs[len(xs)-1])
	}
}

func TestBucketsAreContiguous(t *testing.T) {
	for i := 0; i < 400; i++ {
		lo := time.Duration(0)
		if i > 0 {
			lo = BucketUpper(i - 1)
		}
		if lo >= BucketUpper(i) {
			t.Fatalf("bucket %d: [%v, %v) is empty", i, lo, BucketUpper(i))
		}
		if b := bucketOf(lo); b != i {
			t.Fatalf("bucketOf(%v) = %d, want %d", lo, b, i)
		}
		if b := bucketOf(BucketUpper(i) - time.Microsecond); b != i {
			t.Fatalf("bucketOf(%v) = %d, want %d", BucketUpper(i)-time.Microsecond, b, i)
		}
	}
}

func TestSummaryRoundTripAndSplit(t *testing.T) {
	var r Recorder
	t0 := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	r.Begin("r-1", t0)
	for i := range 3000 {
		r.Sent("s"+string(rune('a'+i%26))+string(rune('a'+i/26%26)), time.Duration(i)*time.Microsecond, true)
	}
	r.Pulled("sa", 5*time.Millisecond)
	s, ok := r.Take(t0.Add(time.Second), true)
	if !ok {
		t.Fatal("no summary in a run")
	}
	s.Worker, s.Type, s.Seq = "w1", "t", 1
	parts, err := s.Encode(4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 2 {
		t.Fatalf("%d parts: a summary over 4096 bytes must be split", len(parts))
	}
	a := NewAggregator()
	for _, p := range parts {
		if len(p) > 4096 {
			t.Errorf("part of %d bytes over the limit", len(p))
		}
		d, err := Decode(p)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Add(d) {
			t.Errorf("part %d counted as a duplicate", d.Part)
		}
		if a.Add(d) {
			t.Errorf("part %d counted twice", d.Part)
		}
	}
	v := a.View("r-1", true)
	if v.Totals.Sent != 3000 || v.Totals.Acked != 3001 || len(v.Types["t"].Sources) != 26*26+1 {
		t.Errorf("totals sent %d acked %d sources %d", v.Totals.Sent, v.Totals.Acked, len(v.Types["t"].Sources))
	}
	if v.Types["t"].Sources["sa"].PullDelay == nil || v.Types["t"].Sources["sa"].PullDelay.Max != 5 {
		t.Errorf("pull delay of sa: %+v", v.Types["t"].Sources["sa"].PullDelay)
	}
	if got := v.Totals.Lateness.Max; got != 2.999 {
		t.Errorf("max lateness %v ms, want 2.999", got)
	}
	if len(v.Series) != 1 || v.Series[0].Types["t"].Workers != 1 || v.Series[0].Types["t"].Sent != 3000 {
		t.Errorf("series %+v", v.Series)
	}
	// After Take, the next interval starts empty.
	if s2, _ := r.Take(t0.Add(2*time.Second), true); len(s2.Sources) != 0 || s2.Totals.Sent != 0 {
		t.Errorf("second interval has %d sources, %d sent", len(s2.Sources), s2.Totals.Sent)
	}
	// Without sources, a summary has the type's totals; the sources' deltas wait for the next
	// summary with sources.
	r.Sent("x", time.Millisecond, true)
	if s3, _ := r.Take(t0.Add(3*time.Second), false); s3.Sources != nil || s3.Totals.Sent != 1 {
		t.Errorf("a summary without sources: %+v", s3)
	}
	r.Sent("x", time.Millisecond, true)
	if s4, _ := r.Take(t0.Add(4*time.Second), true); s4.Sources["x"].Sent != 2 || s4.Totals.Sent != 1 {
		t.Errorf("the next summary with sources: x sent %+v, totals %+v", s4.Sources["x"], s4.Totals)
	}
	r.End()
	if _, ok := r.Take(t0.Add(5*time.Second), true); ok {
		t.Error("a summary after End")
	}
}

func TestAggregatorKeepsWorkersThatLeft(t *testing.T) {
	a := NewAggregator()
	t0 := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	add := func(w string, seq int64, at time.Duration, final bool, sent int64) {
		c := &Counts{Sent: sent, Acked: sent}
		for range sent {
			c.Late.Observe(time.Millisecond)
		}
		a.Add(&Summary{V: 1, Run: "r", Type: "t", Worker: w, Seq: seq, From: t0.Add(at - time.Second), To: t0.Add(at), Final: final,
			Totals: c, Sources: map[string]*Counts{"s-" + w: c}})
	}
	add("w1", 1, time.Second, false, 10)
	add("w2", 1, time.Second, false, 5)
	add("w1", 2, 2*time.Second, true, 3)
	add("w2", 2, 2*time.Second, false, 7)
	add("w2", 3, 3*time.Second, false, 1)
	v := a.View("r", false)
	if v.Totals.Sent != 26 {
		t.Errorf("sent %d, want 26 (including the worker that left)", v.Totals.Sent)
	}
	if len(v.Workers) != 2 || !v.Workers[0].Left || v.Workers[0].Sent != 13 || v.Workers[1].Left {
		t.Errorf("workers %+v", v.Workers)
	}
	var ws []int
	for _, p := range v.Series {
		ws = append(ws, p.Types["t"].Workers)
	}
	if len(ws) != 3 || ws[0] != 2 || ws[1] != 2 || ws[2] != 1 {
		t.Errorf("workers over time %v, want [2 2 1]", ws)
	}
}

// BenchmarkRecorderSent is the per-record cost a worker pays for delivery truth.
func BenchmarkRecorderSent(b *testing.B) {
	var r Recorder
	r.Begin("r", time.Now())
	srcs := make([]string, 1000)
	for i := range srcs {
		srcs[i] = "ne" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Sent(srcs[i%len(srcs)], time.Duration(i%5000)*time.Microsecond, true)
	}
}
