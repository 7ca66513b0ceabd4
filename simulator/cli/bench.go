package cli

import (
	"encoding/json"
	"os"
	"time"

	"github.com/simlab/simlab/simulator/bench"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/spf13/cobra"
)

func benchCmd() *cobra.Command {
	o := bench.Options{Duration: 5 * time.Second, Sources: 100, Many: 10000, Huge: 100000}
	var rates []int
	c := &cobra.Command{
		Use:   "bench",
		Short: "run the simulator benchmarks (worker as a child process) and print a table",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Exe, o.Out, o.Rates = exe, cmd.OutOrStdout(), rates
			return bench.Run(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.IntSliceVar(&rates, "rates", []int{10000, 30000, 60000}, "records/s of the scheduled scenarios")
	f.DurationVar(&o.Duration, "duration", o.Duration, "replay length of each rate scenario")
	f.IntVar(&o.Sources, "sources", o.Sources, "sources in the rate scenarios")
	f.IntVar(&o.Many, "many", o.Many, "sources in the many-sources scenario")
	f.IntVar(&o.Huge, "huge", o.Huge, "sources in the huge scenario (one worker, keyed partitions)")
	f.IntSliceVar(&o.Pinned, "pinned-rates", []int{100000, 150000, 200000, 250000}, "records/s of the pinned scenario (worker alone on core 1, the rest on core 0)")
	f.StringSliceVar(&o.Scenarios, "scenarios", nil, "subset to run: floor, rates, paths, naive, ceiling, many, huge, pinned, handover (default all)")
	return c
}

func benchNaiveCmd() *cobra.Command {
	var dir, sut string
	var startNs int64
	c := &cobra.Command{
		Use:    "bench-naive",
		Short:  "benchmark baseline: goroutine-per-source replay without Kafka",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ds, err := dataset.Load(dir)
			if err != nil {
				return err
			}
			return bench.Naive(cmd.Context(), ds, sut, time.Unix(0, startNs))
		},
	}
	c.Flags().StringVar(&dir, "dataset", "", "dataset")
	c.Flags().StringVar(&sut, "sut", "", "TCP address")
	c.Flags().Int64Var(&startNs, "start", 0, "start, unix ns")
	return c
}

func benchFloorCmd() *cobra.Command {
	var o bench.FloorOptions
	c := &cobra.Command{
		Use:    "bench-floor",
		Short:  "benchmark floor: paced loopback TCP writes of 100-byte records, nothing else",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := bench.Floor(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Addr, "sut", "", "TCP address")
	f.IntVar(&o.Conns, "conns", 100, "connections")
	f.IntVar(&o.Rate, "rate", 60000, "records/s")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "send phase")
	f.IntVar(&o.PerWrite, "per-write", 1, "records per write")
	f.BoolVar(&o.Uring, "uring", false, "submit each millisecond's writes in one io_uring_enter")
	return c
}
