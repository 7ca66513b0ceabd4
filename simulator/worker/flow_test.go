package worker

import (
	"slices"
	"testing"
)

// TestFlowPausesAheadAndResumesInTime drives the flow control as the poll loop does: new
// partitions are resumed; one fetched past the lookahead is paused and resumed once the clock
// reaches half the lookahead before its last due time; one with too many unwritten records
// waits for its backlog; a partition that left the session is forgotten; untouched partitions
// cost nothing (they are never looked at).
func TestFlowPausesAheadAndResumesInTime(t *testing.T) {
	const look = 1000
	f := flow{look: look}
	parts := map[int32]*partState{}
	live := func(ps *partState) bool { return parts[ps.part] == ps }
	for p := int32(0); p < 3; p++ {
		parts[p] = &partState{part: p, paused: true}
		f.assigned(parts[p])
	}
	step := func(now int64, wantPause, wantResume []int32) {
		t.Helper()
		pause, resume := f.decide(now, live)
		slices.Sort(pause)
		slices.Sort(resume)
		if !slices.Equal(pause, wantPause) || !slices.Equal(resume, wantResume) {
			t.Fatalf("at %d: pause %v resume %v, want %v and %v", now, pause, resume, wantPause, wantResume)
		}
	}
	step(0, nil, []int32{0, 1, 2})

	fetch := func(p int32, due int64) { parts[p].lastDue = due; f.fetched(parts[p]) }
	fetch(0, 500) // within the lookahead
	fetch(1, 1500)
	step(0, []int32{1}, nil)
	step(999, nil, nil) // 1500 >= 999+500
	step(1001, nil, []int32{1})

	// A backlog: paused though due soon, resumed once it is below half.
	parts[2].unwritten.Store(maxPending + 1)
	fetch(2, 1100)
	step(1001, []int32{2}, nil)
	step(1200, nil, nil) // due soon enough, backlog still high
	parts[2].unwritten.Store(maxPending / 2)
	step(1300, nil, nil) // not below half yet
	parts[2].unwritten.Store(10)
	step(1400, nil, []int32{2})

	// Fetched more while paused: waits for the new last due time.
	fetch(1, 5000)
	step(1400, []int32{1}, nil)
	fetch(1, 9000) // still in flight when the pause took effect
	step(4600, nil, nil)
	step(8600, nil, []int32{1})

	// Revoked while paused: forgotten.
	fetch(0, 20000)
	step(8600, []int32{0}, nil)
	parts[0] = &partState{part: 0, paused: true}
	f.assigned(parts[0])
	step(30000, nil, []int32{0})
	if f.waiting.Len() != 0 || len(f.blocked) != 0 {
		t.Errorf("left over: %d waiting, %d blocked", f.waiting.Len(), len(f.blocked))
	}
}
