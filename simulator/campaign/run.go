// Package campaign owns `simlab campaign`: running a test campaign against a deployed simulator
// through its controller's HTTP API (load the dataset, start, live progress, stop), judging the
// thresholds file, and writing the campaign's report (report.json with a stable schema and a
// self-contained report.html) under campaigns/<stack>/<run-id>/. Its numbers come from the
// workers' own delivery summaries (package delivery), aggregated by the controller over every
// worker of the run; it never needs a sink.
package campaign

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/delivery"
)

// Options configure a campaign run.
type Options struct {
	// Client reaches the controller (nil: a client for Controller).
	Client *Client
	// Controller is the controller's base URL, as the report records it.
	Controller string
	// Again is how a later command names the same controller (default: --controller-url
	// Controller), for the message of a detached run.
	Again string
	Stack string // names the report directory; "" = "local"
	// Dataset is a local copy of the dataset (expected counts, due times, fingerprint).
	Dataset string
	// DatasetPath is the dataset's path under the controller's --dataset-root (default: the base
	// name of Dataset).
	DatasetPath string
	// SUTAddress sends every TCP source to host:port (the controller's address_override).
	SUTAddress   string
	Partitioning string
	StartIn      time.Duration
	Repeat       int // play the dataset this many times (1: once)
	Thresholds   string
	Out          string // report root (default "campaigns")
	Interval     time.Duration
	// Wait bounds the wait, before the load, for the controller to be ready (0: no wait).
	Wait time.Duration
	// Settle bounds the wait, after stop, for every worker's final summary.
	Settle time.Duration
	W      io.Writer
	TTY    bool
	// Stdin answers the Ctrl-C question on a terminal.
	Stdin io.Reader
	// Signals delivers interrupts (default: SIGINT and SIGTERM of this process).
	Signals <-chan os.Signal
}

// ExitError carries an exit code: 1 for violated thresholds, 2 for errors before or during the
// run.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Outcome is what Run produced.
type Outcome struct {
	Report   *Report
	JSONPath string
	HTMLPath string
	Detached bool
}

func stackDir(stack string) string {
	if stack == "" {
		return "local"
	}
	return stack
}

// Run runs one campaign: load, start, watch, stop, report, judge.
func Run(ctx context.Context, o Options) (*Outcome, error) {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 30 * time.Second
	}
	if o.Out == "" {
		o.Out = "campaigns"
	}
	if o.Repeat <= 0 {
		o.Repeat = 1
	}
	if o.W == nil {
		o.W = os.Stdout
	}
	var ths []Threshold
	if o.Thresholds != "" {
		var err error
		if ths, err = ParseThresholds(o.Thresholds); err != nil {
			return nil, &ExitError{2, err}
		}
	}
	ds, err := dataset.Load(o.Dataset)
	if err != nil {
		var ve *dataset.ValidationError
		if errors.As(err, &ve) {
			return nil, &ExitError{2, fmt.Errorf("--dataset %s is invalid:\n  %s", o.Dataset, strings.Join(ve.Strings(), "\n  "))}
		}
		return nil, &ExitError{2, fmt.Errorf("--dataset: %w", err)}
	}
	rel := o.DatasetPath
	if rel == "" {
		rel = filepath.Base(filepath.Clean(o.Dataset))
	}
	exp := ExpectDataset(ds, rel)
	c := o.Client
	if c == nil {
		c = NewClient(o.Controller)
	}
	if o.Again == "" {
		o.Again = "--controller-url " + o.Controller
	}
	if o.Wait > 0 {
		if err := c.WaitReady(ctx, o.Wait, 500*time.Millisecond, func(err error) {
			fmt.Fprintf(o.W, "waiting up to %s for the controller to be ready: %v\n", o.Wait, err)
		}); err != nil {
			return nil, &ExitError{2, err}
		}
	}
	res, err := c.Load(ctx, controller.LoadRequest{Path: rel, Partitioning: o.Partitioning, AddressOverride: o.SUTAddress})
	if err != nil {
		return nil, &ExitError{2, fmt.Errorf("loading dataset %s: %w", rel, err)}
	}
	if !strings.HasPrefix(res.Fingerprint, ds.Fingerprint+"/") {
		return nil, &ExitError{2, fmt.Errorf("the controller's dataset %q (fingerprint %.16s) is not the same as --dataset %s (%.16s): copy the dataset again",
			rel, res.Fingerprint, o.Dataset, ds.Fingerprint)}
	}
	fmt.Fprintf(o.W, "dataset %s loaded (%d types, %d sources, %d records, fingerprint %.16s, unchanged %v)\n",
		rel, res.Types, res.Sources, res.Records, ds.Fingerprint, res.Unchanged)
	req := controller.StartRequest{Delay: o.StartIn.String()}
	if o.Repeat > 1 {
		req.Repeat, req.Loops = true, o.Repeat
	}
	st, err := c.Start(ctx, req)
	if err != nil {
		return nil, &ExitError{2, fmt.Errorf("starting the run: %w", err)}
	}
	run, start, loops := st.RunID, st.StartTime, st.LoopCount()
	fmt.Fprintf(o.W, "run %s starts at %s (in %s), %d loop(s)\n", run, start.Format(time.RFC3339Nano), o.StartIn, loops)

	sigs := o.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(ch)
		sigs = ch
	}
	due := newDueCounter(exp, start, loops)
	lv := &liveView{w: o.W, tty: o.TTY}
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	var aborted []Verdict
	var doneAt time.Time
	stopped := false
watch:
	for {
		select {
		case <-ctx.Done():
			break watch
		case <-sigs:
			if o.TTY && o.Stdin != nil {
				fmt.Fprint(o.W, "\nstop the run (s) or detach and leave it running (d)? [s] ")
				ans, _ := bufio.NewReader(o.Stdin).ReadString('\n')
				if strings.HasPrefix(strings.TrimSpace(strings.ToLower(ans)), "d") {
					fmt.Fprintf(o.W, "detached; run %s goes on. Later: simlab campaign status / stop / report %s %s\n", run, run, o.Again)
					return &Outcome{Detached: true}, nil
				}
			}
			fmt.Fprintln(o.W, "interrupted: stopping the run")
			break watch
		case <-tick.C:
		}
		s, err := c.Status(ctx)
		if err != nil {
			fmt.Fprintf(o.W, "status: %v\n", err)
			continue
		}
		if s.RunID != run {
			return nil, &ExitError{2, fmt.Errorf("the controller now runs %q, not %s: someone else started a run", s.RunID, run)}
		}
		v, err := c.Delivery(ctx, run, false)
		if err != nil {
			fmt.Fprintf(o.W, "delivery: %v\n", err)
		}
		now := time.Now()
		lv.show(now.Sub(start), s.Stage, progress(s, v, due, now))
		if s.Stage != "running" {
			stopped = true
			break
		}
		if v != nil && len(ths) > 0 {
			rep := BuildReport(exp, v, runWindow{start: start, loops: loops, until: now}, stackDir(o.Stack), o.Controller)
			for _, vd := range Judge(ths, rep, true) {
				if !vd.OK {
					aborted = append(aborted, vd)
				}
			}
			if len(aborted) > 0 {
				fmt.Fprintf(o.W, "aborting: %s\n", aborted[0])
				break
			}
		}
		if s.Done {
			// Every record is sent; SFTP files may still wait for the SUT to pull them (they are
			// acknowledged when pulled, and gone once the run stops): wait for that, up to Settle.
			if doneAt.IsZero() {
				doneAt = now
			}
			if pulled(v, due, now) || now.Sub(doneAt) > o.Settle {
				break
			}
		}
	}
	var stoppedAt time.Time
	if !stopped {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		sst, err := c.Stop(sctx)
		cancel()
		if err != nil {
			return nil, &ExitError{2, fmt.Errorf("stopping run %s: %w", run, err)}
		}
		stoppedAt = sst.StoppedAt
	} else if s, err := c.Status(context.Background()); err == nil {
		stoppedAt = s.StoppedAt
	}
	out, err := Collect(context.Background(), c, exp, CollectOptions{Run: run, Start: start, Loops: loops, StoppedAt: stoppedAt,
		Settle: o.Settle, Stack: o.Stack, Out: o.Out, Thresholds: ths, W: o.W})
	if err != nil {
		return nil, err
	}
	if len(aborted) > 0 {
		return out, &ExitError{1, fmt.Errorf("run %s aborted by an abort-on-fail threshold: %s", run, aborted[0])}
	}
	return out, verdictError(out.Report)
}

// pulled reports whether the workers reported every due record as sent (or failed) and every
// sent record as acknowledged (SFTP: pulled).
func pulled(v *delivery.View, due *dueCounter, now time.Time) bool {
	if v == nil {
		return false
	}
	for typ := range due.offs {
		t := v.Types[typ]
		if t == nil || t.Sent+t.Failed < due.due(typ, now) || t.Acked < t.Sent {
			return false
		}
	}
	return true
}

// CollectOptions configure Collect.
type CollectOptions struct {
	Run        string
	Start      time.Time
	Loops      int
	StoppedAt  time.Time
	Settle     time.Duration
	Stack      string
	Out        string
	Thresholds []Threshold
	W          io.Writer
}

// Collect waits (up to Settle) until every worker of the run sent its final summary, builds and
// judges the report, writes it under Out/<stack>/<run>/ and prints its summary.
func Collect(ctx context.Context, c *Client, exp *Expectation, o CollectOptions) (*Outcome, error) {
	deadline := time.Now().Add(o.Settle)
	var v *delivery.View
	for {
		var err error
		v, err = c.Delivery(ctx, o.Run, true)
		if err != nil {
			return nil, &ExitError{2, err}
		}
		settled := v != nil
		if v != nil {
			for _, w := range v.Workers {
				if !w.Left {
					settled = false
				}
			}
		}
		if settled {
			break
		}
		if v == nil && !o.StoppedAt.IsZero() && !o.StoppedAt.After(o.Start) {
			// Stopped before it started: nothing was due, no worker had to report.
			v = &delivery.View{Run: o.Run}
			break
		}
		if time.Now().After(deadline) {
			if v == nil {
				fmt.Fprintf(o.W, "warning: no worker reported on run %s within %s (are the workers running, on the same Kafka?): the report counts nothing as sent\n", o.Run, o.Settle)
				v = &delivery.View{Run: o.Run}
				break
			}
			fmt.Fprintf(o.W, "warning: not every worker of run %s sent its final summary within %s; the report has what was published\n", o.Run, o.Settle)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep := BuildReport(exp, v, runWindow{start: o.Start, loops: o.Loops, until: o.StoppedAt}, stackDir(o.Stack), c.URL)
	rep.Judged(Judge(o.Thresholds, rep, false))
	dir := filepath.Join(o.Out, stackDir(o.Stack), o.Run)
	jp, hp, err := rep.Write(dir)
	if err != nil {
		return nil, &ExitError{2, fmt.Errorf("writing the report: %w", err)}
	}
	PrintSummary(o.W, rep)
	fmt.Fprintf(o.W, "report: %s\n        %s\n", jp, hp)
	return &Outcome{Report: rep, JSONPath: jp, HTMLPath: hp}, nil
}

func verdictError(r *Report) error {
	var bad []string
	for _, v := range r.Thresholds {
		if !v.OK {
			bad = append(bad, v.String())
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &ExitError{1, fmt.Errorf("%d threshold(s) violated:\n  %s", len(bad), strings.Join(bad, "\n  "))}
}

// PrintSummary prints the per-type table and the thresholds.
func PrintSummary(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\nrun %s: %d workers took part\n", r.RunID, len(r.Workers))
	fmt.Fprintf(w, "%-16s %9s %9s %9s %7s %7s %7s %10s %10s\n", "type", "expected", "sent", "acked", "lost", "dup", "failed", "p99 ms", "max ms")
	line := func(name string, s Stats) {
		fmt.Fprintf(w, "%-16s %9d %9d %9d %7d %7d %7d %10.3f %10.3f\n", name, s.Expected, s.Sent, s.Acknowledged, s.Lost, s.Duplicated, s.Failed, s.Lateness.P99, s.Lateness.Max)
	}
	for _, t := range r.typeNames() {
		line(t, r.Types[t].Stats)
	}
	line("all", r.Totals)
	for _, v := range r.Thresholds {
		fmt.Fprintln(w, v)
	}
	fmt.Fprintf(w, "verdict: %s\n", r.Verdict)
}
