package cli

import (
	"os"
	"time"

	"github.com/simlab/simlab/simulator/bench"
	"github.com/spf13/cobra"
)

func benchCmd() *cobra.Command {
	o := bench.Options{Duration: 5 * time.Second, Sources: 100, Many: 10000}
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
	return c
}
