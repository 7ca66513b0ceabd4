// Package cli owns the simulator's cobra command tree: flag and environment parsing and the wiring
// of the subcommands to the packages that do the work.
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	root := &cobra.Command{
		Use:   "simulator",
		Short: "network simulator: replays datasets to a system under test through Kafka",
		Long: `The network simulator replays a dataset of timed records (one folder per simulated
data source, see docs/DATASET.md) to a system under test: each record is sent at
start time + its offset, over TCP or served over SFTP.

On a cluster, one controller loads datasets into Kafka and serves an HTTP API
(docs/API.md); workers, one consumer group per data-source type, send the records
and commit their progress to Kafka, so any worker can take over from another.
Locally, "run" does all of it in one process with an embedded broker and sink.`,
		Example: `  simulator generate --out /tmp/ds --types 2 --sources 20 --records 100 --span 10s
  simulator dataset validate /tmp/ds
  simulator run --dataset /tmp/ds --workers 2 --report /tmp/report.json

  # the same as separate processes
  simulator broker --listen 127.0.0.1:9092
  simulator controller --kafka-brokers 127.0.0.1:9092 --listen 127.0.0.1:8080 --dataset-root /tmp
  simulator worker --kafka-brokers 127.0.0.1:9092 --type type1 --controller-url http://127.0.0.1:8080
  simulator sink --listen 127.0.0.1:9000 --dataset /tmp/ds --controller-url http://127.0.0.1:8080 --report /tmp/sink.json
  curl -d '{"path": "ds", "address_override": "127.0.0.1:9000"}' http://127.0.0.1:8080/v1/dataset
  curl -d '{"delay": "2s"}' http://127.0.0.1:8080/v1/start
  curl http://127.0.0.1:8080/v1/status`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(datasetCmd(), generateCmd(), brokerCmd(), controllerCmd(), workerCmd(), sinkCmd(), runCmd(), benchCmd(), benchNaiveCmd(), benchFloorCmd())
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "simulator:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "simulator:", err)
	return 1
}

// envDefaults sets each flag that was not given on the command line from SIMULATOR_<FLAG> (upper
// case, dashes as underscores), so that flag > env > default.
func envDefaults(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		env := "SIMULATOR_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

type logFlags struct{ level, format string }

func (l *logFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "debug, info, warn or error (env SIMULATOR_LOG_LEVEL)")
	fs.StringVar(&l.format, "log-format", "json", "json or text (env SIMULATOR_LOG_FORMAT)")
}

func (l *logFlags) logger() (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch l.format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", l.format)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
