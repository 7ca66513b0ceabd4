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
		Use:           "simulator",
		Short:         "network simulator: replays datasets to a system under test through Kafka",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(datasetCmd(), generateCmd(), brokerCmd(), controllerCmd(), workerCmd(), sinkCmd(), runCmd(), benchCmd(), benchNaiveCmd())
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
