package bench

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/simlab/simlab/simulator/uring"
	"golang.org/x/sys/unix"
)

// FloorOptions describes the physical-floor measurement: what loopback TCP writes of 100-byte
// records cost the sender, with nothing else done (no Kafka, no scheduling, no tracking).
type FloorOptions struct {
	Addr     string
	Conns    int
	Rate     int           // records/s, paced in 1 ms ticks
	Duration time.Duration //
	PerWrite int           // records per write (same connection)
	Uring    bool          // one io_uring_enter per tick for all of the tick's writes
}

// FloorResult is what the floor's sender spent.
type FloorResult struct {
	Records, Writes, Syscalls int64
	// CPU is the sending thread's CPU seconds inside the writes (CLOCK_THREAD_CPUTIME_ID read
	// before and after each tick's writes): the cost of the writes alone.
	CPU float64
	// ProcessCPU is the process's user+system seconds over the send phase (rusage), which adds the
	// pacing: 1,000 timer wake-ups a second and the Go runtime's idle work.
	ProcessCPU float64
}

// Floor paces Rate records/s over Conns connections: every millisecond it sends the records due
// in it, PerWrite consecutive records of one connection per write, connections in turn, one
// write(2) each (or all of the tick's writes in one io_uring submission). Its CPU is the sending
// thread's time inside the writes (loopback TCP's work done in the sender's context included);
// ProcessCPU adds the pacing.
func Floor(ctx context.Context, o FloorOptions) (FloorResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var res FloorResult
	conns := make([]*net.TCPConn, o.Conns)
	fds := make([]int, o.Conns)
	for i := range conns {
		c, err := net.Dial("tcp", o.Addr)
		if err != nil {
			return res, err
		}
		defer c.Close()
		tc := c.(*net.TCPConn)
		tc.SetNoDelay(true)
		conns[i] = tc
		rc, err := tc.SyscallConn()
		if err != nil {
			return res, err
		}
		rc.Control(func(fd uintptr) { fds[i] = int(fd) })
	}
	var ring *uring.Ring
	if o.Uring {
		r, err := uring.New(256)
		if err != nil {
			return res, err
		}
		defer r.Close()
		ring = r
	}
	rec := make([]byte, 101) // 100-byte record + newline framing
	for i := range rec {
		rec[i] = 'x'
	}
	rec[100] = '\n'
	// One buffer per connection holding PerWrite records, each write sends all of it.
	buf := make([]byte, 0, 101*o.PerWrite)
	for range o.PerWrite {
		buf = append(buf, rec...)
	}
	total := int64(o.Rate) * int64(o.Duration/time.Millisecond) / 1000
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := time.Now()
	next := 0
	var sent int64
	var rerr error
	var inWrites time.Duration
	for tick := int64(1); sent < total && ctx.Err() == nil; tick++ {
		due := min(total, int64(o.Rate)*tick/1000)
		t0 := threadCPU()
		for sent < due {
			k := min(int64(o.PerWrite), due-sent)
			fd := fds[next]
			next = (next + 1) % len(fds)
			if ring != nil {
				if err := ring.Send(fd, buf[:101*k], 0); err == uring.ErrFull {
					if err := ring.Submit(func(_ uint64, r int32) { check(r, &rerr) }); err != nil {
						return res, err
					}
					res.Syscalls++
					ring.Send(fd, buf[:101*k], 0)
				}
			} else {
				n, err := unix.Write(fd, buf[:101*k])
				res.Syscalls++
				if err != nil || n != int(101*k) {
					return res, fmt.Errorf("write: %d of %d bytes: %v", n, 101*k, err)
				}
			}
			res.Writes++
			sent += k
		}
		if ring != nil {
			if err := ring.Submit(func(_ uint64, r int32) { check(r, &rerr) }); err != nil {
				return res, err
			}
			res.Syscalls++
		}
		inWrites += threadCPU() - t0
		if rerr != nil {
			return res, rerr
		}
		time.Sleep(time.Until(start.Add(time.Duration(tick) * time.Millisecond)))
	}
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	res.Records = sent
	res.ProcessCPU = tv(ru1.Utime) + tv(ru1.Stime) - tv(ru0.Utime) - tv(ru0.Stime)
	res.CPU = inWrites.Seconds()
	return res, nil
}

func check(r int32, err *error) {
	switch {
	case *err != nil:
	case r < 0:
		*err = fmt.Errorf("io_uring send: %w", unix.Errno(-r))
	case r%101 != 0:
		*err = fmt.Errorf("io_uring send: short send of %d bytes", r)
	}
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

func tv(t unix.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
