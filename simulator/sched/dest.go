package sched

import (
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"time"
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
	kickCh  chan struct{}
	closeCh chan struct{}
	closed  bool
	doneCh  chan struct{}

	// deliver, if set, replaces the TCP connection (e.g. publishing files for SFTP pulls).
	deliver func([]*Item) error
	onClose func()

	writeMu sync.Mutex // held while writing; see Barrier
	conn    net.Conn
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
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetNoDelay(true)
			}
			d.conn = c
			if d.hooks != nil && d.hooks.Reconnect != nil {
				d.hooks.Reconnect()
			}
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
			d.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			err := d.write(&batch)
			if err == nil {
				backoff = 50 * time.Millisecond
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
	// Drop items whose owner was cancelled (stop, revoke) before touching the wire.
	b := (*batch)[:0]
	for _, it := range *batch {
		if it.Owner == nil || !it.Owner.Cancelled() {
			b = append(b, it)
		}
	}
	for i := len(b); i < len(*batch); i++ {
		(*batch)[i] = nil
	}
	*batch = b
	if len(b) == 0 {
		return nil
	}
	if d.deliver != nil {
		if err := d.deliver(b); err != nil {
			return err
		}
		d.acked(b, time.Now().UnixNano())
		clear(b)
		*batch = b[:0]
		return nil
	}
	if d.conn == nil {
		c, err := net.DialTimeout("tcp", d.Addr, 2*time.Second)
		if err != nil {
			return err
		}
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
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		d.conn = c
		if d.hooks != nil && d.hooks.Reconnect != nil {
			d.hooks.Reconnect()
		}
	}
	d.bufs = d.bufs[:0]
	d.hdrs = d.hdrs[:0]
	if d.Framing == FramingLength {
		for _, it := range b {
			d.hdrs = binary.BigEndian.AppendUint32(d.hdrs, uint32(len(it.Payload)))
		}
	}
	nl := []byte{'\n'}
	for i, it := range b {
		switch d.Framing {
		case FramingLength:
			d.bufs = append(d.bufs, d.hdrs[4*i:4*i+4], it.Payload)
		case FramingRaw:
			d.bufs = append(d.bufs, it.Payload)
		default:
			d.bufs = append(d.bufs, it.Payload, nl)
		}
	}
	d.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	bufs := d.bufs
	if _, err := bufs.WriteTo(d.conn); err != nil {
		d.conn.Close()
		d.conn = nil
		d.resend = true
		return err
	}
	now := time.Now().UnixNano()
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
	clear(b)
	*batch = b[:0]
	return nil
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
