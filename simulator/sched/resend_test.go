package sched

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestResendAfterStallAndReset reproduces a SUT that stops reading for a while and then drops its
// connection with a reset (SO_LINGER 0), so everything still in its receive buffer and in the
// worker's send queue is lost. Far more than one second's worth of records is unread when the reset
// comes. A reconnected SUT must receive every record (received ⊇ expected), none before its due
// time, and the resends the dest reports must cover every duplicate the SUT sees. In "busy" the
// reset comes while records are still due (a write fails); in "idle" every record was written
// before the reset, so only the dest noticing the reset itself gets them delivered.
func TestResendAfterStallAndReset(t *testing.T) {
	const n = 2000
	t.Run("busy", func(t *testing.T) { testResendAfterStallAndReset(t, n, 1500) })
	t.Run("idle", func(t *testing.T) { testResendAfterStallAndReset(t, n, n) })
}

// testResendAfterStallAndReset: n records, the SUT resets once stallFor were written.
func testResendAfterStallAndReset(t *testing.T, n, stallFor int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const readHead = 100 // records the SUT reads before it stalls
	type arrival struct {
		payload string
		at      int64
	}
	var (
		mu       sync.Mutex
		arrivals []arrival
		distinct = map[string]bool{}
	)
	record := func(line string) {
		mu.Lock()
		arrivals = append(arrivals, arrival{line, time.Now().UnixNano()})
		distinct[line] = true
		mu.Unlock()
	}
	counts := func() (all, uniq int) {
		mu.Lock()
		defer mu.Unlock()
		return len(arrivals), len(distinct)
	}
	o := &owner{all: make(chan struct{}), want: n}
	written := func() int { o.mu.Lock(); defer o.mu.Unlock(); return len(o.got) }
	stalled := make(chan *net.TCPConn, 1)
	go func() {
		// First connection: read the head, then stop reading.
		c, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c)
		for range readHead {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			record(strings.TrimSuffix(line, "\n"))
		}
		stalled <- c.(*net.TCPConn)
		// Every later connection: read everything.
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					record(strings.TrimSuffix(line, "\n"))
				}
			}()
		}
	}()

	var resent atomic.Int64
	hooks := &Hooks{Resent: func(k int) { resent.Add(int64(k)) }}
	s := New()
	stop := make(chan struct{})
	defer close(stop)
	go s.Run(stop)
	d := NewDest("src", ln.Addr().String(), FramingNewline, slog.New(slog.NewTextHandler(io.Discard, nil)), hooks)
	defer d.Close()
	start := time.Now().Add(50 * time.Millisecond).UnixNano()
	due := map[string]int64{}
	for i := range n {
		p := fmt.Sprintf("rec-%05d-%s", i, strings.Repeat("x", 90))
		it := &Item{Due: start + int64(i)*int64(time.Millisecond), Payload: []byte(p), Dest: d, Owner: o, Offset: int64(i)}
		due[p] = it.Due
		s.Push(it)
	}

	var c *net.TCPConn
	select {
	case c = <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the SUT never read its first records")
	}
	// Wait (polling, with a deadline) until the worker has written far more than the SUT read:
	// everything after the head sits in the SUT's receive buffer or the worker's send queue.
	waitFor(t, 30*time.Second, func() bool { return written() >= stallFor }, func() string {
		return fmt.Sprintf("%d records written", written())
	})
	c.SetLinger(0)
	c.Close() // a reset: unread data is discarded

	waitFor(t, 30*time.Second, func() bool { _, u := counts(); return u == n }, func() string {
		all, u := counts()
		return fmt.Sprintf("received %d distinct of %d (%d in all, %d lost), %d reported resent", u, n, all, n-u, resent.Load())
	})
	mu.Lock()
	defer mu.Unlock()
	for _, a := range arrivals {
		if w, ok := due[a.payload]; !ok {
			t.Fatalf("unexpected record %q", a.payload)
		} else if a.at < w {
			t.Fatalf("record %q arrived %v early", a.payload[:9], time.Duration(w-a.at))
		}
	}
	dups := int64(len(arrivals) - len(distinct))
	t.Logf("%d duplicates, %d reported resent", dups, resent.Load())
	if dups > resent.Load() {
		t.Fatalf("%d duplicates but only %d records reported resent", dups, resent.Load())
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", state())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestResendTrackingStaysBounded writes many records to a SUT that keeps reading: the records kept
// for a possible resend are pruned as the kernel reports acknowledgements, so what is tracked
// stays within the receive-window margin instead of growing with the stream. The SUT's receive
// buffer is fixed small, so its window stays far below what is written.
func TestResendTrackingStaysBounded(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	const n = 20000
	s := New()
	stop := make(chan struct{})
	defer close(stop)
	go s.Run(stop)
	o := &owner{all: make(chan struct{}), want: n}
	d := NewDest("src", ln.Addr().String(), FramingNewline, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer d.Close()
	now := time.Now().UnixNano()
	for i := range n {
		s.Push(&Item{Due: now + int64(i)*10000, Payload: []byte(fmt.Sprintf("rec-%05d-%s", i, strings.Repeat("y", 190))), Dest: d, Owner: o, Offset: int64(i)})
	}
	select {
	case <-o.all:
	case <-time.After(60 * time.Second):
		t.Fatalf("%d of %d written", len(o.got), n)
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	tr := &d.trk
	if !tr.known || tr.maxWnd == 0 {
		if runtime.GOOS == "linux" {
			t.Fatal("Linux reported no acknowledged position or window through TCP_INFO/SIOCOUTQ: the tracking this test checks never started")
		}
		t.Skip("only Linux reports TCP acknowledgements (track_other.go resends the whole connection)")
	}
	var kept uint64
	if len(tr.recs) > 0 {
		kept = tr.wrote - (tr.recs[0].end - uint64(d.frameLen(tr.recs[0].it)))
	}
	t.Logf("wrote %d bytes, acked %d, window %d: %d records (%d bytes) kept", tr.wrote, tr.acked, tr.maxWnd, len(tr.recs), kept)
	if len(tr.recs) > 0 {
		// The oldest record kept may begin before the margin.
		if limit := tr.wrote - tr.acked + windowFactor*tr.maxWnd + uint64(d.frameLen(tr.recs[0].it)); kept > limit {
			t.Fatalf("%d bytes kept for resending, more than unacknowledged + margin (%d)", kept, limit)
		}
	}
	if kept >= tr.wrote {
		t.Fatalf("nothing pruned: %d of %d bytes kept", kept, tr.wrote)
	}
}
