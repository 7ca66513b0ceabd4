package run

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/delivery"
)

// waitDelivery polls the controller's delivery aggregate of a run until cond holds.
func waitDelivery(t *testing.T, ctx context.Context, e *Env, run, what string, cond func(*delivery.View) bool) *delivery.View {
	t.Helper()
	var v *delivery.View
	waitFor(t, ctx, 50*time.Millisecond, func() bool {
		v = e.Controller.Delivery(run, true)
		return v != nil && cond(v)
	}, func() string { return fmt.Sprintf("waiting for %s: %v (last %+v)", what, ctx.Err(), v) })
	return v
}

// The workers' own delivery counts, aggregated by the controller from the reports topic, equal
// what the sink received, per type and per source — including a worker that left mid-run.
func TestWorkerDeliveryTotalsMatchTheSink(t *testing.T) {
	dir, d := gen(t, small(2, 6, 40, 3*time.Second))
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 90*time.Second)
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: e.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	leaving := e.AddWorker("type1", nil)
	e.AddWorker("type1", nil)
	e.AddWorker("type2", nil)
	st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	// Once the leaving worker has reported records, it leaves (as on an HPA scale-in).
	waitDelivery(t, ctx, e, st.RunID, "the first worker's sends", func(v *delivery.View) bool {
		for _, w := range v.Workers {
			if w.ID == e.Worker(leaving).ID() && w.Sent > 0 {
				return true
			}
		}
		return false
	})
	e.StopWorker(leaving)
	rep := finish(t, ctx, e, d, st)
	checkReport(t, rep, int64(d.RecordCount()), 0)
	if _, err := e.Controller.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	v := waitDelivery(t, ctx, e, st.RunID, "every worker's final summary", func(v *delivery.View) bool {
		for _, w := range v.Workers {
			if !w.Left {
				return false
			}
		}
		return len(v.Workers) == 3
	})
	if v.Totals.Sent != rep.Total.Received || v.Totals.Acked != rep.Total.Received || v.Totals.Lateness.Count != rep.Total.Received {
		t.Errorf("workers: sent %d acked %d lateness count %d; the sink received %d", v.Totals.Sent, v.Totals.Acked, v.Totals.Lateness.Count, rep.Total.Received)
	}
	for typ, tr := range rep.Types {
		if tv := v.Types[typ]; tv == nil || tv.Sent != tr.Received {
			t.Errorf("%s: workers sent %+v, the sink received %d", typ, tv, tr.Received)
		}
	}
	for _, s := range d.Sources {
		sv := v.Types[s.Type].Sources[s.Instance]
		if sv == nil || sv.Sent != int64(len(s.Records)) {
			t.Errorf("%s: workers sent %+v, the dataset has %d", s.ID(), sv, len(s.Records))
		}
	}
	var left *delivery.WorkerInfo
	for i, w := range v.Workers {
		if w.ID == e.Worker(leaving).ID() {
			left = &v.Workers[i]
		}
	}
	if left == nil || left.Sent == 0 || !left.Last.Before(v.Updated) {
		t.Errorf("the worker that left mid-run: %+v (run updated %v)", left, v.Updated)
	}
	// A restarted controller rebuilds the run's aggregate from the reports topic.
	c2, err := controller.New(ctx, controller.Config{Brokers: e.Brokers, Names: e.Names, DatasetRoot: "/", Log: e.Log})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go c2.Run(cctx)
	var v2 *delivery.View
	waitFor(t, ctx, 50*time.Millisecond, func() bool {
		v2 = c2.Delivery(st.RunID, true)
		return v2 != nil && v2.Totals.Sent == v.Totals.Sent && len(v2.Workers) == 3 && len(v2.Series) == len(v.Series)
	}, func() string { return fmt.Sprintf("a new controller never rebuilt run %s: %+v", st.RunID, v2) })
	// The series covers the run, and sums to the totals.
	var sum int64
	for _, p := range v.Series {
		for _, pt := range p.Types {
			sum += pt.Sent
		}
	}
	if sum != v.Totals.Sent || len(v.Series) < 3 {
		t.Errorf("series: %d points summing to %d, totals %d", len(v.Series), sum, v.Totals.Sent)
	}
}
