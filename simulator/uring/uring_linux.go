// Package uring is a minimal io_uring submission ring for one job: hand the kernel many
// non-blocking socket sends, to different connections, in one io_uring_enter(2) call, and read
// their results back from the completion ring without another system call. It is written against
// the kernel's ABI (include/uapi/linux/io_uring.h) with golang.org/x/sys/unix's syscall numbers;
// no io_uring library is used.
//
// Every send carries MSG_DONTWAIT, so the kernel never parks one on a poll: it completes inside the
// submitting call (with the bytes taken, a short count, or -EAGAIN), and Submit returns only when
// every submitted send has its completion. Ring is not safe for concurrent use.
package uring

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ABI constants (include/uapi/linux/io_uring.h).
const (
	opSend = 26 // IORING_OP_SEND

	offSQRing = 0
	offSQEs   = 0x10000000

	featSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	featNoDrop     = 1 << 1 // IORING_FEAT_NODROP

	enterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFDIn  int32
	addr3       uint64
	pad2        uint64
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is one submission/completion ring pair.
type Ring struct {
	fd      int
	ring    []byte // SQ and CQ rings (one mapping: IORING_FEAT_SINGLE_MMAP)
	sqeMem  []byte
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []sqe
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []cqe
	entries uint32
	queued  uint32   // SQEs written since the last Submit
	bufs    [][]byte // what the queued SQEs point at, kept reachable until Submit returns
}

// ErrFull is returned by Send when Entries sends are queued; Submit first.
var ErrFull = errors.New("uring: submission ring full")

// New sets up a ring for up to entries sends per Submit (rounded up to a power of two by the
// kernel). It fails where io_uring is unavailable: an old kernel, kernel.io_uring_disabled, or a
// seccomp profile that refuses io_uring_setup (the container runtimes' defaults do).
func New(entries uint32) (*Ring, error) {
	var p params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd), entries: p.sqEntries}
	fail := func(err error) (*Ring, error) {
		r.Close()
		return nil, err
	}
	if p.features&featSingleMmap == 0 || p.features&featNoDrop == 0 {
		return fail(errors.New("io_uring: kernel lacks IORING_FEAT_SINGLE_MMAP or IORING_FEAT_NODROP (Linux < 5.5)"))
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	mem, err := unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(fmt.Errorf("io_uring: mmap rings: %w", err))
	}
	r.ring = mem
	sqeMem, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(fmt.Errorf("io_uring: mmap SQEs: %w", err))
	}
	r.sqeMem = sqeMem
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&mem[off]) }
	r.sqHead = (*uint32)(at(p.sqOff.head))
	r.sqTail = (*uint32)(at(p.sqOff.tail))
	r.sqMask = *(*uint32)(at(p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(at(p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(at(p.cqOff.head))
	r.cqTail = (*uint32)(at(p.cqOff.tail))
	r.cqMask = *(*uint32)(at(p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*cqe)(at(p.cqOff.cqes)), p.cqEntries)
	return r, nil
}

// Entries is how many sends one Submit can carry.
func (r *Ring) Entries() int { return int(r.entries) }

// Send queues a non-blocking send(2) of buf on the socket fd; tag comes back with its result.
// buf must stay unchanged until Submit returns.
func (r *Ring) Send(fd int, buf []byte, tag uint64) error {
	if r.queued == r.entries {
		return ErrFull
	}
	tail := *r.sqTail // only this process writes the tail
	i := tail & r.sqMask
	e := &r.sqes[i]
	*e = sqe{opcode: opSend, fd: int32(fd), len: uint32(len(buf)), opFlags: unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL, userData: tag}
	if len(buf) > 0 {
		e.addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	r.sqArray[i] = i
	r.bufs = append(r.bufs, buf)
	atomic.StoreUint32(r.sqTail, tail+1) // release: the SQE is visible before the new tail
	r.queued++
	return nil
}

// Submit hands every queued send to the kernel in one io_uring_enter(2) and calls done with each
// one's tag and result: the bytes sent, or a negative errno (-EAGAIN: the socket's buffer is
// full). It returns after every queued send completed.
func (r *Ring) Submit(done func(tag uint64, res int32)) error {
	want := r.queued
	var got uint32
	for got < want {
		var toSubmit uint32
		if sub := atomic.LoadUint32(r.sqHead); sub != *r.sqTail {
			toSubmit = *r.sqTail - sub
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(want-got), enterGetEvents, 0, 0)
		if errno != 0 && errno != syscall.EINTR && errno != syscall.EAGAIN && errno != syscall.EBUSY {
			r.queued = 0
			clear(r.bufs)
			r.bufs = r.bufs[:0]
			runtime.KeepAlive(r)
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		got += r.reap(done)
	}
	r.queued = 0
	clear(r.bufs)
	r.bufs = r.bufs[:0]
	return nil
}

func (r *Ring) reap(done func(tag uint64, res int32)) uint32 {
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail) // acquire: CQEs up to tail are written
	n := tail - head
	for ; head != tail; head++ {
		c := &r.cqes[head&r.cqMask]
		done(c.userData, c.res)
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// Close releases the ring.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
		r.sqeMem = nil
	}
	if r.ring != nil {
		unix.Munmap(r.ring)
		r.ring = nil
	}
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
	return nil
}
