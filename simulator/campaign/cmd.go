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

// Lab is a deployed lab's controller, as its stack names it.
type Lab struct {
	// Client reaches the controller.
	Client *Client
	// SUTAddress is the stack's simlab:simulator.sut.address ("" when the stack sets none):
	// campaign run sends every TCP source there unless --sut-address says otherwise.
	SUTAddress string
}

// A StackResolver finds a stack's controller: from the stack file Pulumi.<stack>.yaml
// in stacksDir, the cluster's kubeconfig (kubeconfig, when not empty, is the file to use
// instead of the stack's own) and the Service the chart gives the controller.
type StackResolver func(ctx context.Context, stack, stacksDir, kubeconfig string) (*Lab, error)

// target is how a command reaches the controller.
type target struct {
	url, stack, stacksDir, kubeconfig string
	resolve                           StackResolver
}

func (t *target) add(fs *pflag.FlagSet) {
	fs.StringVar(&t.stack, "stack", "", "the lab's stack: the controller is found from it (its kubeconfig, through the Kubernetes API) "+
		"and the report goes to campaigns/<stack>/; with --controller-url it only names the report directory")
	fs.StringVar(&t.stacksDir, "stacks-dir", "stacks", "directory holding Pulumi.<STACK>.yaml files")
	fs.StringVar(&t.kubeconfig, "kubeconfig", "", "with --stack: this kubeconfig file instead of the stack's "+
		"(simlab:existing.kubeconfig, or the stack's kubeconfig output in Pulumi state)")
	fs.StringVar(&t.url, "controller-url", "", "base URL of the simulator controller instead of --stack's route, e.g. http://127.0.0.1:8080 (a port-forward to it)")
}

// lab resolves the flags to the controller.
func (t *target) lab(ctx context.Context) (*Lab, error) {
	switch {
	case t.url != "" && t.kubeconfig != "":
		return nil, &ExitError{2, errors.New("--kubeconfig goes with --stack, not with --controller-url (which already says where the controller is)")}
	case t.url != "":
		return &Lab{Client: NewClient(t.url)}, nil
	case t.stack == "":
		return nil, &ExitError{2, errors.New("--stack or --controller-url is required (the lab's stack, or the simulator controller's base URL)")}
	case t.resolve == nil:
		return nil, &ExitError{2, fmt.Errorf("--stack %s: this build cannot find a stack's controller; give --controller-url", t.stack)}
	}
	l, err := t.resolve(ctx, t.stack, t.stacksDir, t.kubeconfig)
	if err != nil {
		return nil, &ExitError{2, fmt.Errorf("--stack %s: %w", t.stack, err)}
	}
	return l, nil
}

// again is how a later command names the same controller.
func (t *target) again() string {
	switch {
	case t.url != "":
		return "--controller-url " + t.url
	case t.kubeconfig != "":
		return "--stack " + t.stack + " --kubeconfig " + t.kubeconfig
	}
	return "--stack " + t.stack
}

// Command returns `campaign` with its subcommands run, status, stop and report. resolve finds
// the controller of a --stack (nil: only --controller-url works).
func Command(resolve StackResolver) *cobra.Command {
	c := &cobra.Command{
		Use:   "campaign",
		Short: "run a test campaign on the lab's simulator: live progress, thresholds, a JSON and HTML report",
		Long: `A campaign loads a dataset into the lab's simulator, starts it, shows live progress
(per type: records due, sent, committed, late p99 over the last second, workers), stops it
when every record is sent, judges the thresholds file and writes report.json and report.html
under campaigns/<stack or "local">/<run-id>/. The numbers are the workers' own measurements,
aggregated by the controller over every worker of the run (docs/CAMPAIGNS.md).

--stack finds the controller from the stack: the cluster's kubeconfig (simlab:existing.kubeconfig
for an existing cluster, otherwise the stack's kubeconfig output, read with
"pulumi stack output kubeconfig --show-secrets"; --kubeconfig overrides both), then the
Kubernetes API server's proxy to the controller's Service; no kubectl and no local port. The
stack's simlab:simulator.sut.address is the default --sut-address. --controller-url instead
talks to a controller you have reached yourself (e.g. kubectl port-forward).`,
		Example: `  simlab campaign run --stack lab --dataset ./datasets/campaign-1 --start-in 30s --thresholds thresholds.txt
  simlab campaign status --stack lab
  simlab campaign stop --stack lab
  simlab campaign report r-abc123 --stack lab --dataset ./datasets/campaign-1
  simlab campaign run --controller-url http://127.0.0.1:8080 --dataset ./datasets/campaign-1   # through your own port-forward`,
	}
	c.AddCommand(runCmd(resolve), statusCmd(resolve), stopCmd(resolve), reportCmd(resolve))
	return c
}

func runCmd(resolve StackResolver) *cobra.Command {
	t := target{resolve: resolve}
	var o Options
	c := &cobra.Command{
		Use:   "run (--stack S | --controller-url URL) --dataset PATH",
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
			if o.Dataset == "" {
				return &ExitError{2, errors.New("--dataset is required (a local copy of the dataset directory)")}
			}
			if o.Repeat < 1 {
				return &ExitError{2, fmt.Errorf("--repeat %d: want 1 or more (the number of times the dataset is played)", o.Repeat)}
			}
			if o.StartIn < 0 {
				return &ExitError{2, fmt.Errorf("--start-in %s: want a duration of 0 or more", o.StartIn)}
			}
			lab, err := t.lab(cmd.Context())
			if err != nil {
				return err
			}
			if o.SUTAddress == "" {
				o.SUTAddress = lab.SUTAddress
			}
			o.Client, o.Controller, o.Again, o.Stack, o.W = lab.Client, lab.Client.URL, t.again(), t.stack, cmd.OutOrStdout()
			if f, ok := cmd.OutOrStdout().(*os.File); ok {
				o.TTY = IsTerminal(f)
			}
			if IsTerminal(os.Stdin) {
				o.Stdin = os.Stdin
			}
			_, err = Run(cmd.Context(), o)
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
	f.DurationVar(&o.Wait, "wait", time.Minute, "wait this long for the controller to be ready (right after `pulumi up`, its pod or Service may still be starting)")
	f.DurationVar(&o.Settle, "settle", 30*time.Second, "after stop, wait at most this long for every worker's final summary")
	return c
}

func statusCmd(resolve StackResolver) *cobra.Command {
	t := target{resolve: resolve}
	c := &cobra.Command{
		Use:   "status (--stack S | --controller-url URL)",
		Short: "print the run's stage and per-type progress once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			lab, err := t.lab(ctx)
			if err != nil {
				return err
			}
			cl := lab.Client
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

func stopCmd(resolve StackResolver) *cobra.Command {
	t := target{resolve: resolve}
	c := &cobra.Command{
		Use:   "stop (--stack S | --controller-url URL)",
		Short: "stop the running campaign (workers stop sending within 1 s)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, err := t.lab(cmd.Context())
			if err != nil {
				return err
			}
			st, err := lab.Client.Stop(cmd.Context())
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

func reportCmd(resolve StackResolver) *cobra.Command {
	t := target{resolve: resolve}
	var dsDir, dsPath, ths, out string
	var settle time.Duration
	c := &cobra.Command{
		Use:   "report RUN (--stack S | --controller-url URL)",
		Short: "write the report of a run (again) from the controller's aggregate (kept 7 days)",
		Long: `Writes report.json and report.html of RUN under <out>/<stack or local>/RUN/ from the
workers' summaries the controller holds. With --dataset (a local copy) the expected
counts and due times come from the dataset, cut at the run's stop when RUN is the
controller's current run; without it, from the controller's manifests (counts only).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			lab, err := t.lab(ctx)
			if err != nil {
				return err
			}
			cl := lab.Client
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
