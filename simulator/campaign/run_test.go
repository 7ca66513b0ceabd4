package campaign

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/run"
)

// inProcess starts a broker, the controller (dataset root "/") and one worker per type in this
// process, and writes a dataset whose records span span.
func inProcess(t *testing.T, span time.Duration) (*run.Env, string, *dataset.Dataset) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ds")
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span = 2, 3, 40, span
	if err := dataset.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	ds, err := dataset.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	env, err := run.NewEnv(run.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	for _, typ := range ds.Types() {
		env.AddWorker(typ, nil)
	}
	return env, dir, ds
}

// runAsync runs a campaign in the background; the returned function waits for its result.
func runAsync(o Options) func() (*Outcome, error) {
	type res struct {
		o   *Outcome
		err error
	}
	ch := make(chan res, 1)
	go func() { out, err := Run(context.Background(), o); ch <- res{out, err} }()
	return func() (*Outcome, error) { r := <-ch; return r.o, r.err }
}

// waitSent waits until a run other than not has records sent, and returns its id.
func waitSent(t *testing.T, ctx context.Context, url, not string) string {
	t.Helper()
	c := NewClient(url)
	for {
		if st, err := c.Status(ctx); err == nil && st.RunID != "" && st.RunID != not {
			if v, err := c.Delivery(ctx, st.RunID, false); err == nil && v != nil && v.Totals.Sent > 0 {
				return st.RunID
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no records sent")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ctrl-C on a terminal asks; "d" detaches and leaves the run going, the default stops it and
// writes the report with what was due until the stop.
func TestInterruptDetachOrStop(t *testing.T) {
	env, dir, ds := inProcess(t, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out := t.TempDir()
	sigs := make(chan os.Signal, 1)
	var w lockedBuffer
	opts := Options{Controller: env.URL, Dataset: dir, DatasetPath: strings.TrimPrefix(dir, "/"), SUTAddress: env.Sink.Addr(),
		StartIn: 200 * time.Millisecond, Out: out, Interval: 100 * time.Millisecond, Settle: 20 * time.Second,
		W: &w, TTY: true, Stdin: strings.NewReader("d\n"), Signals: sigs}
	wait := runAsync(opts)
	runID := waitSent(t, ctx, env.URL, "")
	sigs <- os.Interrupt
	o, err := wait()
	if err != nil || o == nil || !o.Detached {
		t.Fatalf("detach: %+v %v", o, err)
	}
	if st, err := NewClient(env.URL).Status(ctx); err != nil || st.Stage != "running" || st.RunID != runID {
		t.Fatalf("after detaching the run must go on: %+v %v", st, err)
	}
	if !strings.Contains(w.String(), "stop the run (s) or detach") || !strings.Contains(w.String(), "detached; run "+runID) {
		t.Errorf("output:\n%s", w.String())
	}
	if _, err := NewClient(env.URL).Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// Again, answering with Enter (stop).
	opts.Stdin = strings.NewReader("\n")
	wait = runAsync(opts)
	first := runID
	runID = waitSent(t, ctx, env.URL, first)
	sigs <- os.Interrupt
	o, err = wait()
	if err != nil || o == nil || o.Detached || o.Report.RunID != runID {
		t.Fatalf("stop: %+v %v", o, err)
	}
	r := o.Report
	if r.StoppedAt.IsZero() || r.Totals.Expected >= int64(ds.RecordCount()) || r.Totals.Expected == 0 {
		t.Errorf("a run stopped early expects the records due before the stop: expected %d of %d, stopped %v", r.Totals.Expected, ds.RecordCount(), r.StoppedAt)
	}
	if st, _ := NewClient(env.URL).Status(ctx); st.Stage != "stopped" {
		t.Errorf("stage %s after stopping", st.Stage)
	}
	if _, err := os.Stat(o.HTMLPath); err != nil {
		t.Error(err)
	}
}

// An abort-on-fail threshold stops the run as soon as it is violated: exit 1, the report written.
func TestAbortOnFail(t *testing.T) {
	env, dir, ds := inProcess(t, 20*time.Second)
	th := filepath.Join(t.TempDir(), "th.txt")
	os.WriteFile(th, []byte("lost == 0\nlate_max < 0ms abort-on-fail\n"), 0o644)
	var w lockedBuffer
	o, err := Run(context.Background(), Options{Controller: env.URL, Dataset: dir, DatasetPath: strings.TrimPrefix(dir, "/"),
		SUTAddress: env.Sink.Addr(), StartIn: 200 * time.Millisecond, Thresholds: th, Out: t.TempDir(), Interval: 100 * time.Millisecond,
		Settle: 20 * time.Second, W: &w})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(err.Error(), "aborted by an abort-on-fail threshold: late_max < 0ms abort-on-fail (line 2): VIOLATED, measured ") {
		t.Fatalf("got %v\n%s", err, w.String())
	}
	if o == nil || o.Report.StoppedAt.IsZero() || o.Report.Totals.Expected >= int64(ds.RecordCount()) || o.Report.Verdict != "fail" {
		t.Fatalf("report of the aborted run: %+v", o)
	}
}
