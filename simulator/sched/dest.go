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
	// Resent is told how many records are written again because the connection they went out on
	// failed before the SUT acknowledged them: each is a possible duplicate at the SUT.
	Resent func(n int)
}

// Dest is one TCP connection to the SUT, owned by one simulated source. Its goroutine writes every
// queued item in one batch, reconnecting with exponential backoff when the SUT drops; a failed
// batch is re-sent whole, and so is every record of the broken connection the SUT may not have
// read (track.go); each re-sent record is reported to Hooks.Resent (at-least-once: the sink counts
// duplicates).
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
	doneCh  chan struct{} // closed when Close has finished
	running bool          // a sender goroutine runs (under mu)
	wg      sync.WaitGroup

	// deliver, if set, replaces the TCP connection (e.g. publishing files for SFTP pulls).
	deliver func([]*Item) error
	onClose func()

	writeMu sync.Mutex // held while writing; see Barrier
	conn    net.Conn
	rc      syscall.RawConn
	fd      int    // conn's socket, -1 without one; valid while writeMu is held and conn is set
	watchID uint64 // conn's entry in the shared watcher (watch_linux.go), 0: none
	// rest is the unwritten tail of a frame a direct write left half-written; it goes first.
	rest        []byte
	restItem    *Item
	restPending atomic.Bool
	direct      []*Item
	out         []byte // the framed d.direct of a direct send
	// The records of the current connection the SUT may not have: see track.go.
	trk tracker
	// again holds the records of a failed connection that the SUT may not have read; they are
	// written first after the reconnect (counted by Hooks.Resent: possible duplicates).
	again     []*Item
	needAgain atomic.Bool
	bufs      net.Buffers
	hdrs      []byte
}

// NewDest returns the destination of one source and has it connected by the dial pool, ahead of
// the first due record (records are fetched up to the lookahead early), so the first send does not
// pay for the dial. Failures are retried on send.
func NewDest(name, addr, framing string, log *slog.Logger, hooks *Hooks) *Dest {
	d := &Dest{Name: name, Addr: addr, Framing: framing, log: log, hooks: hooks, fd: -1,
		kickCh: make(chan struct{}, 1), closeCh: make(chan struct{}), doneCh: make(chan struct{})}
	dials.add(d)
	return d
}

// dialPool connects new destinations with at most dialers goroutines: an assignment of 100,000
// sources would otherwise start 100,000 goroutines at once, each growing a stack for connect.
type dialPool struct {
	mu      sync.Mutex
	queue   []*Dest
	running int
}

const dialers = 32

var dials dialPool

func (p *dialPool) add(d *Dest) {
	p.mu.Lock()
	p.queue = append(p.queue, d)
	start := p.running < dialers
	if start {
		p.running++
	}
	p.mu.Unlock()
	if start {
		go p.run()
	}
}

func (p *dialPool) run() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running--
			p.mu.Unlock()
			return
		}
		d := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		d.dialFirst()
	}
}

// dialFirst connects d unless it is closed or connected already (its sender goroutine dials too
// when a record is due before the pool got to it).
func (d *Dest) dialFirst() {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed || d.conn != nil {
		return // Close, which sets closed before taking writeMu, closes what is here
	}
	if c, err := net.DialTimeout("tcp", d.Addr, 2*time.Second); err == nil {
		d.setConn(c)
	}
}

// NewFuncDest starts a destination that hands each batch to deliver instead of a TCP connection;
// onClose (optional) runs when the dest is closed.
func NewFuncDest(name string, deliver func([]*Item) error, onClose func(), log *slog.Logger, hooks *Hooks) *Dest {
	d := &Dest{Name: name, deliver: deliver, onClose: onClose, log: log, hooks: hooks, fd: -1,
		kickCh: make(chan struct{}, 1), closeCh: make(chan struct{}), doneCh: make(chan struct{})}
	return d
}

// start runs the sender goroutine unless it runs or the dest is closed.
func (d *Dest) start() {
	d.mu.Lock()
	if !d.running && !d.closed {
		d.running = true
		d.wg.Add(1)
		go d.loop()
	}
	d.mu.Unlock()
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

// kick wakes the sender goroutine, starting it if it ended (it ends whenever it has nothing to
// do, so a source whose records all go out on the direct path holds no goroutine).
func (d *Dest) kick() {
	select {
	case d.kickCh <- struct{}{}:
	default:
	}
	d.start()
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
	first := !d.closed
	if first {
		d.closed = true
		close(d.closeCh)
	}
	d.mu.Unlock()
	if !first {
		<-d.doneCh
		return
	}
	d.wg.Wait() // no sender goroutine starts once closed is set
	d.writeMu.Lock()
	c := d.conn
	d.unwatchConn()
	d.conn, d.rc, d.fd = nil, nil, -1 // the watcher sees a closed dest, not a dropped connection
	d.writeMu.Unlock()
	if c != nil {
		c.Close()
	}
	if d.onClose != nil {
		d.onClose()
	}
	close(d.doneCh)
}

func (d *Dest) loop() {
	defer d.wg.Done()
	backoff := 50 * time.Millisecond
	var batch []*Item
	for {
		select {
		case <-d.closeCh:
			return
		case <-d.kickCh:
		default:
			// Nothing to do: end, unless a kick came in meanwhile (kick sends, then starts a
			// goroutine if none runs; running is cleared under mu after the channel was seen
			// empty, so a kick is never left without a goroutine).
			d.mu.Lock()
			if len(d.kickCh) == 0 {
				d.running = false
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			continue
		}
		for {
			d.mu.Lock()
			batch = append(batch, d.q...)
			clear(d.q)
			d.q = d.q[:0]
			d.queued = false
			d.busy = len(batch) > 0
			d.mu.Unlock()
			if len(batch) == 0 && !d.hasRest() && !d.needAgain.Load() {
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
	if len(b) == 0 && len(d.again) == 0 {
		return nil
	}
	if d.conn == nil {
		c, err := net.DialTimeout("tcp", d.Addr, 2*time.Second)
		if err != nil {
			return err
		}
		d.setConn(c)
	}
	if len(d.again) > 0 {
		// What the failed connection may not have delivered goes first, in order.
		again := dropCancelled(d.again)
		d.again = nil
		d.needAgain.Store(false)
		if len(again) > 0 {
			if d.hooks != nil && d.hooks.Resent != nil {
				d.hooks.Resent(len(again))
			}
			b = append(again, b...)
			*batch = b
		}
	}
	d.frames(b)
	bufs := d.bufs
	var wrote int64
	for {
		// The deadline bounds a stall, not the batch: a slow SUT that keeps reading is fine.
		d.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		n, err := bufs.WriteTo(d.conn)
		wrote += n
		if err == nil {
			break
		}
		var ne net.Error
		if n > 0 && errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		// The batch stays whole and is written again after the reconnect; the records of it that
		// (partly) went out may have reached the SUT: they are possible duplicates.
		if k := d.framesWithin(b, wrote); k > 0 && d.hooks != nil && d.hooks.Resent != nil {
			d.hooks.Resent(k)
		}
		d.dropConn()
		return err
	}
	d.finish(b, time.Now().UnixNano())
	d.sample(true)
	clear(b)
	*batch = b[:0]
	return nil
}

// framesWithin counts the frames of b that begin within the first n bytes of their framing.
func (d *Dest) framesWithin(b []*Item, n int64) int {
	k := 0
	for _, it := range b {
		if n <= 0 {
			break
		}
		n -= int64(d.frameLen(it))
		k++
	}
	return k
}

// dropCancelled removes items whose owner was cancelled (stop, revoke), in place.
func dropCancelled(in []*Item) []*Item {
	b := in[:0]
	for _, it := range in {
		if it.Owner == nil || !it.Owner.Cancelled(it) {
			b = append(b, it)
		}
	}
	clear(in[len(b):])
	return b
}

func (d *Dest) setConn(c net.Conn) {
	d.conn, d.rc, d.fd = c, nil, -1
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		if rc, err := tc.SyscallConn(); err == nil {
			d.rc = rc
			rc.Control(func(fd uintptr) { d.fd = int(fd) })
		}
	}
	d.trk.reset()
	d.watchConn(c)
	if d.hooks != nil && d.hooks.Reconnect != nil {
		d.hooks.Reconnect()
	}
}

// watch notices a connection the SUT dropped (reset or close) even when nothing is being written,
// so what it may not have read is re-sent without waiting for the next record. What the SUT sends
// is discarded.
func (d *Dest) watch(c net.Conn) {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	d.writeMu.Lock()
	dropped := d.conn == c
	if dropped {
		d.log.Warn("SUT closed the connection", "source", d.Name, "addr", d.Addr)
		d.dropConn()
	}
	d.writeMu.Unlock()
	if dropped {
		d.kick()
	}
}

// dropConn closes the connection; the records on it the SUT may not have read are kept for the
// next one (caller holds writeMu).
func (d *Dest) dropConn() {
	if d.conn == nil {
		return
	}
	d.sample(true) // the last word of the kernel on this connection, if it still has one
	if lost := d.trk.unconfirmed(); len(lost) > 0 {
		d.log.Info("re-sending what the SUT may not have read", "source", d.Name, "records", len(lost),
			"acked_bytes", d.trk.acked, "written_bytes", d.trk.wrote, "window", d.trk.maxWnd, "kernel_acks", d.trk.known)
		for _, it := range lost {
			d.again = append(d.again, &Item{Due: it.Due, Payload: it.Payload, Owner: it.Owner, Offset: it.Offset, Loop: it.Loop, Sent: -1})
		}
		d.needAgain.Store(true)
	}
	d.trk.reset()
	d.unwatchConn()
	d.conn.Close()
	d.conn, d.rc, d.fd = nil, nil, -1
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

// finish records written items: tracked until the SUT's kernel acknowledged them, then acked.
func (d *Dest) finish(b []*Item, now int64) {
	for _, it := range b {
		d.trk.add(it, d.frameLen(it))
	}
	d.acked(b, now)
}

// The direct path: after the scheduler queued due items it writes them at once from its own
// goroutine, without a hand-off to the sender goroutine, when the connection is up and nothing
// else is pending. prepare frames a dest's due items into one contiguous buffer (so records of
// one connection due together go out in one send), the scheduler sends every prepared dest's
// buffer, all of them in one io_uring_enter(2) where io_uring works and one non-blocking write(2)
// each where it does not, and complete books the result. Whatever the socket does not take right
// away, and every other case, goes to the sender goroutine.

// directMax bounds the items one dest sends directly per dispatch; bigger batches (the unscheduled
// ceiling) go the usual way, so the timing loop never copies much.
const directMax = 500

// prepare takes the dest's queued items for a direct send. It returns false (and has kicked the
// sender goroutine) when the direct path does not apply; true means it holds writeMu, d.out holds
// the framed items of d.direct, and d.fd is the socket: the caller sends d.out and calls complete.
func (d *Dest) prepare() bool {
	if d.deliver != nil || !d.writeMu.TryLock() {
		d.kick()
		return false
	}
	if d.conn == nil || d.fd < 0 || len(d.again) > 0 || d.rest != nil {
		d.writeMu.Unlock()
		d.kick()
		return false
	}
	d.mu.Lock()
	if d.busy {
		d.mu.Unlock()
		d.writeMu.Unlock()
		d.kick()
		return false
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
		return false
	}
	if len(b) > directMax {
		d.requeue(b)
		d.writeMu.Unlock()
		d.kick()
		clear(b)
		return false
	}
	d.out = d.out[:0]
	for _, it := range b {
		d.out = d.appendFrame(d.out, it)
	}
	return true
}

// appendFrame appends one framed record.
func (d *Dest) appendFrame(out []byte, it *Item) []byte {
	switch d.Framing {
	case FramingLength:
		out = binary.BigEndian.AppendUint32(out, uint32(len(it.Payload)))
		return append(out, it.Payload...)
	case FramingRaw:
		return append(out, it.Payload...)
	}
	return append(append(out, it.Payload...), '\n')
}

// complete books a direct send of d.out that took n bytes (err: the send failed; EAGAIN counts as
// 0 bytes taken) and releases writeMu.
func (d *Dest) complete(n int, err error, now int64) {
	b := d.direct
	if errors.Is(err, unix.EAGAIN) {
		n, err = 0, nil
	}
	if err != nil {
		d.log.Warn("sending to SUT failed; retrying", "source", d.Name, "addr", d.Addr, "err", err)
		if d.hooks != nil && d.hooks.WriteErr != nil {
			d.hooks.WriteErr(err)
		}
		// The records of this send that (partly) went out may have reached the SUT: they are
		// written again after the reconnect, as possible duplicates.
		if k := d.framesWithin(b, int64(n)); k > 0 && d.hooks != nil && d.hooks.Resent != nil {
			d.hooks.Resent(k)
		}
		d.dropConn()
		d.requeue(b)
		d.writeMu.Unlock()
		d.kick()
		clear(b)
		return
	}
	// Acknowledge the frames that went out whole; keep the rest for the sender goroutine.
	done, at := 0, 0
	for done < len(b) && n-at >= d.frameLen(b[done]) {
		at += d.frameLen(b[done])
		done++
	}
	d.finish(b[:done], now)
	d.sample(false)
	if done < len(b) {
		left := b[done:]
		if n > at {
			// The first unsent frame went out in part: its tail goes first on the next write.
			end := at + d.frameLen(left[0])
			d.rest, d.restItem = append([]byte(nil), d.out[n:end]...), left[0]
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

// writeOut sends d.out with one non-blocking write(2) (the path without io_uring).
func (d *Dest) writeOut() {
	n, err := unix.Write(d.fd, d.out)
	d.complete(n, err, time.Now().UnixNano())
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
