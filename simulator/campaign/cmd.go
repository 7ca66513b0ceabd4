package campaign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// target is how a command reaches the controller.
type target struct {
	url, stack string
}

func (t *target) add(fs *pflag.FlagSet) {
	fs.StringVar(&t.url, "controller-url", "", "base URL of the simulator controller, e.g. http://127.0.0.1:8080 (a port-forward to it)")
	fs.StringVar(&t.stack, "stack", "", "the lab's stack: names the report directory (campaigns/<stack>/); reaching the controller through the stack is not implemented yet, give --controller-url too")
}

// ErrStackNeedsURL is the answer to --stack without --controller-url.
var ErrStackNeedsURL = errors.New("--stack needs --controller-url for now: finding the cluster from the stack's state and port-forwarding " +
	"to the controller is not implemented yet; forward a port yourself (kubectl -n <namespace> port-forward svc/<controller service> 8080:8080, " +
	"as the chart's NOTES print it) " +
	"and pass --controller-url http://127.0.0.1:8080 --stack <stack>")

func (t *target) check() error {
	switch {
	case t.url == "" && t.stack != "":
		return &ExitError{2, ErrStackNeedsURL}
	case t.url == "":
		return &ExitError{2, errors.New("--controller-url is required (the simulator controller's base URL)")}
	}
	return nil
}

// Command returns `campaign` with its subcommands run, status, stop and report.
func Command() *cobra.Command {
	c := &cobra.Command{
		Use:   "campaign",
		Short: "run a test campaign on the lab's simulator: live progress, thresholds, a JSON and HTML report",
		Long: `A campaign loads a dataset into the lab's simulator, starts it, shows live progress
(per type: records due, sent, committed, late p99 over the last second, workers), stops it
when every record is sent, judges the thresholds file and writes report.json and report.html
under campaigns/<stack or "local">/<run-id>/. The numbers are the workers' own measurements,
aggregated by the controller over every worker of the run (docs/CAMPAIGNS.md).`,
		Example: `  simlab campaign run --controller-url http://127.0.0.1:8080 --dataset ./datasets/campaign-1 \
      --start-in 30s --thresholds thresholds.txt
  simlab campaign status --controller-url http://127.0.0.1:8080
  simlab campaign stop --controller-url http://127.0.0.1:8080
  simlab campaign report r-abc123 --controller-url http://127.0.0.1:8080 --dataset ./datasets/campaign-1`,
	}
	c.AddCommand(runCmd(), statusCmd(), stopCmd(), reportCmd())
	return c
}

func runCmd() *cobra.Command {
	var t target
	var o Options
	c := &cobra.Command{
		Use:   "run --controller-url URL --dataset PATH",
		Short: "load, start and watch a campaign; stop it when done; judge thresholds; write the report",
		Long: `Loads --dataset (a local copy; the controller loads the same dataset from its
--dataset-root, by --dataset-path, default the directory's name, and the fingerprints must
match), starts it --start-in from now, --repeat times, and shows live progress (plain lines
when stdout is not a terminal). When every record is committed it stops the run, waits for
every worker's final summary and writes the report. Ctrl-C asks whether to stop the run or
detach (not a terminal: it stops). Exit status: 0 when every threshold holds, 1 when one is
violated (each is named with its measured value), 2 for any other error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := t.check(); err != nil {
				return err
			}
			if o.Dataset == "" {
				return &ExitError{2, errors.New("--dataset is required (a local copy of the dataset directory)")}
			}
			if o.Repeat < 1 {
				return &ExitError{2, fmt.Errorf("--repeat %d: want 1 or more (the number of times the dataset is played)", o.Repeat)}
			}
			if o.StartIn < 0 {
				return &ExitError{2, fmt.Errorf("--start-in %s: want a duration of 0 or more", o.StartIn)}
			}
			o.Controller, o.Stack, o.W = t.url, t.stack, cmd.OutOrStdout()
			if f, ok := cmd.OutOrStdout().(*os.File); ok {
				o.TTY = IsTerminal(f)
			}
			if IsTerminal(os.Stdin) {
				o.Stdin = os.Stdin
			}
			_, err := Run(cmd.Context(), o)
			return err
		},
	}
	f := c.Flags()
	t.add(f)
	f.StringVar(&o.Dataset, "dataset", "", "local copy of the dataset directory")
	f.StringVar(&o.DatasetPath, "dataset-path", "", "the dataset's path under the controller's --dataset-root (default: the base name of --dataset)")
	f.StringVar(&o.SUTAddress, "sut-address", "", "send every TCP source to this host:port (the controller's address_override)")
	f.StringVar(&o.Partitioning, "partitioning", "", "per-source or keyed (default: the controller's)")
	f.DurationVar(&o.StartIn, "start-in", 5*time.Second, "start the run this long from now")
	f.IntVar(&o.Repeat, "repeat", 1, "play the dataset this many times")
	f.StringVar(&o.Thresholds, "thresholds", "", "thresholds file (docs/CAMPAIGNS.md)")
	f.StringVar(&o.Out, "out", "campaigns", "report root: reports go to <out>/<stack or local>/<run-id>/")
	f.DurationVar(&o.Interval, "interval", time.Second, "live progress interval")
	f.DurationVar(&o.Settle, "settle", 30*time.Second, "after stop, wait at most this long for every worker's final summary")
	return c
}

func statusCmd() *cobra.Command {
	var t target
	c := &cobra.Command{
		Use:   "status --controller-url URL",
		Short: "print the run's stage and per-type progress once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := t.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			cl := NewClient(t.url)
			st, err := cl.Status(ctx)
			if err != nil {
				return &ExitError{2, err}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "stage %s run %s start %s done %v\n", st.Stage, st.RunID, st.StartTime.Format(time.RFC3339), st.Done)
			if st.RunID == "" {
				return nil
			}
			v, err := cl.Delivery(ctx, st.RunID, false)
			if err != nil {
				return &ExitError{2, err}
			}
			for _, p := range progress(st, v, nil, time.Now()) {
				fmt.Fprintln(w, p)
			}
			return nil
		},
	}
	t.add(c.Flags())
	return c
}

func stopCmd() *cobra.Command {
	var t target
	c := &cobra.Command{
		Use:   "stop --controller-url URL",
		Short: "stop the running campaign (workers stop sending within 1 s)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := t.check(); err != nil {
				return err
			}
			st, err := NewClient(t.url).Stop(cmd.Context())
			if err != nil {
				return &ExitError{2, err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "run %s stopped at %s\n", st.RunID, st.StoppedAt.Format(time.RFC3339Nano))
			return nil
		},
	}
	t.add(c.Flags())
	return c
}

func reportCmd() *cobra.Command {
	var t target
	var dsDir, dsPath, ths, out string
	var settle time.Duration
	c := &cobra.Command{
		Use:   "report RUN --controller-url URL",
		Short: "write the report of a run (again) from the controller's aggregate (kept 7 days)",
		Long: `Writes report.json and report.html of RUN under <out>/<stack or local>/RUN/ from the
workers' summaries the controller holds. With --dataset (a local copy) the expected
counts and due times come from the dataset, cut at the run's stop when RUN is the
controller's current run; without it, from the controller's manifests (counts only).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := t.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			cl := NewClient(t.url)
			var thr []Threshold
			if ths != "" {
				var err error
				if thr, err = ParseThresholds(ths); err != nil {
					return &ExitError{2, err}
				}
			}
			run := args[0]
			co := CollectOptions{Run: run, Settle: settle, Stack: t.stack, Out: out, Thresholds: thr, W: cmd.OutOrStdout(), Loops: 1}
			st, err := cl.Status(ctx)
			if err != nil {
				return &ExitError{2, err}
			}
			if st.RunID == run {
				co.Start, co.StoppedAt = st.StartTime, st.StoppedAt
				if st.Repeat {
					co.Loops = st.Loops
				}
			}
			var exp *Expectation
			if dsDir != "" {
				ds, err := dataset.Load(dsDir)
				if err != nil {
					return &ExitError{2, fmt.Errorf("--dataset: %w", err)}
				}
				p := dsPath
				if p == "" {
					p = filepath.Base(filepath.Clean(dsDir))
				}
				exp = ExpectDataset(ds, p)
			} else {
				ld, err := cl.Dataset(ctx)
				if err != nil {
					return &ExitError{2, err}
				}
				exp = ExpectManifests(ld.Manifests, ld.Fingerprint)
			}
			if co.Start.IsZero() {
				v, err := cl.Delivery(ctx, run, false)
				if err != nil {
					return &ExitError{2, err}
				}
				if v == nil {
					return &ExitError{2, fmt.Errorf("the controller has no summary of run %q (runs are kept 7 days)", run)}
				}
				for _, w := range v.Workers {
					if co.Start.IsZero() || w.First.Before(co.Start) {
						co.Start = w.First
					}
				}
			}
			o, err := Collect(context.WithoutCancel(ctx), cl, exp, co)
			if err != nil {
				return err
			}
			return verdictError(o.Report)
		},
	}
	f := c.Flags()
	t.add(f)
	f.StringVar(&dsDir, "dataset", "", "local copy of the run's dataset (expected counts and due times)")
	f.StringVar(&dsPath, "dataset-path", "", "the dataset's path under the controller's --dataset-root, for the report (default: the base name of --dataset)")
	f.StringVar(&ths, "thresholds", "", "thresholds file to judge the run by")
	f.StringVar(&out, "out", "campaigns", "report root")
	f.DurationVar(&settle, "settle", 5*time.Second, "wait at most this long for workers' final summaries")
	return c
}

// ExitCode maps an error of these commands to the process exit status.
func ExitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 2
}
