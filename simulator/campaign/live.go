package campaign

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/delivery"
	"golang.org/x/sys/unix"
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// dueCounter counts, per type, the records due by a time (all loops).
type dueCounter struct {
	offs  map[string][]time.Duration // sorted, one loop
	span  time.Duration
	start time.Time
	loops int // 0: unbounded
}

func newDueCounter(e *Expectation, start time.Time, loops int) *dueCounter {
	d := &dueCounter{offs: map[string][]time.Duration{}, span: e.Span, start: start, loops: loops}
	for typ, srcs := range e.Offsets {
		for _, offs := range srcs {
			d.offs[typ] = append(d.offs[typ], offs...)
		}
		sort.Slice(d.offs[typ], func(i, j int) bool { return d.offs[typ][i] < d.offs[typ][j] })
	}
	return d
}

func (d *dueCounter) due(typ string, now time.Time) int64 {
	offs := d.offs[typ]
	el := now.Sub(d.start)
	if el < 0 || len(offs) == 0 {
		return 0
	}
	var n int64
	for loop := 0; d.loops == 0 || loop < d.loops; loop++ {
		rel := el - time.Duration(loop)*d.span
		if rel < 0 || d.span <= 0 && loop > 0 {
			break
		}
		n += int64(sort.Search(len(offs), func(i int) bool { return offs[i] > rel }))
	}
	return n
}

// Progress is one live line per type.
type Progress struct {
	Type      string
	Due       int64
	Sent      int64
	Committed int64
	LateP99   float64 // over the last complete second, ms
	Workers   int
}

// progress assembles the live view from the status, the workers' aggregate and the due counter
// (nil: due unknown, shown as -).
func progress(st *controller.Status, v *delivery.View, due *dueCounter, now time.Time) []Progress {
	types := map[string]bool{}
	for t := range st.Types {
		types[t] = true
	}
	var last *delivery.Point
	if v != nil {
		for t := range v.Types {
			types[t] = true
		}
		// The last second every worker has reported: a second ends, workers publish just after.
		for i := len(v.Series) - 1; i >= 0; i-- {
			if !v.Series[i].T.Add(delivery.Step).After(now.Add(-delivery.Step)) {
				last = &v.Series[i]
				break
			}
		}
	}
	var names []string
	for t := range types {
		names = append(names, t)
	}
	sort.Strings(names)
	var out []Progress
	for _, t := range names {
		p := Progress{Type: t, Committed: st.Types[t].Committed, Due: -1}
		if due != nil {
			p.Due = due.due(t, now)
		}
		if v != nil && v.Types[t] != nil {
			p.Sent = v.Types[t].Sent
		}
		if last != nil {
			p.LateP99 = last.Types[t].P99
			p.Workers = last.Types[t].Workers
		} else if v != nil {
			for _, w := range v.Workers {
				if w.Type == t && !w.Left {
					p.Workers++
				}
			}
		}
		out = append(out, p)
	}
	return out
}

func (p Progress) String() string {
	due := "-"
	if p.Due >= 0 {
		due = fmt.Sprint(p.Due)
	}
	return fmt.Sprintf("%-16s due %9s  sent %9d  committed %9d  late p99 (1s) %8.3fms  workers %3d", p.Type, due, p.Sent, p.Committed, p.LateP99, p.Workers)
}

// liveView prints progress: plain lines (one per type per update, prefixed with the time since
// start) when not a terminal; on a terminal, a block redrawn in place.
type liveView struct {
	w     io.Writer
	tty   bool
	lines int
}

func (l *liveView) show(elapsed time.Duration, stage string, ps []Progress) {
	head := fmt.Sprintf("t%+.0fs %s", elapsed.Seconds(), stage)
	if !l.tty {
		for _, p := range ps {
			fmt.Fprintf(l.w, "%s %s\n", head, p)
		}
		return
	}
	var b strings.Builder
	if l.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", l.lines)
	}
	fmt.Fprintf(&b, "\x1b[2K%s\n", head)
	for _, p := range ps {
		fmt.Fprintf(&b, "\x1b[2K  %s\n", p)
	}
	l.lines = 1 + len(ps)
	io.WriteString(l.w, b.String())
}
