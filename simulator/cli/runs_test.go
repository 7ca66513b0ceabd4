package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/run"
	"github.com/simlab/simlab/simulator/sink"
)

// markedDataset writes type t with the given instances, each with marked records at offsets, and
// dataset.json's span (0: the default).
func markedDataset(t *testing.T, span time.Duration, insts []string, offs ...time.Duration) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ds")
	if span > 0 {
		meta := fmt.Sprintf(`{"span": %q}`, span.String())
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, dataset.MetaFile), []byte(meta), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, inst := range insts {
		sdir := filepath.Join(dir, "t", inst)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := `{"protocol": "tcp", "framing": "newline", "tcp": {"address": "127.0.0.1:9"}}`
		if err := os.WriteFile(filepath.Join(sdir, dataset.ConfigFile), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		var buf []byte
		for i, off := range offs {
			buf = dataset.AppendRecord(buf, off, dataset.AppendMark(nil, dataset.Mark{Source: "t/" + inst, Seq: i, Offset: off}))
		}
		if err := os.WriteFile(filepath.Join(sdir, dataset.RecordsFile), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dataset.Load(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runsReport is the report as JSON, with the per-run part decoded here so the test builds on a
// Report without it.
type runsReport struct {
	sink.Report
	Runs []struct {
		ID         string `json:"run_id"`
		LoopsDue   int64  `json:"loops_due"`
		Expected   int64  `json:"expected"`
		Received   int64  `json:"received"`
		Duplicated int64  `json:"duplicated"`
		Early      int64  `json:"early"`
	} `json:"runs"`
}

// sinkAgainst starts an in-process broker, controller and one worker of type t, and `simulator
// sink` as a process with --controller-url; it returns the env and a function that stops the sink
// and returns its report.
func sinkAgainst(t *testing.T, ctx context.Context, dir string) (*run.Env, func() (runsReport, []byte)) {
	env, _, _, stop := sinkAgainstOut(t, ctx, dir)
	return env, stop
}

// lockedBuffer is an output buffer a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sinkAgainstOut is sinkAgainst that also returns a function closing the env (once) and the sink's
// output.
func sinkAgainstOut(t *testing.T, ctx context.Context, dir string) (*run.Env, func(), *lockedBuffer, func() (runsReport, []byte)) {
	t.Helper()
	env, err := run.NewEnv(run.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeEnv := func() { once.Do(env.Close) }
	t.Cleanup(closeEnv)
	addr := freeAddr(t)
	report := filepath.Join(t.TempDir(), "sink.json")
	cmd := exec.Command(os.Args[0], "sink", "--listen", addr, "--dataset", dir, "--controller-url", env.URL, "--report", report)
	cmd.Env = append(os.Environ(), "SIMULATOR_TEST_AS_MAIN=1")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitTCP(t, ctx, addr)
	if _, err := env.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: addr}); err != nil {
		t.Fatal(err)
	}
	env.AddWorker("t", nil)
	return env, closeEnv, out, func() (runsReport, []byte) {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Logf("sink: %v\n%s", err, out.String())
		}
		b, err := os.ReadFile(report)
		if err != nil {
			t.Fatalf("no report: %v\n%s", err, out.String())
		}
		var rep runsReport
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		return rep, b
	}
}

// waitStatus polls the controller until cond holds.
func waitStatus(t *testing.T, ctx context.Context, env *run.Env, what string, cond func(*controller.Status) bool) {
	t.Helper()
	for {
		st, err := env.Controller.Status(ctx)
		if err == nil && cond(st) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last status %+v)", what, ctx.Err(), st)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestSinkCountsStartStopStartAsTwoRuns starts a run, stops it once its first records (offsets
// 0-200 ms) are committed and long before its last ones (3 s), and starts a second run that plays
// everything: the sink, learning both runs from the controller, counts run 1's records in run 1
// and run 2's in run 2: nothing early, nothing duplicated, nothing lost, 6 + 10 received.
func TestSinkCountsStartStopStartAsTwoRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ms := time.Millisecond
	dir := markedDataset(t, 0, []string{"a", "b"}, 0, 100*ms, 200*ms, 3000*ms, 3100*ms)
	env, stopSink := sinkAgainst(t, ctx, dir)
	if _, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "500ms"}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ctx, env, "run 1's first 6 records committed", func(st *controller.Status) bool { return st.Types["t"].Committed >= 6 })
	if _, err := env.Controller.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := env.Controller.Status(ctx); st.Types["t"].Committed != 6 {
		t.Fatalf("run 1 committed %d records before the stop, want the first 6 only", st.Types["t"].Committed)
	}
	if _, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "500ms"}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ctx, env, "run 2 done", func(st *controller.Status) bool { return st.Done })
	rep, b := stopSink()
	if rep.Total.Expected != 16 || rep.Total.Received != 16 || rep.Total.Lost != 0 || rep.Total.Duplicated != 0 || rep.Total.Early != 0 {
		t.Errorf("want 16 expected and received, 0 lost, duplicated, early; report %s", b)
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Received != 6 || rep.Runs[1].Received != 10 {
		t.Errorf("want two runs receiving 6 and 10; report %s", b)
	}
}

// TestSinkCountsRepeatLoopsApart plays a dataset in repeat mode with loops 0 (until stopped) for
// at least 3 loops: the sink counts each loop's records apart, none as duplicates or early, all
// received; the run's loops_due covers the loops played.
func TestSinkCountsRepeatLoopsApart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ms := time.Millisecond
	dir := markedDataset(t, 500*ms, []string{"a", "b"}, 0, 100*ms, 200*ms)
	env, stopSink := sinkAgainst(t, ctx, dir)
	if _, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "500ms", Repeat: true, Loops: 0}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ctx, env, "3 loops committed", func(st *controller.Status) bool { return st.Types["t"].Committed >= 18 })
	if _, err := env.Controller.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := env.Controller.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep, b := stopSink()
	if rep.Total.Duplicated != 0 || rep.Total.Early != 0 || rep.Total.Received < st.Types["t"].Committed || rep.Total.Received != rep.Total.Expected-rep.Total.Lost {
		t.Errorf("want 0 duplicated, 0 early, at least the %d committed received; report %s", st.Types["t"].Committed, b)
	}
	if len(rep.Runs) != 1 || rep.Runs[0].LoopsDue < 3 {
		t.Errorf("want one run with at least 3 loops due; report %s", b)
	}
}

// TestSinkReportsFromTheLastStatusWhenTheControllerIsGoneAtStop plays a run with the controller
// reachable, then takes the controller down before the sink stops: the report is still computed
// against that run (from the last status the sink saw: every record received, none early,
// lateness measured), only failed_at_workers is named as known only as of that status.
func TestSinkReportsFromTheLastStatusWhenTheControllerIsGoneAtStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ms := time.Millisecond
	dir := markedDataset(t, 0, []string{"a", "b"}, 0, 100*ms, 200*ms)
	env, closeEnv, out, stopSink := sinkAgainstOut(t, ctx, dir)
	st, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ctx, env, "run done", func(st *controller.Status) bool { return st.Done })
	for !strings.Contains(out.String(), "run "+st.RunID+" seen") {
		select {
		case <-ctx.Done():
			t.Fatalf("the sink never saw run %s:\n%s", st.RunID, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	closeEnv()
	rep, b := stopSink()
	if rep.Total.Expected != 6 || rep.Total.Received != 6 || rep.Total.Early != 0 || rep.Total.LateMaxms <= 0 {
		t.Errorf("want 6 expected and received, 0 early, lateness measured; report %s", b)
	}
	var un struct {
		Unavailable map[string]string `json:"unavailable"`
	}
	json.Unmarshal(b, &un)
	if _, ok := un.Unavailable["early"]; ok || !strings.Contains(un.Unavailable["failed_at_workers"], "as of") {
		t.Errorf("want early known and failed_at_workers known only as of the last status; unavailable %v", un.Unavailable)
	}
}
