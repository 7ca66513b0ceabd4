package sched

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

type owner struct {
	mu        sync.Mutex
	got       []*Item
	cancelled bool
	all       chan struct{}
	want      int
}

func (o *owner) Cancelled(*Item) bool { o.mu.Lock(); defer o.mu.Unlock(); return o.cancelled }
func (o *owner) Done(it *Item) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, it)
	if len(o.got) == o.want {
		close(o.all)
	}
}

// TestNeverEarlyAndInDueOrder pushes items in random order and checks that each one is written at
// or after its due time, and that one destination's items are written in due order.
func TestNeverEarlyAndInDueOrder(t *testing.T) {
	s := New()
	stop := make(chan struct{})
	defer close(stop)
	go s.Run(stop)
	o := &owner{all: make(chan struct{}), want: 500}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var dests []*Dest
	for range 5 {
		d := NewFuncDest("d", func([]*Item) error { return nil }, nil, log, nil)
		defer d.Close()
		dests = append(dests, d)
	}
	base := time.Now().Add(50 * time.Millisecond).UnixNano()
	items := make([]*Item, o.want)
	for i := range items {
		items[i] = &Item{Due: base + rand.Int64N(int64(300*time.Millisecond)), Dest: dests[i%5], Owner: o, Offset: int64(i)}
	}
	for i := 0; i < len(items); i += 50 {
		s.Push(items[i : i+50]...)
	}
	select {
	case <-o.all:
	case <-time.After(30 * time.Second):
		t.Fatalf("only %d of %d items written", len(o.got), o.want)
	}
	last := map[*Dest]int64{}
	for _, it := range o.got {
		if it.Sent < it.Due {
			t.Fatalf("item %d written %v before its due time", it.Offset, time.Duration(it.Due-it.Sent))
		}
		if it.Due < last[it.Dest] {
			t.Fatalf("item %d written out of due order", it.Offset)
		}
		last[it.Dest] = it.Due
	}
}

// TestCancelledItemsAreDropped checks that a cancelled owner's items are never written.
func TestCancelledItemsAreDropped(t *testing.T) {
	s := New()
	stop := make(chan struct{})
	defer close(stop)
	go s.Run(stop)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var mu sync.Mutex
	written := 0
	d := NewFuncDest("d", func(b []*Item) error { mu.Lock(); written += len(b); mu.Unlock(); return nil }, nil, log, nil)
	defer d.Close()
	gone := &owner{cancelled: true, all: make(chan struct{}), want: -1}
	live := &owner{all: make(chan struct{}), want: 1}
	now := time.Now().UnixNano()
	s.Push(&Item{Due: now, Dest: d, Owner: gone}, &Item{Due: now + int64(time.Millisecond), Dest: d, Owner: gone},
		&Item{Due: now + int64(2*time.Millisecond), Dest: d, Owner: live})
	select {
	case <-live.all:
	case <-time.After(30 * time.Second):
		t.Fatal("live item not written")
	}
	mu.Lock()
	defer mu.Unlock()
	if written != 1 || len(gone.got) != 0 {
		t.Fatalf("written %d, cancelled owner got %d", written, len(gone.got))
	}
}

// TestHeapOrder checks the 4-ary heap pops by due time, equal due times in push order.
func TestHeapOrder(t *testing.T) {
	s := New()
	var items []*Item
	for i := range 5000 {
		items = append(items, &Item{Due: rand.Int64N(300), Offset: int64(i)})
	}
	s.Push(items...)
	var last *Item
	for s.Len() > 0 {
		s.mu.Lock()
		it := s.pop()
		s.mu.Unlock()
		if last != nil && (it.Due < last.Due || (it.Due == last.Due && it.Offset < last.Offset)) {
			t.Fatalf("popped due %d offset %d after due %d offset %d", it.Due, it.Offset, last.Due, last.Offset)
		}
		last = it
	}
}
