package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/sink"
	"github.com/simlab/simlab/simulator/state"
	"github.com/simlab/simlab/simulator/worker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// gen writes a dataset and loads it for expectations.
func gen(t *testing.T, o dataset.GenOptions) (string, *dataset.Dataset) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ds")
	if err := dataset.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, d
}

func small(types, sources, records int, span time.Duration) dataset.GenOptions {
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span = types, sources, records, span
	return o
}

func newEnv(t *testing.T, o EnvOptions) *Env {
	t.Helper()
	e, err := NewEnv(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitReceived polls the sink until it holds at least n records.
// waitFor checks done every interval until it holds; when ctx ends first it fails the test
// with failure().
func waitFor(t *testing.T, ctx context.Context, every time.Duration, done func() bool, failure func() string) {
	t.Helper()
	for !done() {
		select {
		case <-ctx.Done():
			t.Fatal(failure())
		case <-time.After(every):
		}
	}
}

func waitReceived(t *testing.T, ctx context.Context, e *Env, n int64) {
	t.Helper()
	waitFor(t, ctx, 20*time.Millisecond, func() bool { return e.Sink.Total() >= n },
		func() string { return fmt.Sprintf("sink has %d of %d records", e.Sink.Total(), n) })
}

// finish waits for every record to be received and committed, and returns the sink's report.
func finish(t *testing.T, ctx context.Context, e *Env, d *dataset.Dataset, st state.Stage) *sink.Report {
	t.Helper()
	loops := st.LoopCount()
	want := map[string]int64{}
	for _, s := range d.Sources {
		want[s.Type] += int64(len(s.Records) * loops)
	}
	waitReceived(t, ctx, e, int64(d.RecordCount()*loops))
	if err := e.WaitCommitted(ctx, want); err != nil {
		t.Fatal(err)
	}
	return e.Sink.Report(sink.Expectation{Sources: sink.ExpectDataset(d), Start: st.StartTime, Span: d.Span, Loops: loops})
}

func checkReport(t *testing.T, r *sink.Report, wantExpected int64, maxDup int64) {
	t.Helper()
	tot := r.Total
	if tot.Expected != wantExpected || tot.Received != wantExpected || tot.Lost != 0 || tot.Early != 0 || tot.Duplicated > maxDup || r.Unknown != 0 || r.Unparsed != 0 {
		t.Fatalf("report: expected %d received %d lost %d early %d dup %d (max %d) unknown %d unparsed %d",
			tot.Expected, tot.Received, tot.Lost, tot.Early, tot.Duplicated, maxDup, r.Unknown, r.Unparsed)
	}
}

func TestExactCountsNoEarlySend(t *testing.T) {
	for _, part := range []string{controller.PerSource, controller.Keyed} {
		t.Run(part, func(t *testing.T) {
			dir, d := gen(t, small(2, 4, 40, 1500*time.Millisecond))
			e := newEnv(t, EnvOptions{})
			ctx := ctxFor(t, 60*time.Second)
			if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{Partitioning: part, Partitions: 3, AddressOverride: e.Sink.Addr()}); err != nil {
				t.Fatal(err)
			}
			for _, typ := range d.Types() {
				e.AddWorker(typ, nil)
			}
			st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, finish(t, ctx, e, d, st), int64(d.RecordCount()), 0)
			status, err := e.Controller.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !status.Done || status.Stage != "running" {
				t.Errorf("a finished run must report done (stage running), got done=%v stage %s", status.Done, status.Stage)
			}
			for typ, ts := range status.Types {
				if ts.Progress != 1 || ts.Committed != 160 {
					t.Errorf("%s: progress %v committed %d, want 1 and 160", typ, ts.Progress, ts.Committed)
				}
			}
		})
	}
}

func TestLoadIsIdempotent(t *testing.T) {
	dir, d := gen(t, small(1, 3, 20, time.Second))
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 30*time.Second)
	r1, err := e.Controller.Load(ctx, dir, controller.LoadRequest{})
	if err != nil || r1.Unchanged {
		t.Fatalf("first load: %+v %v", r1, err)
	}
	r2, err := e.Controller.Load(ctx, dir, controller.LoadRequest{})
	if err != nil || !r2.Unchanged {
		t.Fatalf("second load: %+v %v", r2, err)
	}
	if n := topicRecords(t, ctx, e, "type1"); n != int64(d.RecordCount()) {
		t.Fatalf("topic holds %d records, want %d", n, d.RecordCount())
	}
}

func topicRecords(t *testing.T, ctx context.Context, e *Env, typ string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, e.Names.RecordsTopic(typ))
	if err != nil {
		t.Fatal(err)
	}
	starts, err := adm.ListStartOffsets(ctx, e.Names.RecordsTopic(typ))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			s, _ := starts.Lookup(o.Topic, o.Partition)
			n += o.Offset - s.Offset
		}
	})
	return n
}

func TestMalformedDatasetLoadsNothing(t *testing.T) {
	dir, _ := gen(t, small(2, 2, 10, time.Second))
	bad := filepath.Join(dir, "type2", "ne00002", "records")
	f, err := os.OpenFile(bad, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("@soon 3\nabc\n")
	f.Close()
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 30*time.Second)
	_, err = e.Controller.Load(ctx, dir, controller.LoadRequest{})
	var ve *dataset.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].File != "type2/ne00002/records" || ve.Problems[0].Line != 21 {
		t.Fatalf("want one problem at type2/ne00002/records:21, got %v", err)
	}
	if st := e.Controller.Reader().Stage(); st.Stage != state.StageEmpty {
		t.Fatalf("stage %s after a bad load", st.Stage)
	}
	cl, _ := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"type1", "type2"} {
		if topics.Has(e.Names.RecordsTopic(typ)) {
			t.Errorf("topic for %s exists after a refused load", typ)
		}
	}
}

// A load that names no address_override sends every TCP source to the controller's SUT address
// (the chart's sut.address), not to the dataset's own addresses (nothing listens there).
func TestControllerSendsToItsSUTByDefault(t *testing.T) {
	dir, d := gen(t, small(1, 3, 20, 2*time.Second))
	e := newEnv(t, EnvOptions{SinkIsTheSUT: true})
	ctx := ctxFor(t, 60*time.Second)
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{}); err != nil {
		t.Fatal(err)
	}
	e.AddWorker("type1", nil)
	st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, finish(t, ctx, e, d, st), int64(d.RecordCount()), 0)
}

func TestScaleOneToThreeToOne(t *testing.T) {
	dir, d := gen(t, small(1, 12, 60, 4*time.Second))
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 90*time.Second)
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: e.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	e.AddWorker("type1", nil)
	if err := e.WaitGroupMembers(ctx, "type1", 0); err != nil {
		t.Fatal(err)
	}
	st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	total := int64(d.RecordCount())
	waitReceived(t, ctx, e, total/5)
	w2, w3 := e.AddWorker("type1", nil), e.AddWorker("type1", nil)
	if err := e.WaitGroupMembers(ctx, "type1", 3); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, ctx, e, total*3/5)
	e.StopWorker(w2)
	e.StopWorker(w3)
	if err := e.WaitGroupMembers(ctx, "type1", 1); err != nil {
		t.Fatal(err)
	}
	checkReport(t, finish(t, ctx, e, d, st), total, 0)
}

// A worker that stops (an HPA scale-in) while it still hands partitions over to a member that
// just joined writes what falls due before their cutovers first: the new owner starts there.
func TestScaleInDuringAHandoverLosesNothing(t *testing.T) {
	dir, d := gen(t, small(1, 8, 80, 8*time.Second))
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 90*time.Second)
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: e.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	first := e.AddWorker("type1", nil)
	if err := e.WaitGroupMembers(ctx, "type1", 0); err != nil {
		t.Fatal(err)
	}
	st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	total := int64(d.RecordCount())
	waitReceived(t, ctx, e, total/8)
	e.AddWorker("type1", nil)
	waitFor(t, ctx, time.Millisecond, func() bool { return e.Worker(first).HandoversInProgress() > 0 },
		func() string { return "the first worker never handed a partition over" })
	e.StopWorker(first)
	checkReport(t, finish(t, ctx, e, d, st), total, 0)
}

func TestSUTRestartMidRun(t *testing.T) {
	dir, d := gen(t, small(1, 5, 60, 3*time.Second))
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 60*time.Second)
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: e.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	m := worker.NewMetrics()
	e.AddWorker("type1", func(c *worker.Config) { c.Metrics = m })
	st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	waitReceived(t, ctx, e, int64(d.RecordCount())/3)
	if err := e.Sink.Restart(); err != nil {
		t.Fatal(err)
	}
	// A restart may lose what sat in socket buffers; the worker re-sends, on each broken
	// connection, what the SUT may not have read, and counts it. So every record arrives at least
	// once, none early, and the duplicates are at most the re-sent records.
	rep := finish(t, ctx, e, d, st)
	bound := counterValue(t, m, "simulator_worker_records_resent_total")
	t.Logf("SUT restart: %d duplicates (%d re-sent)", rep.Total.Duplicated, bound)
	checkReport(t, rep, int64(d.RecordCount()), bound)
}

// counterValue reads a counter of a worker's metrics.
func counterValue(t *testing.T, m *worker.Metrics, name string) int64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			var v float64
			for _, mt := range f.GetMetric() {
				v += mt.GetCounter().GetValue()
			}
			return int64(v)
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestRepeatLoopsTiming(t *testing.T) {
	o := small(1, 3, 10, 700*time.Millisecond)
	dir, d := gen(t, o)
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 60*time.Second)
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: e.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	e.AddWorker("type1", func(c *worker.Config) { c.Lookahead = 300 * time.Millisecond })
	st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms", Repeat: true, Loops: 3})
	if err != nil {
		t.Fatal(err)
	}
	rep := finish(t, ctx, e, d, st)
	checkReport(t, rep, int64(3*d.RecordCount()), 0)
	// The last loop's records cannot have arrived before start + 2 × span.
	if first := e.Sink.CountBetween(time.Unix(0, 0), st.StartTime); first != 0 {
		t.Fatalf("%d records before the start", first)
	}
	late := e.Sink.CountBetween(st.StartTime.Add(2*d.Span), time.Now())
	if late < d.RecordCount() {
		t.Fatalf("only %d records after start + 2 spans, want >= %d (loop 3)", late, d.RecordCount())
	}
}

func TestStopHaltsSends(t *testing.T) {
	dir, d := gen(t, small(1, 4, 400, 20*time.Second))
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 60*time.Second)
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: e.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	e.AddWorker("type1", nil)
	if _, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "200ms"}); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, ctx, e, 40)
	stopped := time.Now()
	if _, err := e.Controller.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitGroupMembers(ctx, "type1", 0); err != nil {
		t.Fatal(err)
	}
	if got := e.Sink.Total(); got >= int64(d.RecordCount()) {
		t.Fatalf("everything was sent (%d) although the run was stopped", got)
	}
	if last := e.Sink.LastReceipt(); last.After(stopped.Add(time.Second)) {
		t.Fatalf("a record arrived %s after stop", last.Sub(stopped))
	}
}

// Loading a new dataset into types whose topics already exist with the right
// partition count must reuse the topics (an operator such as Strimzi may own
// them), purge the old records, and replay only the new ones.
func TestReloadReusesTopicsAndReplaysOnlyNewRecords(t *testing.T) {
	dirA, dA := gen(t, small(1, 3, 20, time.Second))
	dirB, dB := gen(t, small(1, 3, 30, time.Second))
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 60*time.Second)
	if _, err := e.Controller.Load(ctx, dirA, controller.LoadRequest{AddressOverride: e.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	if n := topicRecords(t, ctx, e, "type1"); n != int64(dA.RecordCount()) {
		t.Fatalf("after first load the topic holds %d records, want %d", n, dA.RecordCount())
	}
	r, err := e.Controller.Load(ctx, dirB, controller.LoadRequest{AddressOverride: e.Sink.Addr()})
	if err != nil || r.Unchanged {
		t.Fatalf("second load: %+v %v", r, err)
	}
	if n := topicRecords(t, ctx, e, "type1"); n != int64(dB.RecordCount()) {
		t.Fatalf("after reload the topic holds %d live records, want only the new %d", n, dB.RecordCount())
	}
	// A recreated topic would start at offset 0 again; a reused one keeps counting.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	starts, err := kadm.NewClient(cl).ListStartOffsets(ctx, e.Names.RecordsTopic("type1"))
	if err != nil {
		t.Fatal(err)
	}
	var purged int64
	starts.Each(func(o kadm.ListedOffset) { purged += o.Offset })
	if purged != int64(dA.RecordCount()) {
		t.Fatalf("start offsets sum to %d, want %d (the first dataset purged, topic reused)", purged, dA.RecordCount())
	}
	e.AddWorker("type1", nil)
	st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, finish(t, ctx, e, dB, st), int64(dB.RecordCount()), 0)
}
