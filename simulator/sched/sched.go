// Package sched owns the worker's timing: ONE scheduler goroutine per worker holding every pending
// record in a min-heap of absolute deadlines, handing due records to per-destination senders that
// write them in batches. Nothing here sleeps "after the previous record": every wait is until an
// absolute due time, so a late record never delays the ones after it.
package sched

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/simlab/simlab/simulator/uring"
	"golang.org/x/sys/unix"
)

// Owner is told when an item it owns was written, and whether it is cancelled.
type Owner interface {
	// Cancelled reports whether it must no longer be written (its partition stopped, or moved
	// to another worker from its due time on).
	Cancelled(it *Item) bool
	Done(it *Item)
}

// Item is one record waiting for its due time.
type Item struct {
	Due     int64 // unix nanoseconds
	Payload []byte
	Dest    *Dest
	Owner   Owner
	Offset  int64
	Loop    int
	Sent    int64 // unix nanoseconds when the write completed
	done    bool  // set by the owner's tracker
}

// MarkDone records completion (for Owner implementations).
func (it *Item) MarkDone() { it.done = true }

// IsDone reports MarkDone.
func (it *Item) IsDone() bool { return it.done }

// entry is one heap slot: the ordering key is kept next to the item pointer, so sifting compares
// keys in the heap's own array instead of loading every Item (a cache miss each, 12 % of the
// worker's CPU at 60k/s with 300,000 pending items when the heap held bare pointers).
type entry struct {
	due int64
	seq uint64
	it  *Item
}

// Scheduler is the single timing loop of a worker.
type Scheduler struct {
	mu    sync.Mutex
	h     []entry // a 4-ary min-heap on (due, seq): half the depth of a binary one
	seq   uint64
	wake  chan struct{}
	touch []*Dest
	// NoWait sends every record as soon as it is pushed (the unscheduled ceiling benchmark).
	NoWait bool
	// Quantum is the shortest time between two dispatches: records falling due within it of the
	// last dispatch wait for the next one and go out together (later by at most Quantum). 0: each
	// dispatch as soon as the next record is due.
	Quantum time.Duration

	// The direct sends of one dispatch (Run's goroutine only).
	ring    *uring.Ring // nil: one write(2) per destination
	noRing  error       // why there is no ring
	ready   []*Dest
	results []int32
}

// ringEntries is the most sends one io_uring_enter carries.
const ringEntries = 256

// New returns a scheduler; call Run. It sets up an io_uring for its sends where the kernel (and
// any seccomp profile) allows, and writes with write(2) otherwise.
func New() *Scheduler {
	s := &Scheduler{wake: make(chan struct{}, 1)}
	s.ring, s.noRing = uring.New(ringEntries)
	if s.ring != nil {
		s.results = make([]int32, s.ring.Entries())
	}
	return s
}

// NoUring makes the scheduler send with write(2) even where io_uring works (call before Run).
func (s *Scheduler) NoUring() {
	if s.ring != nil {
		s.ring.Close()
		s.ring, s.noRing = nil, errors.New("disabled")
	}
}

// SendPath says how due records are written: "io_uring" or "write(2)" with the reason.
func (s *Scheduler) SendPath() string {
	if s.ring != nil {
		return "io_uring"
	}
	return fmt.Sprintf("write(2) (no io_uring: %v)", s.noRing)
}

// Len is the number of pending items.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}

// pushChunk bounds how many items Push inserts per lock hold, so a large fetch
// batch never keeps the timing loop from dispatching for long.
const pushChunk = 64

// Push adds items (any order).
func (s *Scheduler) Push(items ...*Item) {
	for len(items) > 0 {
		n := min(len(items), pushChunk)
		s.push(items[:n])
		items = items[n:]
	}
}

func (s *Scheduler) push(items []*Item) {
	s.mu.Lock()
	first := int64(-1)
	if len(s.h) > 0 {
		first = s.h[0].due
	}
	for _, it := range items {
		s.seq++
		s.h = append(s.h, entry{due: it.Due, seq: s.seq, it: it})
		s.up(len(s.h) - 1)
	}
	earlier := first < 0 || s.h[0].due < first
	s.mu.Unlock()
	if earlier {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// coarse is how late the runtime's timers may fire in an idle process: Go
// waits for timers in epoll_wait, whose timeout is in whole milliseconds.
// Run wakes from a timer this long before a deadline, then sleeps the rest
// with preciseSleep (during which a newly pushed earlier item or stop waits
// at most this long).
const coarse = time.Millisecond

// Run dispatches due items until stop is closed.
func (s *Scheduler) Run(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer func() {
		if s.ring != nil {
			s.ring.Close()
			s.ring, s.noRing = nil, errors.New("scheduler stopped")
		}
	}()
	var last int64 // when the last dispatch that sent something began
	for {
		now := time.Now().UnixNano()
		if q := int64(s.Quantum); q > 0 && now < last+q && len(s.h) > 0 && s.h[0].due <= now {
			// Records are due, but the quantum since the last dispatch has not passed: gather.
			if w := time.Duration(last + q - now); w > coarse {
				time.Sleep(w - coarse)
			} else {
				preciseSleep(w)
			}
			continue
		}
		s.mu.Lock()
		for len(s.h) > 0 && (s.NoWait || s.h[0].due <= now) {
			it := s.pop()
			if it.Owner != nil && it.Owner.Cancelled(it) {
				continue
			}
			if it.Dest.enqueue(it) {
				s.touch = append(s.touch, it.Dest)
			}
		}
		next := int64(-1)
		if len(s.h) > 0 {
			next = s.h[0].due
		}
		s.mu.Unlock()
		if len(s.touch) > 0 {
			last = now
			s.send(s.touch)
			clear(s.touch)
			s.touch = s.touch[:0]
		}
		wait := time.Hour
		if next >= 0 {
			wait = time.Duration(next - time.Now().UnixNano())
			if wait <= 0 {
				continue
			}
			if wait <= coarse {
				// The last stretch is slept precisely (see coarse).
				preciseSleep(wait)
				continue
			}
			wait -= coarse
		}
		timer.Reset(wait)
		select {
		case <-stop:
			return
		case <-s.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// send writes the due items of the touched dests: every dest that can take them directly in one
// io_uring submission (or one write(2) each), the others through their sender goroutines.
func (s *Scheduler) send(ds []*Dest) {
	ready := s.ready[:0]
	for _, d := range ds {
		if d.prepare() {
			ready = append(ready, d)
		}
	}
	if s.ring == nil || len(ready) < 2 {
		// One send gains nothing from the ring.
		for _, d := range ready {
			d.writeOut()
		}
	} else {
		for i := 0; i < len(ready); {
			j := min(len(ready), i+len(s.results))
			for k := i; k < j; k++ {
				s.results[k-i] = math.MinInt32
				s.ring.Send(ready[k].fd, ready[k].out, uint64(k-i))
			}
			err := s.ring.Submit(func(tag uint64, res int32) { s.results[tag] = res })
			now := time.Now().UnixNano()
			for k := i; k < j; k++ {
				switch r := s.results[k-i]; {
				case r == math.MinInt32:
					// The ring failed before this send's result came back: whether it went out is
					// unknown, so it counts as written and failed (re-sent, a possible duplicate).
					ready[k].complete(len(ready[k].out), fmt.Errorf("io_uring: %w", err), now)
				case r < 0:
					ready[k].complete(0, unix.Errno(-r), now)
				default:
					ready[k].complete(int(r), nil, now)
				}
			}
			if err != nil {
				s.ring.Close()
				s.ring, s.noRing = nil, err
				for _, d := range ready[j:] {
					d.writeOut()
				}
				break
			}
			i = j
		}
	}
	clear(ready)
	s.ready = ready[:0]
}

func (s *Scheduler) less(i, j int) bool {
	a, b := &s.h[i], &s.h[j]
	return a.due < b.due || (a.due == b.due && a.seq < b.seq)
}

func (s *Scheduler) up(j int) {
	for j > 0 {
		i := (j - 1) / 4
		if !s.less(j, i) {
			break
		}
		s.h[i], s.h[j] = s.h[j], s.h[i]
		j = i
	}
}

func (s *Scheduler) pop() *Item {
	n := len(s.h) - 1
	top := s.h[0].it
	s.h[0] = s.h[n]
	s.h[n] = entry{}
	s.h = s.h[:n]
	i := 0
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		j := c
		for k := c + 1; k < c+4 && k < n; k++ {
			if s.less(k, j) {
				j = k
			}
		}
		if !s.less(j, i) {
			break
		}
		s.h[i], s.h[j] = s.h[j], s.h[i]
		i = j
	}
	return top
}
