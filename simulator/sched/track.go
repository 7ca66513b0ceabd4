package sched

import (
	"time"
)

// What a broken connection may not have delivered.
//
// A record written to a TCP socket is first in the worker's send queue, then, once the SUT's
// kernel acknowledged it, in the SUT's receive buffer, and only then read by the SUT. A connection
// that fails (the SUT resets it, crashes, or closes it without reading) loses what was in either
// buffer. The tracker keeps, per connection, the records written on it as byte ranges of the
// stream (where each frame ends), asks the kernel after each write batch how far the SUT has
// acknowledged the stream (TCP_INFO tcpi_bytes_acked; SIOCOUTQ where that is missing), and the
// largest receive window the SUT advertised (tcpi_snd_wnd). A record is confirmed once the SUT
// acknowledged a full receive window beyond its end: the SUT's receive buffer holds at most what
// its window allowed the worker to send, so it must have read that record. When the connection
// fails, exactly the unconfirmed records are written again on the next one. Where the kernel
// answers neither question, every record of the connection is unconfirmed (up to blindLimit
// bytes).
type tracker struct {
	recs   []flight
	wrote  uint64 // bytes of whole frames written on the connection
	acked  uint64 // bytes the SUT's kernel acknowledged, as last reported
	maxWnd uint64 // the largest receive window the SUT advertised
	known  bool   // the kernel reported acknowledgements on this connection
	last   int64  // when the kernel was last asked (unix ns)
}

type flight struct {
	end uint64 // stream offset just past the record's frame
	it  *Item
}

// windowFactor scales the largest window the SUT advertised to the most its receive buffer may
// hold unread: a window that had only opened halfway when the SUT stopped reading is covered.
const windowFactor = 2

// blindLimit bounds what is kept for a connection whose kernel reports no acknowledgements.
const blindLimit = 64 << 20

// sampleEvery rate-limits the kernel queries of the direct write path (one per batch otherwise).
const sampleEvery = 5 * time.Millisecond

func (t *tracker) reset() {
	clear(t.recs)
	*t = tracker{recs: t.recs[:0]}
}

func (t *tracker) add(it *Item, frameLen int) {
	t.wrote += uint64(frameLen)
	t.recs = append(t.recs, flight{end: t.wrote, it: it})
}

// update takes the kernel's report and prunes what it confirms.
func (t *tracker) update(acked, wnd uint64) {
	t.known = true
	if acked > t.acked {
		t.acked = acked
	}
	if wnd > t.maxWnd {
		t.maxWnd = wnd
	}
	t.prune()
}

// confirmed is the stream offset up to which the SUT has read everything (see tracker).
func (t *tracker) confirmed() uint64 {
	if !t.known || t.maxWnd == 0 {
		if t.wrote > blindLimit {
			return t.wrote - blindLimit
		}
		return 0
	}
	if m := windowFactor * t.maxWnd; t.acked > m {
		return t.acked - m
	}
	return 0
}

func (t *tracker) prune() {
	c := t.confirmed()
	cut := 0
	for cut < len(t.recs) && t.recs[cut].end <= c {
		cut++
	}
	if cut == 0 {
		return
	}
	n := copy(t.recs, t.recs[cut:])
	clear(t.recs[n:])
	t.recs = t.recs[:n]
}

// unconfirmed returns the records the SUT may not have read, in stream order.
func (t *tracker) unconfirmed() []*Item {
	t.prune()
	out := make([]*Item, 0, len(t.recs))
	for _, f := range t.recs {
		out = append(out, f.it)
	}
	return out
}

// sample asks the kernel how far the SUT acknowledged the stream (caller holds writeMu); unless
// force, at most every sampleEvery.
func (d *Dest) sample(force bool) {
	if d.fd < 0 || len(d.trk.recs) == 0 {
		return
	}
	if !force && d.trk.known && d.trk.maxWnd > 0 && d.trk.wrote <= windowFactor*d.trk.maxWnd+d.trk.recs[0].end {
		// Even if the SUT had acknowledged every byte written, nothing kept would be confirmed
		// yet (see confirmed): asking the kernel cannot prune anything. A source sending little
		// (one record a second) would otherwise ask on every write.
		return
	}
	now := time.Now().UnixNano()
	if !force && now-d.trk.last < int64(sampleEvery) {
		if (!d.trk.known || d.trk.maxWnd == 0) && d.trk.wrote > 2*blindLimit {
			d.trk.prune()
		}
		return
	}
	d.trk.last = now
	if acked, wnd, ok := kernelAcked(d.fd, d.trk.wrote); ok {
		d.trk.update(acked, wnd)
	} else {
		d.trk.prune()
	}
}
