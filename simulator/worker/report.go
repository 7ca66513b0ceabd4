package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/delivery"
	"github.com/simlab/simlab/simulator/sched"
	"github.com/twmb/franz-go/pkg/kgo"
)

// workerID names a worker in its summaries: its instance id (the pod name) and a random suffix,
// so a restarted pod is a new worker.
func workerID(instance string) string {
	b := make([]byte, 4)
	rand.Read(b)
	if instance == "" {
		instance = "worker"
	}
	return instance + "-" + hex.EncodeToString(b)
}

// ID is the worker's id in its delivery summaries.
func (w *Worker) ID() string { return w.id }

// hooksFor returns the scheduler hooks of one source's destination: the worker's metrics and the
// source's delivery counts. TCP records count as acknowledged when the write completed; SFTP
// records when the SUT first pulls the file (pulled).
func (w *Worker) hooksFor(instance, protocol string) *sched.Hooks {
	m := w.cfg.Metrics
	tcp := protocol == dataset.ProtoTCP
	rec := w.rec.Source(instance)
	return &sched.Hooks{
		Sent: func(it *sched.Item) {
			m.sent.Inc()
			late := time.Duration(it.Sent - it.Due)
			m.lateness.Observe(late.Seconds())
			if late > 10*time.Millisecond {
				m.late.Inc()
			}
			if tcp {
				m.acked.Inc()
			}
			rec.Sent(late, tcp)
		},
		Reconnect: func() { m.connects.Inc() },
		WriteErr:  func(error) { m.sendErrors.Inc() },
		Resent: func(n int) {
			m.resent.Add(float64(n))
			w.rec.Resent(instance, n)
		},
	}
}

// pulled is told by the SFTP server when the SUT first reads a published file.
func (w *Worker) pulled(user, _ string, published time.Time) {
	v, ok := w.sftpUsers.Load(user)
	if !ok {
		return
	}
	d := time.Since(published)
	w.cfg.Metrics.pullDelay.Observe(d.Seconds())
	w.cfg.Metrics.acked.Inc()
	w.rec.Pulled(v.(string), d)
}

// publishLoop publishes a summary at every multiple of ReportInterval until ctx ends.
func (w *Worker) publishLoop(ctx context.Context) {
	every := w.cfg.ReportInterval
	for {
		now := time.Now()
		next := now.Truncate(every).Add(every)
		select {
		case <-ctx.Done():
			return
		case <-time.After(next.Sub(now)):
		}
		w.publish(false)
	}
}

// publish sends the deltas since the last summary to the reports topic; a final summary (the
// worker leaves the run) waits until the broker has it.
func (w *Worker) publish(final bool) {
	if w.producer == nil {
		return
	}
	w.pubMu.Lock()
	defer w.pubMu.Unlock()
	n := w.seq.Add(1)
	s, ok := w.rec.Take(time.Now(), final || n%delivery.SourceEvery == 1)
	if !ok {
		return
	}
	s.Worker, s.Type, s.Seq, s.Final = w.id, w.cfg.Type, n, final
	if cur := w.cur.Load(); cur != nil {
		cur.mu.Lock()
		s.Partitions = len(cur.parts)
		cur.mu.Unlock()
	}
	parts, err := s.Encode(contract.ReportsTopicMaxMessageBytes - 1024)
	if err != nil {
		w.cfg.Log.Error("delivery summary not published", "run", s.Run, "err", err)
		return
	}
	recs := make([]*kgo.Record, len(parts))
	for i, b := range parts {
		recs[i] = &kgo.Record{Key: []byte(s.Run), Value: b}
	}
	if final {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			w.cfg.Log.Error("final delivery summary not published", "run", s.Run, "err", err)
		}
		return
	}
	for _, r := range recs {
		w.producer.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			if err != nil && !strings.Contains(err.Error(), "client closed") {
				w.cfg.Log.Warn("delivery summary not published", "run", s.Run, "err", err)
			}
		})
	}
}
