package sched

import (
	"errors"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// One goroutine watches every connection of the process for the SUT closing or resetting it (an
// epoll set of its own, edge-triggered, next to the Go runtime's), instead of a goroutine per
// connection blocked in Read: 100,000 sources would otherwise hold 100,000 more goroutine stacks.
// What the SUT sends is read and discarded.
type watchSet struct {
	once  sync.Once
	epfd  int
	err   error
	mu    sync.Mutex
	next  uint64
	conns map[uint64]watched
}

type watched struct {
	d *Dest
	c net.Conn
}

var watcher watchSet

// watchConn starts watching c, the new connection of d (caller holds d.writeMu; d.fd is c's).
func (d *Dest) watchConn(c net.Conn) {
	w := &watcher
	w.once.Do(w.start)
	if w.err != nil || d.fd < 0 {
		go d.watch(c) // no epoll set: a goroutine per connection
		return
	}
	w.mu.Lock()
	w.next++
	id := w.next
	w.conns[id] = watched{d, c}
	w.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(id), Pad: int32(id >> 32)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, d.fd, &ev); err != nil {
		w.mu.Lock()
		delete(w.conns, id)
		w.mu.Unlock()
		go d.watch(c)
		return
	}
	d.watchID = id
}

// unwatchConn stops watching d's connection (caller holds d.writeMu, before closing it).
func (d *Dest) unwatchConn() {
	if d.watchID == 0 {
		return
	}
	w := &watcher
	w.mu.Lock()
	delete(w.conns, d.watchID)
	w.mu.Unlock()
	if d.fd >= 0 {
		unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, d.fd, nil)
	}
	d.watchID = 0
}

func (w *watchSet) start() {
	w.epfd, w.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if w.err != nil {
		return
	}
	w.conns = map[uint64]watched{}
	go w.run()
}

func (w *watchSet) run() {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 4096)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			w.mu.Lock()
			x, ok := w.conns[id]
			w.mu.Unlock()
			if ok {
				x.d.readable(x.c, buf)
			}
		}
	}
}

// readable drains what the SUT sent on c; at end of stream or an error the SUT dropped the
// connection: what it may not have read is kept for the next one (as watch does).
func (d *Dest) readable(c net.Conn, buf []byte) {
	d.writeMu.Lock()
	if d.conn != c || d.fd < 0 {
		d.writeMu.Unlock()
		return
	}
	dropped := false
	for {
		n, err := unix.Read(d.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil || n == 0 {
			dropped = true
			break
		}
	}
	if dropped {
		d.log.Warn("SUT closed the connection", "source", d.Name, "addr", d.Addr)
		d.dropConn()
	}
	d.writeMu.Unlock()
	if dropped {
		d.kick()
	}
}
