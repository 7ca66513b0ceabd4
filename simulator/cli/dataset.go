package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
	"github.com/spf13/cobra"
)

func datasetCmd() *cobra.Command {
	c := &cobra.Command{Use: "dataset", Short: "inspect datasets"}
	c.AddCommand(&cobra.Command{
		Use:   "validate DIR",
		Short: "check a dataset; lists every problem with file and line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := dataset.Load(args[0])
			var ve *dataset.ValidationError
			if errors.As(err, &ve) {
				for _, p := range ve.Strings() {
					fmt.Fprintln(cmd.OutOrStdout(), p)
				}
				return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", args[0], len(ve.Problems))}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: %d types, %d sources, %d records, span %s\n",
				args[0], len(d.Types()), len(d.Sources), d.RecordCount(), d.Span)
			return nil
		},
	})
	return c
}

func generateCmd() *cobra.Command {
	o := dataset.DefaultGenOptions()
	var out string
	c := &cobra.Command{
		Use:   "generate --out DIR",
		Short: "write a synthetic dataset (defaults replay in about 10 s)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			if err := dataset.Generate(out, o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d types x %d sources x %d records over %s\n",
				out, o.Types, o.SourcesPer, o.RecordsPer, o.Span)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&out, "out", "", "directory to create")
	f.IntVar(&o.Types, "types", o.Types, "data-source types")
	f.IntVar(&o.SourcesPer, "sources", o.SourcesPer, "sources per type")
	f.IntVar(&o.RecordsPer, "records", o.RecordsPer, "records per source")
	f.DurationVar(&o.Span, "span", o.Span, "time span of the records (offsets in [0, span))")
	f.IntVar(&o.RecordSize, "size", o.RecordSize, "record size in bytes")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "random seed")
	f.StringVar(&o.SUTAddress, "sut", o.SUTAddress, "TCP address of the SUT written into every source.json")
	f.StringVar(&o.Framing, "framing", o.Framing, "newline, length32 or raw")
	f.StringVar(&o.Protocol, "protocol", "tcp", "tcp (workers push to --sut) or sftp (logins <type>-<instance>, password in $"+dataset.SFTPPasswordEnv+")")
	_ = time.Second
	return c
}
