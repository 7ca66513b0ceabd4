package main

import (
	"errors"

	"github.com/simlab/simlab/simulator/campaign"
	"github.com/spf13/cobra"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ce *campaign.ExitError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "simlab",
		Short: "Helper commands for a simlab load-test lab",
		Long: `simlab builds a complete load-test lab as one Pulumi stack: Fedora CoreOS nodes,
Kubernetes with kubeadm and Flannel, Ceph, Kafka, NFS and the network simulator.

The stack itself is deployed with the Pulumi CLI (make up STACK=<env>). This command
holds the helpers around it: validating stack files without Pulumi; mirroring,
checking and serving the pinned artifacts and each node's Ignition; building the
simulator's image without a container engine; running test campaigns on the lab
and writing their reports (docs/CAMPAIGNS.md).`,
		Example: `  simlab validate stacks/Pulumi.dev.yaml
  simlab artifacts mirror --dir .artifacts --stack dev
  simlab artifacts serve --dir .artifacts --stack dev --listen 0.0.0.0:8080 --verify
  simlab artifacts ignition dev-worker-1 --stack dev
  simlab image build --dir .artifacts
  simlab campaign run --controller-url http://127.0.0.1:8080 --dataset ./ds --thresholds thresholds.txt`,
		SilenceUsage: true,
	}
	root.AddCommand(newValidateCmd())
	root.AddCommand(newPlanCmd())
	root.AddCommand(newArtifactsCmd())
	root.AddCommand(newImageCmd())
	root.AddCommand(campaign.Command(resolveStack))
	return root
}
