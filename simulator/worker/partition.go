package worker

import (
	"sync"
	"sync/atomic"

	"github.com/simlab/simlab/simulator/sched"
	"github.com/simlab/simlab/simulator/state"
)

// partState tracks one assigned partition: which loop is being fetched, and the position up to
// which every dispatched record was written (the offset to commit).
type partState struct {
	topic     string
	part      int32
	rng       state.PartitionRange
	loops     int // 0: unbounded
	cancelled atomic.Bool
	// cutover, when set, is the due time from which another worker writes this partition's
	// records (a handover): this worker writes only what falls due before it.
	cutover atomic.Int64
	// skipBefore is the cutover of the handover that gave this worker the partition: records due
	// before it are the previous owner's to write.
	skipBefore int64
	// fetchedDue is the due time of the last fetched record (poll goroutine writes).
	fetchedDue atomic.Int64

	// fetch side (poll goroutine only)
	fetchLoop int
	lastDue   int64
	paused    bool
	exhausted bool
	// flowGen and flowKey are the flow control's (flow.go): the poll that last fetched for the
	// partition, and the last due time it was queued with while paused.
	flowGen uint64
	flowKey int64

	// unwritten is len(inflight)-head, readable without mu: the poll loop's flow control asks
	// every partition on every poll (10,000 lock round trips per poll with per-source partitions).
	unwritten atomic.Int64

	mu        sync.Mutex
	inflight  []*sched.Item // dispatched-or-pending items in offset order, from index head
	head      int
	pos       int64 // next offset to commit
	posLoop   int
	committed int64
	commLoop  int
	dests     map[string]*sched.Dest
	// broken holds the sources of this partition whose destination cannot be built, with why.
	broken map[string]error
	// failing maps tracked items that failed to their source, until the position passes them;
	// failed counts, per source, the failed records below pos (all loops of the run): it goes
	// into the commit metadata with pos, so a new owner continues the count.
	failing map[*sched.Item]string
	failed  map[string]int64
}

// Cancelled reports whether it must not be written: the partition stopped, or it was handed over
// to another worker, which writes every record due at or after the cutover.
func (p *partState) Cancelled(it *sched.Item) bool {
	if p.cancelled.Load() {
		return true
	}
	c := p.cutover.Load()
	return c > 0 && it.Due >= c
}

// stopped reports whether the partition stopped altogether.
func (p *partState) stopped() bool { return p.cancelled.Load() }

// undoneBefore reports whether an item due before t is still to be written.
func (p *partState) undoneBefore(t int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, it := range p.inflight[p.head:] {
		if it.Due >= t {
			return false // in offset order, which is due order within a loop and across loops
		}
		if !it.IsDone() {
			return true
		}
	}
	return false
}

// track registers an item in offset order (poll goroutine, before Push).
func (p *partState) track(it *sched.Item) {
	p.mu.Lock()
	p.inflight = append(p.inflight, it)
	p.mu.Unlock()
	p.unwritten.Add(1)
}

// fail records that a tracked item of a source cannot be sent: it counts as done for the commit
// position, and as failed for that source once the position passes it.
func (p *partState) fail(it *sched.Item, instance string) {
	p.mu.Lock()
	if p.failing == nil {
		p.failing = map[*sched.Item]string{}
	}
	p.failing[it] = instance
	p.mu.Unlock()
	p.Done(it)
}

// Done advances the commit position over every contiguous written item.
func (p *partState) Done(it *sched.Item) {
	p.mu.Lock()
	it.MarkDone()
	for p.head < len(p.inflight) && p.inflight[p.head].IsDone() {
		last := p.inflight[p.head]
		p.inflight[p.head] = nil
		if inst, ok := p.failing[last]; ok {
			delete(p.failing, last)
			if p.failed == nil {
				p.failed = map[string]int64{}
			}
			p.failed[inst]++
		}
		p.pos, p.posLoop = last.Offset+1, last.Loop
		if p.pos >= p.rng.End {
			p.pos, p.posLoop = p.rng.Start, last.Loop+1
		}
		p.head++
		p.unwritten.Add(-1)
	}
	// Compact now and then, not per record: the queue holds up to a lookahead of records.
	if p.head == len(p.inflight) {
		p.inflight, p.head = p.inflight[:0], 0
	} else if p.head >= 1024 && p.head*2 >= len(p.inflight) {
		n := copy(p.inflight, p.inflight[p.head:])
		clear(p.inflight[n:])
		p.inflight, p.head = p.inflight[:n], 0
	}
	p.mu.Unlock()
}

// pending is the number of fetched records not yet written.
func (p *partState) pending() int { return int(p.unwritten.Load()) }

// position returns the commit position, the failed records below it per source (a copy), and
// whether the position moved since the last commit.
func (p *partState) position() (int64, int, map[string]int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var failed map[string]int64
	if len(p.failed) > 0 {
		failed = make(map[string]int64, len(p.failed))
		for k, v := range p.failed {
			failed[k] = v
		}
	}
	return p.pos, p.posLoop, failed, p.pos != p.committed || p.posLoop != p.commLoop
}

func (p *partState) markCommitted(off int64, loop int) {
	p.mu.Lock()
	p.committed, p.commLoop = off, loop
	p.mu.Unlock()
}
