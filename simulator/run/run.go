package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/sink"
	"github.com/simlab/simlab/simulator/worker"
	"golang.org/x/crypto/ssh"
)

// Options configures an all-in-one run.
type Options struct {
	Dataset      string
	Workers      int // per type
	Partitioning string
	Repeat       bool
	Loops        int
	Delay        time.Duration // from start request to the simulation start
	Out          io.Writer     // progress line and summary
	Log          *slog.Logger
	NoWait       bool // benchmark ceiling: no scheduling
	Timeout      time.Duration
}

// sftpPollInterval is how often the built-in sink lists each sftp source's
// files (SFTP lateness includes up to this much).
const sftpPollInterval = 20 * time.Millisecond

// describeEnv says why an environment variable cannot be used.
func describeEnv(name string) string {
	if name == "" {
		return "not set in the source's config (key-only logins need a private key the sink does not have)"
	}
	return "$" + name + ", empty in this environment"
}

// Result is the outcome of a run.
type Result struct {
	Report   *sink.Report
	Start    time.Time
	Finished time.Time
	Loaded   *controller.LoadResult
}

// Run loads the dataset, plays it once (or Loops times) with Workers workers per type into the
// built-in sink, and reports.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Delay <= 0 {
		o.Delay = 2 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Repeat && o.Loops < 1 {
		return nil, fmt.Errorf("run: repeat needs loops >= 1 (an unbounded run never finishes)")
	}
	ds, err := dataset.Load(o.Dataset)
	if err != nil {
		return nil, err
	}
	framing := ""
	var sftpSources []*dataset.Source
	for _, s := range ds.Sources {
		if s.Config.Protocol == dataset.ProtoSFTP {
			c := s.Config.SFTP
			if c.PasswordEnv == "" || os.Getenv(c.PasswordEnv) == "" {
				return nil, fmt.Errorf("run: sftp source %s: the built-in sink logs in with the password in sftp.password_env, "+
					"which is %s", s.ID(), describeEnv(c.PasswordEnv))
			}
			sftpSources = append(sftpSources, s)
			continue
		}
		if framing != "" && s.Config.Framing != framing {
			return nil, fmt.Errorf("run: sources use different framings (%s, %s); the built-in sink needs one", framing, s.Config.Framing)
		}
		framing = s.Config.Framing
	}
	env, err := NewEnv(EnvOptions{Framing: framing, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer env.Close()
	env.Sink.Expect(ds)
	if o.Log != nil {
		env.Sink.SetLogger(o.Log)
	}
	loaded, err := env.Controller.Load(ctx, o.Dataset, controller.LoadRequest{Partitioning: o.Partitioning, AddressOverride: env.Sink.Addr()})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "loaded %d types, %d sources, %d records (span %s) in %s\n", loaded.Types, loaded.Sources, loaded.Records, ds.Span, loaded.Took)
	// The workers of a type share one spool directory for their sftp sources
	// (as on a ReadWriteMany volume in the cluster): every worker serves every
	// sftp source of its type, whichever worker publishes its files.
	var spool string
	if len(sftpSources) > 0 {
		if spool, err = os.MkdirTemp("", "simulator-sftp-spool-"); err != nil {
			return nil, fmt.Errorf("run: sftp spool: %w", err)
		}
		defer os.RemoveAll(spool)
	}
	workersOf := map[string][]int{}
	for _, typ := range ds.Types() {
		for i := 0; i < o.Workers; i++ {
			workersOf[typ] = append(workersOf[typ], env.AddWorker(typ, func(c *worker.Config) {
				c.NoWait = o.NoWait
				if len(sftpSources) > 0 {
					c.SFTPListen, c.SFTPSpool = "127.0.0.1:0", spool
				}
			}))
		}
	}
	// The sink pulls each sftp source from one worker of its type, taking
	// the workers in turn: any of them serves the source's files.
	pullCtx, stopPulls := context.WithCancel(ctx)
	defer stopPulls()
	for n, s := range sftpSources {
		ws := workersOf[s.Type]
		srv, err := env.Worker(ws[n%len(ws)]).SFTP()
		if err != nil {
			return nil, fmt.Errorf("run: sftp server of a %s worker: %w", s.Type, err)
		}
		cfg := sink.PullerConfig(s.Config.SFTP.User, ssh.Password(os.Getenv(s.Config.SFTP.PasswordEnv)))
		go env.Sink.PullSFTP(pullCtx, srv.Addr(), cfg, sftpPollInterval)
	}
	st, err := env.Controller.Start(ctx, controller.StartRequest{Delay: o.Delay.String(), Repeat: o.Repeat, Loops: o.Loops})
	if err != nil {
		return nil, err
	}
	loops := st.LoopCount()
	want := map[string]int64{}
	var total int64
	for _, s := range ds.Sources {
		want[s.Type] += int64(len(s.Records) * loops)
		total += int64(len(s.Records) * loops)
	}
	fmt.Fprintf(o.Out, "run %s starts at %s with %d worker(s) per type\n", st.RunID, st.StartTime.Format("15:04:05.000"), o.Workers)
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = time.Until(st.StartTime) + time.Duration(loops)*ds.Span + 30*time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var waitErr error
	var failed map[string]int64
	tty, n := isTerminal(o.Out), 0
	for {
		got := env.Sink.Total()
		if got >= total {
			if err := env.WaitCommitted(wctx, want); err != nil {
				waitErr = err
			}
			break
		}
		var parts []string
		if s, err := env.Controller.Status(wctx); err == nil {
			// Every record committed, some as failed: the sink would wait for them in vain.
			if f := FailedSources(s); s.Done && len(f) > 0 {
				failed = f
				break
			}
			for _, typ := range ds.Types() {
				parts = append(parts, fmt.Sprintf("%s %3.0f%%", typ, 100*s.Types[typ].Progress))
			}
		}
		line := fmt.Sprintf("  t=%6.1fs  received %d/%d  committed: %s", time.Since(st.StartTime).Seconds(), got, total, strings.Join(parts, ", "))
		if tty {
			fmt.Fprintf(o.Out, "\r%s   ", line)
		} else if n++; n%4 == 1 {
			fmt.Fprintln(o.Out, line)
		}
		select {
		case <-wctx.Done():
			waitErr = fmt.Errorf("run did not finish within %s: received %d of %d", timeout, env.Sink.Total(), total)
		case <-tick.C:
			continue
		}
		break
	}
	if tty {
		fmt.Fprintln(o.Out)
	}
	finished := time.Now()
	if s, err := env.Controller.Stop(context.Background()); err == nil {
		_ = s
	}
	env.Close()
	rep := env.Sink.Report(sink.Expectation{Sources: sink.ExpectDataset(ds), Start: st.StartTime, Span: ds.Span, Loops: loops})
	rep.FailedAtWorkers = failed
	res := &Result{Report: rep, Start: st.StartTime, Finished: finished, Loaded: loaded}
	if waitErr != nil {
		return res, waitErr
	}
	return res, nil
}

// FailedSources flattens a status's failed records to "type/instance" -> count (nil if none).
func FailedSources(s *controller.Status) map[string]int64 {
	var out map[string]int64
	for typ, ts := range s.Types {
		for src, n := range ts.FailedSources {
			if out == nil {
				out = map[string]int64{}
			}
			out[typ+"/"+src] += n
		}
	}
	return out
}

// PrintReport writes a per-type table.
func PrintReport(w io.Writer, r *sink.Report) {
	fmt.Fprintf(w, "%-12s %9s %9s %9s %6s %6s %6s %9s %9s %9s %9s\n", "type", "expected", "sent", "received", "lost", "dup", "early", "late p50", "late p99", "p99.9", "late max")
	var types []string
	for t := range r.Types {
		types = append(types, t)
	}
	sort.Strings(types)
	row := func(name string, t *sink.TypeReport) {
		fmt.Fprintf(w, "%-12s %9d %9d %9d %6d %6d %6d %7.2fms %7.2fms %7.2fms %7.2fms\n", name, t.Expected, t.Received+t.Duplicated,
			t.Received, t.Lost, t.Duplicated, t.Early, t.LateP50ms, t.LateP99ms, t.LateP999ms, t.LateMaxms)
	}
	for _, t := range types {
		row(t, r.Types[t])
	}
	row("TOTAL", r.Total)
	if len(r.FailedAtWorkers) > 0 {
		srcs := make([]string, 0, len(r.FailedAtWorkers))
		var total int64
		for s, n := range r.FailedAtWorkers {
			srcs = append(srcs, s)
			total += n
		}
		sort.Strings(srcs)
		fmt.Fprintf(w, "of the lost, %d failed at the workers (never sent: the destination could not be built):\n", total)
		for _, s := range srcs {
			fmt.Fprintf(w, "  %s: %d\n", s, r.FailedAtWorkers[s])
		}
	}
	if len(r.Runs) > 1 || (len(r.Runs) == 1 && r.Runs[0].LoopsSeen > 1) {
		fmt.Fprintln(w, "per run:")
		for _, rr := range r.Runs {
			fmt.Fprintf(w, "  %s (start %s, %d loop(s) due): expected %d, received %d, lost %d, dup %d, early %d\n", rr.ID,
				rr.Start.Format("15:04:05.000"), rr.LoopsSeen, rr.Expected, rr.Received, rr.Lost, rr.Duplicated, rr.Early)
		}
	}
	if r.FramingMismatches > 0 {
		fmt.Fprintf(w, "%d connection(s) did not fit the sink's framing (their records from there on are not counted):\n", r.FramingMismatches)
		for _, d := range r.FramingMismatchSamples {
			fmt.Fprintln(w, "  "+d)
		}
	}
	if r.Unattributed > 0 {
		fmt.Fprintf(w, "%d received record(s) could not be attributed to a record of a source (lost may include them):\n", r.Unattributed)
		for _, d := range r.UnattributedSamples {
			fmt.Fprintln(w, "  "+d)
		}
		if n := r.Unattributed - int64(len(r.UnattributedSamples)); n > 0 {
			fmt.Fprintf(w, "  and %d more\n", n)
		}
	}
	if len(r.Unavailable) > 0 {
		parts := make([]string, 0, len(r.Unavailable))
		for p := range r.Unavailable {
			parts = append(parts, p)
		}
		sort.Strings(parts)
		fmt.Fprintln(w, "unknown (their columns are zero, not measured):")
		for _, p := range parts {
			fmt.Fprintf(w, "  %s: %s\n", p, r.Unavailable[p])
		}
	}
	verdict := "OK: nothing lost, nothing early"
	if _, ok := r.Unavailable["early"]; ok {
		verdict = fmt.Sprintf("UNKNOWN: %d lost, early not known", r.Total.Lost)
	} else if !r.OK() {
		verdict = fmt.Sprintf("FAIL: %d lost, %d early", r.Total.Lost, r.Total.Early)
	}
	fmt.Fprintln(w, verdict)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
