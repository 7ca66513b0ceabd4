package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/plan"
)

func newPlanCmd() *cobra.Command {
	var dir, from, fromMirror string
	var failOnRefusal bool
	cmd := &cobra.Command{
		Use:   "plan STACK --from OLD.yaml",
		Short: "Show what `pulumi up` would create, update, replace and delete for a config change",
		Long: `Plan compares two configs of a stack: the one 'pulumi up' last ran with (--from, e.g. the
stack file as committed: git show HEAD:stacks/Pulumi.dev.yaml > /tmp/old.yaml) and
stacks/Pulumi.<STACK>.yaml as it is now. It runs the program itself for both under
Pulumi's mock engine and lists what would be replaced, deleted, updated and created,
destructive first, by resource type and name — the answer before 'pulumi up'.

The day-2 guards are run as 'pulumi up' runs them: a change up would refuse (a controller
replaced, Ceph shrunk: docs/DAY2.md) is listed first, with the guard's message and the key
that acknowledges it.

Nothing is touched: no Pulumi backend, cluster or hypervisor. No secret is read: the SSH
key is a placeholder in both runs, so a rotated key does not show. Both configs need their
artifact mirror (simlab:artifacts.dir, or --from-mirror for the old one when a version bump
re-made it). A plan is computed from inputs alone, as 'pulumi preview' does before any
provider answers: outputs only a provider knows (a new VM's address) are not compared.`,
		Example: `  git show HEAD:stacks/Pulumi.dev.yaml > /tmp/dev-old.yaml
  simlab plan dev --from /tmp/dev-old.yaml
  simlab plan lab --from lab-last-campaign.yaml --fail-on-refusal`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				return &exitError{code: 2, err: errors.New("--from OLD.yaml is required: the config `pulumi up` last ran with")}
			}
			path := args[0]
			if filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml" {
				path = filepath.Join(dir, "Pulumi."+args[0]+".yaml")
			}
			stack := stackName(path)
			newCfg, err := loadForPlan(cmd.ErrOrStderr(), path)
			if err != nil {
				return err
			}
			oldCfg, err := loadForPlan(cmd.ErrOrStderr(), from)
			if err != nil {
				return err
			}
			if fromMirror != "" {
				oldCfg.Artifacts.Dir = fromMirror
			}
			p, err := plan.Compute(stack, oldCfg, newCfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Plan for stack %s: %s, from %s (the program under the mock engine; nothing touched, no secret read)\n\n",
				stack, path, from)
			p.Write(cmd.OutOrStdout())
			if failOnRefusal && len(p.Refused) > 0 {
				return &exitError{code: 3, err: fmt.Errorf("%d guard(s) would refuse this change", len(p.Refused))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "stacks", "directory holding Pulumi.<STACK>.yaml files")
	cmd.Flags().StringVar(&from, "from", "", "the stack file `pulumi up` last ran with (required)")
	cmd.Flags().StringVar(&fromMirror, "from-mirror", "", "the artifact mirror of the old config (default: its simlab:artifacts.dir)")
	cmd.Flags().BoolVar(&failOnRefusal, "fail-on-refusal", false, "exit 3 when a guard would refuse the change (for CI)")
	return cmd
}

// stackName is STACK of a Pulumi.STACK.yaml path.
func stackName(path string) string {
	b := filepath.Base(path)
	b = b[:len(b)-len(filepath.Ext(b))]
	if len(b) > len("Pulumi.") && b[:len("Pulumi.")] == "Pulumi." {
		return b[len("Pulumi."):]
	}
	return b
}

// loadForPlan loads a stack file, printing every problem like validate.
func loadForPlan(stderr io.Writer, path string) (*config.Loaded, error) {
	l, err := config.LoadStackFile(path)
	var errs *config.Errors
	if errors.As(err, &errs) {
		for _, line := range errs.Lines() {
			fmt.Fprintln(stderr, line)
		}
		return nil, &exitError{code: 1, err: fmt.Errorf("%s is invalid", path)}
	}
	return l, err
}
