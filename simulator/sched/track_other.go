//go:build !linux

package sched

import "syscall"

// kernelAcked knows nothing here: every record of a connection counts as possibly unread.
func kernelAcked(syscall.RawConn, uint64) (acked, wnd uint64, ok bool) { return 0, 0, false }
