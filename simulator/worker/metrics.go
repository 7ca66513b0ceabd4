package worker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Metrics are the worker's Prometheus metrics.
type Metrics struct {
	Registry   *prometheus.Registry
	sent       prometheus.Counter
	late       prometheus.Counter
	lateness   prometheus.Histogram
	acked      prometheus.Counter
	pullDelay  prometheus.Histogram
	assigned   prometheus.Gauge
	rebalances prometheus.Counter
	commits    prometheus.Counter
	connects   prometheus.Counter
	sendErrors prometheus.Counter
	resent     prometheus.Counter
	failed     *prometheus.CounterVec
	fdLimit    prometheus.Gauge
	fdNeeded   prometheus.Gauge
	refused    prometheus.Counter
}

// NewMetrics registers the worker's metrics in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(),
		sent:     prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_records_sent_total", Help: "Records written to the SUT."}),
		late:     prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_records_late_total", Help: "Records written more than 10 ms after their due time."}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "simulator_worker_lateness_seconds", Help: "Due time to write completed, at the worker.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_records_acked_total",
			Help: "Records acknowledged: TCP: the write completed; SFTP: the SUT pulled the file for the first time."}),
		pullDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "simulator_worker_sftp_pull_delay_seconds",
			Help: "SFTP: file published to first pulled by the SUT.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		assigned:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "simulator_worker_assigned_partitions", Help: "Partitions (sources, with per-source partitioning) assigned to this worker."}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_rebalances_total", Help: "Assignments, revocations and losses."}),
		commits:    prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_commits_total", Help: "Successful offset commits."}),
		connects:   prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_sut_connects_total", Help: "TCP connections opened to the SUT."}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_send_errors_total", Help: "Failed writes or dials to the SUT."}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_records_resent_total",
			Help: "Records written again after their connection failed before the SUT could have read them: each is a possible duplicate at the SUT."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "simulator_worker_records_failed_total",
			Help: "Records not sent because their source's destination cannot be built, by source and reason."}, []string{"source", "reason"}),
		fdLimit: prometheus.NewGauge(prometheus.GaugeOpts{Name: "simulator_worker_open_files_limit", Help: "The open-files limit (soft RLIMIT_NOFILE, raised to the hard limit at start) the worker plans with."}),
		fdNeeded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "simulator_worker_open_files_needed",
			Help: "Open files the current assignment needs: one per assigned TCP source plus a reserve."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "simulator_worker_assignments_refused_total",
			Help: "Runs in which the worker refused its assignment because it needed more open files than the limit."}),
	}
	m.Registry.MustRegister(m.sent, m.late, m.lateness, m.acked, m.pullDelay, m.assigned, m.rebalances, m.commits, m.connects, m.sendErrors, m.resent, m.failed, m.fdLimit, m.fdNeeded, m.refused,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func errCode(c int16) error {
	if err := kerr.ErrorForCode(c); err != nil {
		return err
	}
	return fmt.Errorf("error code %d", c)
}
