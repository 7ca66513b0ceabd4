package sched

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestTCPStreamIntactUnderBackpressure writes far more than the socket buffers hold to a reader
// that reads slowly, so direct writes hit EAGAIN and partial writes; every frame must arrive whole,
// once, in order, and every item must be acknowledged.
func TestTCPStreamIntactUnderBackpressure(t *testing.T) {
	for _, framing := range []string{FramingLength, FramingNewline} {
		t.Run(framing, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			const n = 4000
			got := make(chan []string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				br := bufio.NewReaderSize(c, 4096)
				var out []string
				for len(out) < n {
					var p []byte
					if framing == FramingLength {
						var h [4]byte
						if _, err := io.ReadFull(br, h[:]); err != nil {
							break
						}
						p = make([]byte, binary.BigEndian.Uint32(h[:]))
						if _, err := io.ReadFull(br, p); err != nil {
							break
						}
					} else {
						line, err := br.ReadString('\n')
						if err != nil {
							break
						}
						p = []byte(line[:len(line)-1])
					}
					out = append(out, string(p))
				}
				got <- out
			}()
			s := New()
			stop := make(chan struct{})
			defer close(stop)
			go s.Run(stop)
			o := &owner{all: make(chan struct{}), want: n}
			d := NewDest("src", ln.Addr().String(), framing, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			defer d.Close()
			now := time.Now().UnixNano()
			var want []string
			for i := range n {
				p := fmt.Sprintf("rec-%05d-%s", i, make([]byte, 1000+i%700))
				for j := range p {
					if p[j] == 0 {
						p = p[:j] + "x" + p[j+1:]
					}
				}
				want = append(want, p)
				s.Push(&Item{Due: now + int64(i)*1000, Payload: []byte(p), Dest: d, Owner: o, Offset: int64(i)})
			}
			select {
			case <-o.all:
			case <-time.After(60 * time.Second):
				t.Fatalf("%d of %d acknowledged", len(o.got), n)
			}
			out := <-got
			if len(out) != n {
				t.Fatalf("received %d of %d frames", len(out), n)
			}
			for i := range out {
				if out[i] != want[i] {
					t.Fatalf("frame %d differs (len %d vs %d)", i, len(out[i]), len(want[i]))
				}
			}
		})
	}
}
