//go:build !linux

package uring

import "errors"

// Ring is unavailable outside Linux.
type Ring struct{}

// ErrFull is returned by Send when the ring is full.
var ErrFull = errors.New("uring: submission ring full")

// New fails outside Linux.
func New(uint32) (*Ring, error) { return nil, errors.New("io_uring is Linux-only") }

// Entries is 0.
func (r *Ring) Entries() int { return 0 }

// Send fails.
func (r *Ring) Send(int, []byte, uint64) error { return ErrFull }

// Submit does nothing.
func (r *Ring) Submit(func(uint64, int32)) error { return nil }

// Close does nothing.
func (r *Ring) Close() error { return nil }
