package uring

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
)

// TestSendsToManyConnectionsInOneSubmit sends one buffer to each of several connections in one
// Submit and checks every byte arrives, and that a full socket buffer reports -EAGAIN instead of
// waiting. On Linux io_uring must work here (CI runs Linux): a failing New fails the test.
func TestSendsToManyConnectionsInOneSubmit(t *testing.T) {
	r, err := New(64)
	if err != nil {
		t.Fatalf("io_uring unavailable: %v", err)
	}
	defer r.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const n = 10
	var fds []int
	var peers []net.Conn
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		peers = append(peers, p)
		rc, _ := c.(*net.TCPConn).SyscallConn()
		rc.Control(func(fd uintptr) { fds = append(fds, int(fd)) })
	}
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = bytes.Repeat([]byte{byte('a' + i)}, 100+i)
		if err := r.Send(fds[i], msgs[i], uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := map[uint64]int32{}
	if err := r.Submit(func(tag uint64, res int32) { got[tag] = res }); err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		if got[uint64(i)] != int32(len(msgs[i])) {
			t.Fatalf("send %d: result %d, want %d", i, got[uint64(i)], len(msgs[i]))
		}
		buf := make([]byte, len(msgs[i]))
		if _, err := io.ReadFull(peers[i], buf); err != nil || !bytes.Equal(buf, msgs[i]) {
			t.Fatalf("connection %d received %q, %v", i, buf, err)
		}
	}
	// Fill one socket until the kernel refuses: the result is -EAGAIN, never a wait.
	big := make([]byte, 1<<20)
	sawAgain := false
	for range 1000 {
		var res int32
		if err := r.Send(fds[0], big, 7); err != nil {
			t.Fatal(err)
		}
		if err := r.Submit(func(_ uint64, x int32) { res = x }); err != nil {
			t.Fatal(err)
		}
		if res == -int32(syscall.EAGAIN) {
			sawAgain = true
			break
		}
		if res <= 0 {
			t.Fatalf("send on a filling socket: result %d", res)
		}
	}
	if !sawAgain {
		t.Fatal("a socket nobody reads never reported EAGAIN")
	}
	// The ring refuses more than its entries.
	for i := 0; i < r.Entries(); i++ {
		if err := r.Send(fds[1], msgs[1][:1], 0); err != nil {
			t.Fatalf("send %d of %d: %v", i, r.Entries(), err)
		}
	}
	if err := r.Send(fds[1], msgs[1][:1], 0); err != ErrFull {
		t.Fatalf("send past the ring's entries: %v, want ErrFull", err)
	}
	if err := r.Submit(func(uint64, int32) {}); err != nil {
		t.Fatal(err)
	}
}
