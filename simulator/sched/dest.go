package sched

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Framings (as in the dataset's source.json).
const (
	FramingNewline = "newline"
	FramingLength  = "length32"
	FramingRaw     = "raw"
)

// Hooks observe a destination's activity (metrics).
type Hooks struct {
	Sent      func(it *Item) // after a successful write, per item
	Reconnect func()
	WriteErr  func(err error)
}

// Dest is one TCP connection to the SUT, owned by one simulated source. Its goroutine writes every
// queued item in one batch, reconnecting with exponential backoff when the SUT drops; a failed
// batch is re-sent whole (at-least-once: the sink counts duplicates).
type Dest struct {
	Addr    string
	Framing string
	Name    string
	log     *slog.Logger
	hooks   *Hooks

	mu      sync.Mutex
	q       []*Item
	queued  bool
	busy    bool // the sender goroutine holds unwritten items (under mu)
	kickCh  chan struct{}
	closeCh chan struct{}
	closed  bool
	doneCh  chan struct{}

	// deliver, if set, replaces the TCP connection (e.g. publishing files for SFTP pulls).
	deliver func([]*Item) error
	onClose func()

	writeMu sync.Mutex // held while writing; see Barrier
	conn    net.Conn
	rc      syscall.RawConn
	// rest is the unwritten tail of a frame a direct write left half-written; it goes first.
	rest        []byte
	restItem    *Item
	restPending atomic.Bool
	direct      []*Item
	iov         [][]byte
	// recent holds what was written in the last ResendWindow: when a connection fails, those
	// records may have died in the SUT's socket buffers, so they are written again after the
	// reconnect (the sink counts them as duplicates; none is lost).
	recent []*Item
	resend bool
	bufs   net.Buffers
	hdrs   []byte
}

// ResendWindow is how far back records are re-sent after a broken connection.
var ResendWindow = time.Second

// NewDest starts the sender goroutine of one destination.
func NewDest(name, addr, framing string, log *slog.Logger, hooks *Hooks) *Dest {
	d := &Dest{Name: name, Addr: addr, Framing: framing, log: log, hooks: hooks,
		kickCh: make(chan struct{}, 1), closeCh: make(chan struct{}), doneCh: make(chan struct{})}
	go d.loop()
	return d
}

// NewFuncDest starts a destination that hands each batch to deliver instead of a TCP connection;
// onClose (optional) runs when the dest is closed.
func NewFuncDest(name string, deliver func([]*Item) error, onClose func(), log *slog.Logger, hooks *Hooks) *Dest {
	d := &Dest{Name: name, deliver: deliver, onClose: onClose, log: log, hooks: hooks,
		kickCh: make(chan struct{}, 1), closeCh: make(chan struct{}), doneCh: make(chan struct{})}
	go d.loop()
	return d
}

// enqueue adds an item; it reports whether the dest needs a kick.
func (d *Dest) enqueue(it *Item) bool {
	d.mu.Lock()
	d.q = append(d.q, it)
	first := !d.queued
	d.queued = true
	d.mu.Unlock()
	return first
}

func (d *Dest) kick() {
	select {
	case d.kickCh <- struct{}{}:
	default:
	}
}

// Barrier waits for a write in progress to finish. After an owner is cancelled and Barrier
// returns, none of that owner's items will be written by this dest.
func (d *Dest) Barrier() {
	d.writeMu.Lock()
	d.writeMu.Unlock() //nolint:staticcheck // an intentional barrier
}

// Close stops the sender and closes the connection; queued items are dropped.
func (d *Dest) Close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		close(d.closeCh)
	}
	d.mu.Unlock()
	<-d.doneCh
}

func (d *Dest) loop() {
	defer close(d.doneCh)
	defer func() {
		if d.conn != nil {
			d.conn.Close()
		}
		if d.onClose != nil {
			d.onClose()
		}
	}()
	backoff := 50 * time.Millisecond
	var batch []*Item
	if d.deliver == nil {
		// Connect now, ahead of the first due record (records are fetched up to the lookahead
		// early), so the first send does not pay for the dial. Failures are retried on send.
		d.writeMu.Lock()
		if c, err := net.DialTimeout("tcp", d.Addr, 2*time.Second); err == nil {
			d.setConn(c)
		}
		d.writeMu.Unlock()
	}
	for {
		select {
		case <-d.closeCh:
			return
		case <-d.kickCh:
		}
		for {
			d.mu.Lock()
			batch = append(batch, d.q...)
			clear(d.q)
			d.q = d.q[:0]
			d.queued = false
			d.busy = len(batch) > 0
			d.mu.Unlock()
			if len(batch) == 0 && !d.hasRest() {
				break
			}
			err := d.write(&batch)
			if err == nil {
				backoff = 50 * time.Millisecond
				d.mu.Lock()
				d.busy = len(batch) > 0
				d.mu.Unlock()
				continue
			}
			if d.hooks != nil && d.hooks.WriteErr != nil {
				d.hooks.WriteErr(err)
			}
			d.log.Warn("sending to SUT failed; retrying", "source", d.Name, "addr", d.Addr, "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-d.closeCh:
				t.Stop()
				return
			case <-t.C:
			}
			if backoff *= 2; backoff > 2*time.Second {
				backoff = 2 * time.Second
			}
		}
	}
}

// write sends the batch; on success it empties *batch, on failure it keeps the unsent items.
func (d *Dest) write(batch *[]*Item) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	b := dropCancelled(*batch)
	*batch = b
	if d.deliver != nil {
		if len(b) == 0 {
			return nil
		}
		if err := d.deliver(b); err != nil {
			return err
		}
		d.acked(b, time.Now().UnixNano())
		clear(b)
		*batch = b[:0]
		return nil
	}
	if d.rest != nil {
		// A direct write left a frame half-written: finish it before anything else.
		rest, it := d.rest, d.restItem
		d.rest, d.restItem = nil, nil
		d.restPending.Store(false)
		if d.conn != nil {
			d.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := d.conn.Write(rest); err != nil {
				d.dropConn()
				*batch = append([]*Item{it}, b...) // send the whole frame again after reconnecting
				return err
			}
			d.finish([]*Item{it}, time.Now().UnixNano())
		} else {
			b = append([]*Item{it}, b...)
			*batch = b
		}
	}
	if len(b) == 0 {
		return nil
	}
	if d.conn == nil {
		c, err := net.DialTimeout("tcp", d.Addr, 2*time.Second)
		if err != nil {
			return err
		}
		d.setConn(c)
		if d.resend {
			d.resend = false
			var again []*Item
			for _, it := range d.recent {
				if it.Owner == nil || !it.Owner.Cancelled() {
					again = append(again, &Item{Due: it.Due, Payload: it.Payload, Offset: it.Offset, Loop: it.Loop, Sent: -1})
				}
			}
			d.recent = d.recent[:0]
			b = append(again, b...)
			*batch = b
		}
	}
	d.frames(b)
	bufs := d.bufs
	for {
		// The deadline bounds a stall, not the batch: a slow SUT that keeps reading is fine.
		d.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		n, err := bufs.WriteTo(d.conn)
		if err == nil {
			break
		}
		var ne net.Error
		if n > 0 && errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		d.dropConn()
		return err
	}
	d.finish(b, time.Now().UnixNano())
	clear(b)
	*batch = b[:0]
	return nil
}

// dropCancelled removes items whose owner was cancelled (stop, revoke), in place.
func dropCancelled(in []*Item) []*Item {
	b := in[:0]
	for _, it := range in {
		if it.Owner == nil || !it.Owner.Cancelled() {
			b = append(b, it)
		}
	}
	clear(in[len(b):])
	return b
}

func (d *Dest) setConn(c net.Conn) {
	d.conn, d.rc = c, nil
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		if rc, err := tc.SyscallConn(); err == nil {
			d.rc = rc
		}
	}
	if d.hooks != nil && d.hooks.Reconnect != nil {
		d.hooks.Reconnect()
	}
}

func (d *Dest) dropConn() {
	if d.conn != nil {
		d.conn.Close()
	}
	d.conn, d.rc = nil, nil
	d.resend = true
}

func (d *Dest) hasRest() bool { return d.restPending.Load() }

// frames fills d.bufs with the framed records of b.
func (d *Dest) frames(b []*Item) {
	d.bufs = d.bufs[:0]
	d.hdrs = d.hdrs[:0]
	if d.Framing == FramingLength {
		for _, it := range b {
			d.hdrs = binary.BigEndian.AppendUint32(d.hdrs, uint32(len(it.Payload)))
		}
	}
	for i, it := range b {
		switch d.Framing {
		case FramingLength:
			d.bufs = append(d.bufs, d.hdrs[4*i:4*i+4], it.Payload)
		case FramingRaw:
			d.bufs = append(d.bufs, it.Payload)
		default:
			d.bufs = append(d.bufs, it.Payload, newline)
		}
	}
}

var newline = []byte{'\n'}

func (d *Dest) frameLen(it *Item) int {
	switch d.Framing {
	case FramingLength:
		return 4 + len(it.Payload)
	case FramingRaw:
		return len(it.Payload)
	}
	return len(it.Payload) + 1
}

// finish records written items: the re-send window, then acked.
func (d *Dest) finish(b []*Item, now int64) {
	cut := 0
	for cut < len(d.recent) && d.recent[cut].Sent < now-int64(ResendWindow) {
		cut++
	}
	if cut > 0 {
		n := copy(d.recent, d.recent[cut:])
		clear(d.recent[n:])
		d.recent = d.recent[:n]
	}
	for _, it := range b {
		if it.Sent != -1 {
			d.recent = append(d.recent, it)
		}
	}
	d.acked(b, now)
}

// flush is called by the scheduler after it queued due items: when the connection is up and
// nothing else is pending, it writes them at once from the scheduler goroutine with one
// non-blocking writev (no hand-off to the sender goroutine). Whatever the socket does not take
// right away, and every other case, goes to the sender goroutine.
func (d *Dest) flush() {
	if d.deliver != nil || !d.writeMu.TryLock() {
		d.kick()
		return
	}
	if d.conn == nil || d.rc == nil || d.resend || d.rest != nil {
		d.writeMu.Unlock()
		d.kick()
		return
	}
	d.mu.Lock()
	if d.busy {
		d.mu.Unlock()
		d.writeMu.Unlock()
		d.kick()
		return
	}
	b := append(d.direct[:0], d.q...)
	clear(d.q)
	d.q = d.q[:0]
	d.queued = false
	d.mu.Unlock()
	b = dropCancelled(b)
	d.direct = b
	if len(b) == 0 {
		d.writeMu.Unlock()
		return
	}
	if len(b) > 500 { // writev takes at most 1024 buffers; big batches go the usual way
		d.requeue(b)
		d.writeMu.Unlock()
		d.kick()
		clear(b)
		return
	}
	d.frames(b)
	d.iov = append(d.iov[:0], d.bufs...)
	d.conn.SetWriteDeadline(time.Time{}) // a deadline left by the sender goroutine would fail rc.Write
	var n int
	var werr error
	err := d.rc.Write(func(fd uintptr) bool {
		n, werr = unix.Writev(int(fd), d.iov)
		return true // never wait here: the sender goroutine waits instead
	})
	if err == nil {
		err = werr
	}
	if errors.Is(err, unix.EAGAIN) {
		n, err = 0, nil
	}
	if err != nil {
		d.log.Warn("sending to SUT failed; retrying", "source", d.Name, "addr", d.Addr, "err", err)
		if d.hooks != nil && d.hooks.WriteErr != nil {
			d.hooks.WriteErr(err)
		}
		d.dropConn()
		d.requeue(b)
		d.writeMu.Unlock()
		d.kick()
		return
	}
	// Acknowledge the frames that went out whole; keep the rest for the sender goroutine.
	done := 0
	for done < len(b) && n >= d.frameLen(b[done]) {
		n -= d.frameLen(b[done])
		done++
	}
	now := time.Now().UnixNano()
	d.finish(b[:done], now)
	if done < len(b) {
		left := b[done:]
		if n > 0 {
			it := left[0]
			var frame []byte
			switch d.Framing {
			case FramingLength:
				frame = binary.BigEndian.AppendUint32(nil, uint32(len(it.Payload)))
				frame = append(frame, it.Payload...)
			case FramingRaw:
				frame = append(frame, it.Payload...)
			default:
				frame = append(append(frame, it.Payload...), '\n')
			}
			d.rest, d.restItem = frame[n:], it
			d.restPending.Store(true)
			left = left[1:]
		}
		d.requeue(left)
		d.writeMu.Unlock()
		d.kick()
		clear(b)
		return
	}
	d.writeMu.Unlock()
	clear(b)
}

// requeue puts unwritten items back at the front of the queue (they are older than what is there).
func (d *Dest) requeue(items []*Item) {
	if len(items) == 0 {
		return
	}
	d.mu.Lock()
	d.q = append(append(make([]*Item, 0, len(items)+len(d.q)), items...), d.q...)
	d.queued = true
	d.mu.Unlock()
}

// acked records a written batch: times, hooks, and completion for the owners.
func (d *Dest) acked(b []*Item, now int64) {
	for _, it := range b {
		if it.Sent == -1 { // a re-send: already counted and acknowledged
			continue
		}
		it.Sent = now
		if d.hooks != nil && d.hooks.Sent != nil {
			d.hooks.Sent(it)
		}
		if it.Owner != nil {
			it.Owner.Done(it)
		}
	}
}
