package worker

import "container/heap"

// flow is the poll loop's flow control: it pauses a partition once it has fetched more than the
// lookahead ahead of time (or holds more than maxPending unwritten records, a SUT that is down)
// and resumes it once time has caught up to half the lookahead and its backlog is below half.
//
// Only a partition a poll fetched for can newly need a pause (its last due time and backlog grow
// only by fetching), and a paused one can only need a resume once the clock reaches its last due
// time minus half the lookahead, or its backlog drains. So a poll costs O(fetched + resumed ×
// log paused) instead of a scan of every partition: with 10,000 per-source partitions the scan
// was ~5 % of the worker's CPU (docs/BENCHMARKS.md, issue worker-perf). All under session.mu.
type flow struct {
	look    int64
	gen     uint64
	touched []*partState
	waiting partHeap     // paused, by last due time
	blocked []*partState // paused, due soon enough but with too many unwritten records
}

// fetched marks ps as fetched for in this poll.
func (f *flow) fetched(ps *partState) {
	if ps.flowGen != f.gen {
		ps.flowGen = f.gen
		f.touched = append(f.touched, ps)
	}
}

// assigned registers a partition the session was given, which starts paused.
func (f *flow) assigned(ps *partState) { heap.Push(&f.waiting, ps) }

// decide returns the partitions to pause and to resume now; live says whether a partition
// still belongs to the session (a revoked one is dropped).
func (f *flow) decide(now int64, live func(*partState) bool) (pause, resume []int32) {
	for _, ps := range f.touched {
		if !ps.paused && (ps.lastDue > now+f.look || ps.pending() > maxPending) && live(ps) {
			ps.paused = true
			pause = append(pause, ps.part)
			ps.flowKey = ps.lastDue
			heap.Push(&f.waiting, ps)
		}
	}
	f.touched = f.touched[:0]
	f.gen++
	ready := now + f.look/2
	// Blocked partitions first: their backlog drains as the scheduler writes.
	kept := f.blocked[:0]
	for _, ps := range f.blocked {
		if f.recheck(ps, ready, live, &resume) {
			kept = append(kept, ps)
		}
	}
	f.blocked = kept
	for f.waiting.Len() > 0 && f.waiting[0].flowKey < ready {
		if ps := heap.Pop(&f.waiting).(*partState); f.recheck(ps, ready, live, &resume) {
			f.blocked = append(f.blocked, ps)
		}
	}
	return pause, resume
}

// recheck settles a paused partition whose wait may be over: forgotten when it left the
// session, queued again when it fetched more while its pause took effect, resumed when its
// backlog is below half; true when only its backlog keeps it paused (blocked).
func (f *flow) recheck(ps *partState, ready int64, live func(*partState) bool, resume *[]int32) (blocked bool) {
	switch {
	case !ps.paused || !live(ps):
	case ps.lastDue >= ready:
		ps.flowKey = ps.lastDue
		heap.Push(&f.waiting, ps)
	case ps.pending() < maxPending/2:
		ps.paused = false
		*resume = append(*resume, ps.part)
	default:
		return true
	}
	return false
}

// partHeap orders paused partitions by flowKey (their last due time when queued).
type partHeap []*partState

func (h partHeap) Len() int           { return len(h) }
func (h partHeap) Less(i, j int) bool { return h[i].flowKey < h[j].flowKey }
func (h partHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *partHeap) Push(x any)        { *h = append(*h, x.(*partState)) }
func (h *partHeap) Pop() any {
	old := *h
	ps := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return ps
}
