//go:build !linux

package sched

import "net"

// watchConn starts a goroutine watching c (outside Linux there is no shared epoll set).
func (d *Dest) watchConn(c net.Conn) { go d.watch(c) }

// unwatchConn does nothing: the goroutine ends when the connection is closed.
func (d *Dest) unwatchConn() {}
