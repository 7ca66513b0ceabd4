package run

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/sink"
	"github.com/simlab/simlab/simulator/worker"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeSource writes one source directory with n marked records at 10 ms steps.
func writeSource(t *testing.T, dir, typ, inst, config string, n int) {
	t.Helper()
	d := filepath.Join(dir, typ, inst)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	var recs []byte
	for i := range n {
		off := time.Duration(i) * 10 * time.Millisecond
		recs = dataset.AppendRecord(recs, off, dataset.AppendMark(nil, dataset.Mark{Source: typ + "/" + inst, Seq: i, Offset: off}))
	}
	if err := os.WriteFile(filepath.Join(d, "source.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "records"), recs, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUnsendableRecordsAreCountedNotSkipped: a source whose destination cannot be built (an SFTP
// source whose password variable is empty on the worker) next to a TCP source of the same type,
// played twice. Its records are counted as failed per source in /v1/status and in the worker's
// metric, the run still finishes (done), the TCP source's records are committed as sent, and the
// worker logs the broken source once, not once per record.
func TestUnsendableRecordsAreCountedNotSkipped(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	dir := filepath.Join(t.TempDir(), "ds")
	writeSource(t, dir, "mix", "ne1", `{"protocol": "tcp", "tcp": {"address": "127.0.0.1:1"}}`, 10)
	writeSource(t, dir, "mix", "ne2", `{"protocol": "sftp", "sftp": {"user": "ne2", "password_env": "SIMLAB_TEST_UNSET_PASSWORD"}}`, 20)
	os.Unsetenv("SIMLAB_TEST_UNSET_PASSWORD")
	e := newEnv(t, EnvOptions{})
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: e.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := worker.NewMetrics()
	e.AddWorker("mix", func(c *worker.Config) {
		c.Metrics, c.SFTPListen = m, "127.0.0.1:0"
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if _, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms", Repeat: true, Loops: 2}); err != nil {
		t.Fatal(err)
	}
	type typeStatus struct {
		Committed     int64            `json:"committed"`
		Failed        *int64           `json:"failed"`
		FailedSources map[string]int64 `json:"failed_sources"`
		Progress      float64          `json:"progress"`
	}
	var st struct {
		Done  bool                  `json:"done"`
		Types map[string]typeStatus `json:"types"`
	}
	waitFor(t, ctx, 50*time.Millisecond, func() bool {
		resp, err := http.Get(e.URL + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		ts := st.Types["mix"]
		return st.Done || (ts.Failed != nil && *ts.Failed == 40 && ts.Committed == 20)
	}, func() string { return fmt.Sprintf("run never finished: %+v", st) })
	ts := st.Types["mix"]
	if ts.Failed == nil || *ts.Failed != 40 || ts.FailedSources["ne2"] != 40 || len(ts.FailedSources) != 1 {
		t.Errorf("status: want 40 failed records, all of ne2 (2 loops × 20), got failed %v, failed_sources %v", ts.Failed, ts.FailedSources)
	}
	if ts.Committed != 20 || ts.Progress != 1 {
		t.Errorf("status: want ne1's 20 sends committed and progress 1, got committed %d progress %v", ts.Committed, ts.Progress)
	}
	if e.Sink.Total() != 20 {
		t.Errorf("sink received %d records, want ne1's 20", e.Sink.Total())
	}
	var metric float64
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "simulator_worker_records_failed_total" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["source"] == "ne2" && labels["reason"] == "sftp_unavailable" {
				metric += mm.GetCounter().GetValue()
			}
		}
	}
	if metric != 40 {
		t.Errorf("simulator_worker_records_failed_total{source=ne2,reason=sftp_unavailable} = %v, want 40", metric)
	}
	// The report (simulator sink / run) says which of the lost records failed at the workers.
	cst, err := e.Controller.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := e.Sink.Report(sink.Expectation{Sources: map[string]int{"mix/ne1": 10, "mix/ne2": 20}, Start: cst.StartTime, Span: time.Second, Loops: 2})
	rep.FailedAtWorkers = FailedSources(cst)
	var out strings.Builder
	PrintReport(&out, rep)
	if rep.FailedAtWorkers["mix/ne2"] != 40 || rep.Total.Lost != 40 || !strings.Contains(out.String(), "40 failed at the workers") ||
		!strings.Contains(out.String(), "mix/ne2: 40") {
		t.Errorf("report: failed_at_workers %v, lost %d, want 40 of ne2:\n%s", rep.FailedAtWorkers, rep.Total.Lost, out.String())
	}
	if n := strings.Count(logs.String(), "source cannot be sent"); n != 1 {
		t.Errorf("want exactly one log line for the broken source, got %d:\n%s", n, logs.String())
	}
}
