package delivery

import (
	"testing"
	"time"
)

// A Source handle counts into the current interval: after a Take that handed the sources over
// (or a new run), its records land in the new map, never in a summary already taken.
func TestSourceHandleFollowsTakes(t *testing.T) {
	var r Recorder
	h := r.Source("src-1")
	h.Sent(time.Millisecond, true) // outside a run: dropped
	r.Begin("run-1", time.Unix(0, 0))
	h.Sent(time.Millisecond, true)
	first, _ := r.Take(time.Unix(1, 0), true)
	h.Sent(2*time.Millisecond, false)
	h.Sent(2*time.Millisecond, false)
	if c := first.Sources["src-1"]; c == nil || c.Sent != 1 || c.Acked != 1 {
		t.Fatalf("first interval: %+v, want 1 sent and acked", first.Sources["src-1"])
	}
	second, _ := r.Take(time.Unix(2, 0), true)
	if c := second.Sources["src-1"]; c == nil || c.Sent != 2 || c.Acked != 0 || second.Totals.Sent != 2 {
		t.Fatalf("second interval: %+v (totals %+v), want 2 sent", second.Sources["src-1"], second.Totals)
	}
	r.Begin("run-2", time.Unix(3, 0))
	h.Sent(time.Millisecond, true)
	third, _ := r.Take(time.Unix(4, 0), true)
	if c := third.Sources["src-1"]; c == nil || c.Sent != 1 || third.Run != "run-2" {
		t.Fatalf("a new run: %+v", third)
	}
}
