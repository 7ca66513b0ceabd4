package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/simlab/simlab/infra/config"
)

func newValidateCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "validate STACK|FILE...",
		Short: "Validate stack configuration files without the Pulumi CLI",
		Long: `Validate checks stacks/Pulumi.<STACK>.yaml (or the files given) exactly as
'pulumi up' would: unknown keys under simlab: (typos), wrong types and bad values.
Every problem is printed, one per line, with file, line and key; the exit code is 1
when there is any problem. A valid stack prints a one-line summary.

Secure values (simlab:sshPrivateKey) are encrypted in the file; they are checked for
presence only.`,
		Example: `  simlab validate dev
  simlab validate stacks/Pulumi.lab.yaml
  make validate STACK=lab`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, a := range args {
				path := a
				if filepath.Ext(a) != ".yaml" && filepath.Ext(a) != ".yml" {
					path = filepath.Join(dir, "Pulumi."+a+".yaml")
				}
				l, err := config.LoadStackFile(path)
				var errs *config.Errors
				switch {
				case errors.As(err, &errs):
					for _, line := range errs.Lines() {
						fmt.Fprintln(cmd.ErrOrStderr(), line)
					}
					failed++
				case err != nil:
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					failed++
				default:
					fmt.Fprintln(cmd.OutOrStdout(), summary(path, l))
				}
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d stack files invalid", failed, len(args))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "stacks", "directory holding Pulumi.<STACK>.yaml files")
	return cmd
}

func summary(path string, l *config.Loaded) string {
	c := l.Config
	if c.Provider == config.ProviderExisting {
		return fmt.Sprintf("%s: valid: cluster %q, provider existing (kubeconfig %s), %d data-source types",
			path, c.Cluster.Name, c.Existing.Kubeconfig, len(c.Simulator.Sources))
	}
	return fmt.Sprintf("%s: valid: cluster %q, provider %s, %d controller(s), %d worker(s), %d data-source types",
		path, c.Cluster.Name, c.Provider, len(c.NodesByRole(config.RoleController)), len(c.NodesByRole(config.RoleWorker)), len(c.Simulator.Sources))
}
