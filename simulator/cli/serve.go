package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/simulator/broker"
	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/limits"
	"github.com/simlab/simlab/simulator/run"
	"github.com/simlab/simlab/simulator/sink"
	"github.com/simlab/simlab/simulator/state"
	"github.com/simlab/simlab/simulator/worker"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

func brokerCmd() *cobra.Command {
	var listen, advertise string
	c := &cobra.Command{
		Use:   "broker",
		Short: "run the embedded Kafka-protocol broker (kfake, in memory) until interrupted",
		Long: `broker runs kfake, franz-go's in-memory Kafka-protocol broker, for local multi-process runs
(on 127.0.0.1) and as the rehearsal's stand-in for Kafka in a pod (--listen :9092 with
--advertise naming its Service). It is not Kafka: no persistence, no authentication, one node.`,
		Example: `  simulator broker                                   # 127.0.0.1:9092
  simulator broker --listen :9092 --advertise kafka.simulator.svc:9092`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := broker.StartAdvertised(listen, advertise)
			if err != nil {
				return err
			}
			defer b.Close()
			fmt.Fprintln(cmd.OutOrStdout(), broker.Announce(listen, b.Addrs()[0]))
			<-cmd.Context().Done()
			return nil
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:9092", "address to listen on (beyond 127.0.0.1 only with --advertise; port 0 picks one)")
	c.Flags().StringVar(&advertise, "advertise", "", "host:port clients are told to connect to (a Service's name in a cluster)")
	return c
}

func serveHTTP(ctx context.Context, addr string, h http.Handler) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}, nil
}

func controllerCmd() *cobra.Command {
	var lf logFlags
	var brokers, listen, root, prefix, part, sut string
	var keyed int
	c := &cobra.Command{
		Use:   "controller",
		Short: "run the controller: HTTP API, dataset loads, stage in the state topic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := envDefaults(cmd.Flags()); err != nil {
				return err
			}
			log, err := lf.logger()
			if err != nil {
				return err
			}
			bs := splitList(brokers)
			if len(bs) == 0 {
				return errors.New("--kafka-brokers (SIMULATOR_KAFKA_BROKERS) is required")
			}
			ctx := cmd.Context()
			ctl, err := controller.New(ctx, controller.Config{Brokers: bs, Names: state.Names{Prefix: prefix}, DatasetRoot: root,
				Partitioning: part, KeyedPartitions: keyed, SUTAddress: sut, Log: log})
			if err != nil {
				return err
			}
			defer ctl.Close()
			stop, err := serveHTTP(ctx, listen, ctl.Handler())
			if err != nil {
				return err
			}
			defer stop()
			log.Info("controller listening", "addr", listen, "brokers", bs)
			if err := ctl.Run(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&brokers, "kafka-brokers", "", "Kafka bootstrap servers, comma-separated (env SIMULATOR_KAFKA_BROKERS)")
	f.StringVar(&listen, "listen", ":8080", "HTTP address for the API, /metrics, /healthz, /readyz (env SIMULATOR_LISTEN)")
	f.StringVar(&root, "dataset-root", "/data", "directory that load paths are relative to (env SIMULATOR_DATASET_ROOT)")
	f.StringVar(&prefix, "topic-prefix", contract.DefaultTopicPrefix, "prefix of topics and groups (env SIMULATOR_TOPIC_PREFIX)")
	f.StringVar(&part, "partitioning", controller.PerSource, "per-source or keyed (env SIMULATOR_PARTITIONING)")
	f.IntVar(&keyed, "keyed-partitions", 32, "partitions per type topic with keyed partitioning (env SIMULATOR_KEYED_PARTITIONS)")
	f.StringVar(&sut, "sut-address", "", "host:port every TCP source of a load is sent to unless the load's address_override says otherwise; empty: each source's own address (env SIMULATOR_SUT_ADDRESS)")
	lf.add(f)
	return c
}

// handoverLead maps the flag (0: off) to worker.Config.HandoverLead (0: the default, negative: off).
func handoverLead(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// checkSpool creates the SFTP spool directory if needed and checks that the worker can write and
// rename files there (as publishing does).
func checkSpool(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("not writable by this worker: %w", err)
	}
	f.Close()
	defer os.Remove(f.Name())
	if err := os.Rename(f.Name(), f.Name()+".renamed"); err != nil {
		return fmt.Errorf("cannot rename files: %w", err)
	}
	return os.Remove(f.Name() + ".renamed")
}

func workerCmd() *cobra.Command {
	var lf logFlags
	var brokers, listen, sftpListen, prefix, typ, ctlURL string
	var commit, look, hb, sess time.Duration
	var noWait, useUring bool
	var quantum, lead time.Duration
	var hostKeyFile, cpuProfile, spool string
	c := &cobra.Command{
		Use:   "worker",
		Short: "run a worker of one data-source type",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := envDefaults(cmd.Flags()); err != nil {
				return err
			}
			log, err := lf.logger()
			if err != nil {
				return err
			}
			bs := splitList(brokers)
			switch {
			case len(bs) == 0:
				return errors.New("--kafka-brokers (SIMULATOR_KAFKA_BROKERS) is required")
			case typ == "":
				return errors.New("--type (SIMULATOR_TYPE) is required")
			case ctlURL == "":
				return errors.New("--controller-url (SIMULATOR_CONTROLLER_URL) is required")
			}
			host, _ := os.Hostname()
			var hostKey []byte
			if hostKeyFile != "" {
				if hostKey, err = os.ReadFile(hostKeyFile); err != nil {
					return fmt.Errorf("--sftp-host-key-file: %w", err)
				}
				// Checked at start, not at the first sftp source; the fingerprint is what the SUT's
				// known_hosts must hold, the same across restarts.
				signer, err := ssh.ParsePrivateKey(hostKey)
				if err != nil {
					return fmt.Errorf("--sftp-host-key-file %s: %w", hostKeyFile, err)
				}
				log.Info("sftp host key", "fingerprint", ssh.FingerprintSHA256(signer.PublicKey()), "file", hostKeyFile)
			}
			if spool != "" {
				// Checked at start: a spool the worker cannot write to would fail every
				// sftp record later; the pod's log names it at once.
				if err := checkSpool(spool); err != nil {
					return fmt.Errorf("--sftp-spool %s: %w", spool, err)
				}
			}
			fdLimit, ferr := limits.RaiseNoFile()
			if ferr != nil {
				log.Warn("open-files limit", "err", ferr)
			}
			m := worker.NewMetrics()
			w := worker.New(worker.Config{FDLimit: fdLimit, Brokers: bs, Names: state.Names{Prefix: prefix}, Type: typ, ControllerURL: ctlURL,
				CommitInterval: commit, Lookahead: look, Log: log.With("type", typ), Metrics: m, InstanceID: host, NoWait: noWait, HeartbeatInterval: hb, SessionTimeout: sess,
				SFTPListen: sftpListen, SFTPHostKey: hostKey, SFTPSpool: spool, NoUring: !useUring, Quantum: quantum, HandoverLead: handoverLead(lead)})
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
			mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("ok\n")) })
			mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
				if ok, why := w.Readiness(); !ok {
					http.Error(rw, why, http.StatusServiceUnavailable)
					return
				}
				rw.Write([]byte("ok\n"))
			})
			stop, err := serveHTTP(cmd.Context(), listen, mux)
			if err != nil {
				return err
			}
			defer stop()
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				pprof.StartCPUProfile(pf)
				defer pprof.StopCPUProfile()
			}
			log.Info("worker started", "type", typ, "listen", listen, "brokers", bs, "open_files_limit", fdLimit, "send_path", w.SendPath())
			return w.Run(cmd.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&brokers, "kafka-brokers", "", "Kafka bootstrap servers, comma-separated (env SIMULATOR_KAFKA_BROKERS)")
	f.StringVar(&typ, "type", "", "data-source type to replay (env SIMULATOR_TYPE)")
	f.StringVar(&ctlURL, "controller-url", "", "controller base URL (env SIMULATOR_CONTROLLER_URL)")
	f.StringVar(&listen, "listen", ":8081", "HTTP address for /metrics, /healthz, /readyz (env SIMULATOR_LISTEN)")
	f.StringVar(&sftpListen, "sftp-listen", ":2222", "SFTP address for sftp sources, opened on first use (at a run's start with --sftp-spool) (env SIMULATOR_SFTP_LISTEN)")
	f.StringVar(&hostKeyFile, "sftp-host-key-file", "", "PEM private host key for the SFTP server; default: a fresh ed25519 key (env SIMULATOR_SFTP_HOST_KEY_FILE)")
	f.StringVar(&spool, "sftp-spool", "", "directory shared by every worker of the type (a ReadWriteMany volume) where sftp sources' files are published and served from, so any worker serves every sftp source and a worker's death loses no file; empty: in memory, one worker per sftp type (env SIMULATOR_SFTP_SPOOL)")
	f.StringVar(&prefix, "topic-prefix", contract.DefaultTopicPrefix, "prefix of topics and groups (env SIMULATOR_TOPIC_PREFIX)")
	f.DurationVar(&commit, "commit-interval", 200*time.Millisecond, "commit period (env SIMULATOR_COMMIT_INTERVAL)")
	f.DurationVar(&look, "lookahead", 5*time.Second, "fetch at most this far ahead of due time (env SIMULATOR_LOOKAHEAD)")
	f.DurationVar(&hb, "heartbeat-interval", 200*time.Millisecond, "group heartbeat; bounds how fast a rebalance starts (env SIMULATOR_HEARTBEAT_INTERVAL)")
	f.DurationVar(&sess, "session-timeout", 6*time.Second, "a crashed worker's partitions move after this (env SIMULATOR_SESSION_TIMEOUT)")
	f.BoolVar(&useUring, "io-uring", true, "submit the sends falling due together in one io_uring_enter where io_uring works; false: one write(2) per connection (env SIMULATOR_IO_URING)")
	f.DurationVar(&quantum, "dispatch-quantum", 500*time.Microsecond, "shortest time between two dispatches: records due within it go out together, up to this much later (env SIMULATOR_DISPATCH_QUANTUM)")
	f.DurationVar(&lead, "handover-lead", time.Second, "on a revoke keep writing the records due within this while the new owner gets ready; it writes from there on (0: stop at revoke) (env SIMULATOR_HANDOVER_LEAD)")
	f.BoolVar(&noWait, "no-wait", false, "benchmark only: send records as soon as fetched, ignoring due times")
	f.MarkHidden("no-wait")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile here (benchmarks)")
	f.MarkHidden("cpu-profile")
	lf.add(f)
	return c
}

func sinkCmd() *cobra.Command {
	var listen, framing, dsDir, ctlURL, report, pwEnv, keyFile string
	var pulls []string
	var pullEvery time.Duration
	c := &cobra.Command{
		Use:   "sink",
		Short: "receive records like a SUT; on interrupt, write a JSON report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := envDefaults(cmd.Flags()); err != nil {
				return err
			}
			var ds *dataset.Dataset
			if dsDir != "" {
				var err error
				if ds, err = dataset.Load(dsDir); err != nil {
					return err
				}
			}
			s, err := sink.Listen(listen, framing)
			if err != nil {
				return err
			}
			if ds != nil {
				s.Expect(ds)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "sink listening on", s.Addr())
			sinkListening(s)
			watch := &statusWatch{out: cmd.OutOrStdout()}
			if ctlURL != "" {
				wctx, stopWatch := context.WithCancel(cmd.Context())
				defer stopWatch()
				go watch.run(wctx, ctlURL)
			}
			if len(pulls) > 0 {
				var auth []ssh.AuthMethod
				if pwEnv != "" {
					auth = append(auth, ssh.Password(os.Getenv(pwEnv)))
				}
				if keyFile != "" {
					b, err := os.ReadFile(keyFile)
					if err != nil {
						return fmt.Errorf("--sftp-key-file: %w", err)
					}
					signer, err := ssh.ParsePrivateKey(b)
					if err != nil {
						return fmt.Errorf("--sftp-key-file %s: %w", keyFile, err)
					}
					auth = append(auth, ssh.PublicKeys(signer))
				}
				if len(auth) == 0 {
					return errors.New("--sftp-pull needs --sftp-password-env or --sftp-key-file")
				}
				for _, p := range pulls {
					user, addr, ok := strings.Cut(p, "@")
					if !ok || user == "" || addr == "" {
						return fmt.Errorf("--sftp-pull %q: want user@host:port", p)
					}
					go s.PullSFTP(cmd.Context(), addr, sink.PullerConfig(user, auth...), pullEvery)
				}
			}
			<-cmd.Context().Done()
			until := time.Now()
			s.Close()
			e := sink.Expectation{Sources: map[string]int{}, Loops: 1, Until: until}
			if ds != nil {
				e.Sources, e.Span, e.Offsets = sink.ExpectDataset(ds), ds.Span, sink.ExpectOffsets(ds)
			}
			// The controller may be gone by now (stopped first, crashed, unreachable): the report is
			// still written, from the last status seen during the run if any, with what is unknown named.
			var st *controller.Status
			var stErr error
			if ctlURL != "" {
				st, stErr = fetchStatus(ctlURL)
				if stErr != nil {
					if last, at := watch.last(); last != nil {
						st = last
						stErr = fmt.Errorf("%w (the report uses its status as of %s)", stErr, at.UTC().Format(time.RFC3339))
					}
				}
				if st != nil {
					e.Start = st.StartTime
					if st.Repeat && st.Loops > 0 {
						e.Loops = st.Loops
					}
					watch.see(st)
					e.Runs = watch.runs(e.Span)
				}
			}
			rep := s.Report(e)
			switch {
			case ctlURL == "":
				why := "no --controller-url: the run's start time, loops and failed records are unknown"
				for _, p := range []string{"early", "lateness", "failed_at_workers"} {
					rep.SetUnavailable(p, why)
				}
			case st == nil:
				why := fmt.Sprintf("controller unreachable at stop and never reached during the run: %v", stErr)
				for _, p := range []string{"early", "lateness", "loops", "failed_at_workers"} {
					rep.SetUnavailable(p, why)
				}
			default:
				rep.FailedAtWorkers = run.FailedSources(st)
				if stErr != nil {
					rep.SetUnavailable("failed_at_workers", fmt.Sprintf("only as of the last status seen: %v", stErr))
				}
			}
			run.PrintReport(cmd.OutOrStdout(), rep)
			if report != "" {
				if err := rep.WriteFile(report); err != nil {
					return fmt.Errorf("--report %s: %w", report, err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "report written to", report)
			}
			if stErr != nil {
				return fmt.Errorf("report incomplete: %w", stErr)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:9000", "TCP address to receive on (env SIMULATOR_LISTEN)")
	f.StringVar(&framing, "framing", dataset.FramingNewline, "newline, length32 or raw")
	f.StringVar(&dsDir, "dataset", "", "dataset directory: the expected counts, and the payloads to match unmarked records by content")
	f.StringVar(&ctlURL, "controller-url", "", "controller URL: the runs it learns from it (start, span, loops, stop) and failed records go into the report")
	f.StringVar(&report, "report", "", "write the JSON report here")
	f.StringArrayVar(&pulls, "sftp-pull", nil, "pull a source's files from a worker: user@host:port (repeatable)")
	f.StringVar(&pwEnv, "sftp-password-env", "", "environment variable holding the SFTP password")
	f.StringVar(&keyFile, "sftp-key-file", "", "private key file for SFTP public-key login")
	f.DurationVar(&pullEvery, "sftp-interval", 50*time.Millisecond, "SFTP polling interval")
	return c
}

// sinkListening is called with the sink once it listens (a test hook).
var sinkListening = func(*sink.Sink) {}

// statusClient bounds every status request: a controller that accepts and never answers must not
// hold the sink's report.
var statusClient = &http.Client{Timeout: 5 * time.Second}

func fetchStatus(url string) (*controller.Status, error) {
	resp, err := statusClient.Get(url + "/v1/status")
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("controller %s: GET /v1/status: %s", url, resp.Status)
	}
	var st controller.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("controller %s: GET /v1/status: %w", url, err)
	}
	return &st, nil
}

// statusEvery is how often the sink asks the controller for its status during a run: it learns
// runs (start → stop → start) from it, so a run shorter than this may go unseen.
const statusEvery = 250 * time.Millisecond

// statusWatch keeps the controller's latest status during the run, for a report at stop when the
// controller can no longer be reached.
type statusWatch struct {
	mu   sync.Mutex
	st   *controller.Status
	at   time.Time
	seen map[string]*controller.Status // latest status of every run seen, by run id
	out  io.Writer                     // where a newly seen run is announced (nil: nowhere)
}

// see notes a status; the latest of each run wins.
func (w *statusWatch) see(st *controller.Status) {
	if st.RunID == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = map[string]*controller.Status{}
	}
	if _, ok := w.seen[st.RunID]; !ok && w.out != nil {
		fmt.Fprintf(w.out, "sink: run %s seen, starting %s\n", st.RunID, st.StartTime.UTC().Format(time.RFC3339Nano))
	}
	w.seen[st.RunID] = st
}

// runs is every run seen, for the report to count runs and loops apart; span is the dataset's,
// used when the status has none.
func (w *statusWatch) runs(span time.Duration) []sink.Run {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []sink.Run
	for id, st := range w.seen {
		r := sink.Run{ID: id, Start: st.StartTime, Span: span, Loops: 1, Stopped: st.StoppedAt}
		if d, err := time.ParseDuration(st.Span); err == nil && d > 0 {
			r.Span = d
		}
		if st.Repeat {
			r.Loops = st.Loops
		}
		out = append(out, r)
	}
	return out
}

func (w *statusWatch) run(ctx context.Context, url string) {
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		if st, err := fetchStatus(url); err == nil && st.RunID != "" {
			w.see(st)
			w.mu.Lock()
			w.st, w.at = st, time.Now()
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *statusWatch) last() (*controller.Status, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st, w.at
}

func runCmd() *cobra.Command {
	var o run.Options
	var report, logLevel string
	c := &cobra.Command{
		Use:   "run --dataset DIR",
		Short: "load and replay a dataset in one process (embedded broker, built-in sink) and report",
		Long: `Load a dataset into an embedded Kafka-protocol broker, replay it with --workers
workers per type into a built-in sink, and print a report per type: expected, sent,
received, lost, duplicated, early and lateness. Exit status 0 only if nothing was lost
and nothing was sent early (records that failed at the workers are lost).

TCP sources are sent to the sink whatever their configured address. SFTP sources are
published on a temporary spool the workers of a type share, so any of them serves every
source; the sink pulls each source from one of them, logging in with the password in the
source's sftp.password_env (key-only sources cannot be pulled here).`,
		Example: `  simulator generate --out /tmp/ds --types 2 --sources 20 --records 100 --span 10s
  simulator run --dataset /tmp/ds --workers 2 --report /tmp/report.json

  simulator generate --out /tmp/sftp --protocol sftp
  SIMULATOR_SFTP_PASSWORD=secret simulator run --dataset /tmp/sftp --workers 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Dataset == "" {
				return errors.New("--dataset is required")
			}
			lf := logFlags{level: logLevel, format: "text"}
			log, err := lf.logger()
			if err != nil {
				return err
			}
			o.Log, o.Out = log, cmd.OutOrStdout()
			res, err := run.Run(cmd.Context(), o)
			var ve *dataset.ValidationError
			if errors.As(err, &ve) {
				return &exitError{code: 2, err: err}
			}
			if res == nil {
				return err
			}
			run.PrintReport(cmd.OutOrStdout(), res.Report)
			if report != "" {
				if werr := res.Report.WriteFile(report); werr != nil {
					return werr
				}
				fmt.Fprintln(cmd.OutOrStdout(), "report written to", report)
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if !res.Report.OK() {
				return &exitError{code: 1, err: errors.New("records were lost or sent early")}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.Dataset, "dataset", "", "dataset directory")
	f.IntVar(&o.Workers, "workers", 1, "workers per type")
	f.StringVar(&report, "report", "", "write the JSON report here")
	f.StringVar(&o.Partitioning, "partitioning", controller.PerSource, "per-source or keyed")
	f.BoolVar(&o.Repeat, "repeat", false, "repeat the dataset")
	f.IntVar(&o.Loops, "loops", 0, "loops with --repeat")
	f.DurationVar(&o.Delay, "delay", 2*time.Second, "time from start to the first due record")
	f.StringVar(&logLevel, "log-level", "warn", "log level (logs go to stderr)")
	return c
}
