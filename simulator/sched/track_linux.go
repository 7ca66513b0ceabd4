package sched

import "golang.org/x/sys/unix"

// kernelAcked reports how many bytes of the stream the peer acknowledged and the receive window it
// last advertised. TCP_INFO answers both in one call (tcpi_bytes_acked since Linux 4.1,
// tcpi_snd_wnd since 5.4); where tcpi_bytes_acked reads 0, SIOCOUTQ (bytes in the send queue not
// yet acknowledged) gives the acknowledged position as written − queued. A kernel without
// tcpi_snd_wnd reports a window of 0 and the tracker then keeps the whole connection.
//
// Measured here (Linux 6.18, loopback): TCP_INFO ≈ 0.66 µs a call, SIOCOUTQ ≈ 0.28 µs; only
// TCP_INFO has the window, and one call per write batch (at most one per 5 ms on the direct path)
// is negligible next to the write itself, so TCP_INFO is asked first and SIOCOUTQ only as a
// fallback. (tcpi_unacked counts segments, not bytes; tcpi_notsent_bytes leaves out sent but
// unacknowledged bytes: neither gives the acknowledged position.)
//
// fd is the connection's socket (the caller holds the Dest's writeMu, so it stays open).
func kernelAcked(fd int, wrote uint64) (acked, wnd uint64, ok bool) {
	var qerr error
	outq := -1
	info, ierr := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if ierr != nil || info.Bytes_acked == 0 {
		outq, qerr = unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	}
	if ierr == nil {
		acked, wnd = info.Bytes_acked, uint64(info.Snd_wnd)
	}
	if acked == 0 && qerr == nil && outq >= 0 && uint64(outq) <= wrote {
		acked = wrote - uint64(outq)
	}
	return acked, wnd, ierr == nil || qerr == nil
}
