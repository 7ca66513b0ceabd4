// Package delivery owns the simulator's own measure of what left the workers, independent of any
// sink: the lateness histogram (fixed log-linear buckets every worker and the controller share),
// the per-interval Summary a worker publishes to the reports topic (contract.ReportsTopicSuffix),
// the Recorder a worker counts into, and the Aggregator the controller folds every summary of a
// run into (per type and per source, over time, over every worker that ever reported).
package delivery

import (
	"math/bits"
	"sort"
	"time"
)

// subBuckets is the number of buckets per power of two of microseconds: a bucket's width is at
// most 1/subBuckets of its lower bound, so a percentile read from the histogram is within 6.25 %
// (or 1 µs) of the exact value.
const subBuckets = 16

// bucketOf maps a duration to its bucket: exact microseconds below subBuckets µs, then
// subBuckets buckets per power of two. Negative durations (clock steps) go to bucket 0.
func bucketOf(d time.Duration) int {
	us := int64(d / time.Microsecond)
	if us < subBuckets {
		if us < 0 {
			return 0
		}
		return int(us)
	}
	e := bits.Len64(uint64(us)) - 5 // us>>e is in [16, 32)
	return subBuckets + e*subBuckets + int(us>>e) - subBuckets
}

// BucketUpper is the exclusive upper bound of bucket i: what a percentile in it reports.
func BucketUpper(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i+1) * time.Microsecond
	}
	e := (i - subBuckets) / subBuckets
	m := int64((i-subBuckets)%subBuckets + subBuckets)
	return time.Duration((m+1)<<e) * time.Microsecond
}

// Hist is a sparse lateness histogram: bucket index → count. Its JSON form is a list of
// [bucket, count] pairs (see docs/API.md).
type Hist struct {
	// buckets are the non-empty buckets, sorted by index: a source's lateness falls in a few
	// dozen buckets at most, so finding one by binary search beats a map (a map assignment per
	// record was ~10 % of a worker's CPU at 10k records/s; docs/BENCHMARKS.md, run I).
	buckets []bucketCount
	Count   int64
	Sum     time.Duration
	Max     time.Duration
}

// bucketCount is one non-empty bucket.
type bucketCount struct {
	b int
	n int64
}

// add adds n to bucket b.
func (h *Hist) add(b int, n int64) {
	i := sort.Search(len(h.buckets), func(i int) bool { return h.buckets[i].b >= b })
	if i < len(h.buckets) && h.buckets[i].b == b {
		h.buckets[i].n += n
		return
	}
	h.buckets = append(h.buckets, bucketCount{})
	copy(h.buckets[i+1:], h.buckets[i:])
	h.buckets[i] = bucketCount{b, n}
}

// Observe adds one lateness.
func (h *Hist) Observe(d time.Duration) {
	h.add(bucketOf(d), 1)
	h.Count++
	h.Sum += d
	if d > h.Max {
		h.Max = d
	}
}

// Merge adds o into h.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o.Count == 0 {
		return
	}
	for _, c := range o.buckets {
		h.add(c.b, c.n)
	}
	h.Count += o.Count
	h.Sum += o.Sum
	if o.Max > h.Max {
		h.Max = o.Max
	}
}

// Quantile returns the upper bound of the bucket holding quantile q (0..1); 0 when empty. The
// maximum is exact, so Quantile never reports more than Max.
func (h *Hist) Quantile(q float64) time.Duration {
	if h == nil || h.Count == 0 {
		return 0
	}
	rank := int64(q*float64(h.Count) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for _, c := range h.buckets {
		seen += c.n
		if seen >= rank {
			return min(BucketUpper(c.b), h.Max)
		}
	}
	return h.Max
}

// Mean is the average lateness.
func (h *Hist) Mean() time.Duration {
	if h == nil || h.Count == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.Count)
}

// Pairs is the histogram as sorted [bucket, count] pairs.
func (h *Hist) Pairs() [][2]int64 {
	out := make([][2]int64, 0, len(h.buckets))
	for _, c := range h.buckets {
		out = append(out, [2]int64{int64(c.b), c.n})
	}
	return out
}

// wireHist is Hist on the wire.
type wireHist struct {
	Buckets [][2]int64 `json:"b,omitempty"`
	Count   int64      `json:"n"`
	SumNs   int64      `json:"sum_ns"`
	MaxNs   int64      `json:"max_ns"`
}

func (h *Hist) wire() *wireHist {
	if h == nil || h.Count == 0 {
		return nil
	}
	return &wireHist{Buckets: h.Pairs(), Count: h.Count, SumNs: int64(h.Sum), MaxNs: int64(h.Max)}
}

func (w *wireHist) hist() *Hist {
	h := &Hist{}
	if w == nil {
		return h
	}
	for _, p := range w.Buckets {
		h.add(int(p[0]), p[1])
	}
	h.Count, h.Sum, h.Max = w.Count, time.Duration(w.SumNs), time.Duration(w.MaxNs)
	return h
}
