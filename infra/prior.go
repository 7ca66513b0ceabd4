package infra

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/storage"
)

// priorCharts reads, from the stack's own previous deployment, how its
// storage charts were installed (storage.ChartsOutput), so that a stack whose
// charts were helm.sh/v3 Releases moves to helm.sh/v4 Charts without helm
// uninstalling anything (docs/DAY2.md). A program cannot see its state; a
// StackReference to the stack itself reads the outputs of its last update
// (none for a stack never deployed; the mock engine has none either).
func priorCharts(ctx *pulumi.Context) (storage.PriorCharts, error) {
	self := ctx.Organization() + "/" + ctx.Project() + "/" + ctx.Stack()
	ref, err := pulumi.NewStackReference(ctx, "previous-deployment", &pulumi.StackReferenceArgs{Name: pulumi.String(self)})
	if err != nil {
		return storage.PriorCharts{}, fmt.Errorf("reading the previous deployment of %s: %w", self, err)
	}
	charts, err := ref.GetOutputDetails(storage.ChartsOutput)
	if err != nil {
		return storage.PriorCharts{}, fmt.Errorf("reading output %s of %s: %w", storage.ChartsOutput, self, err)
	}
	// Every deployment of the program exports provider: its absence means
	// the stack was never deployed.
	deployed, err := ref.GetOutputDetails("provider")
	if err != nil {
		return storage.PriorCharts{}, fmt.Errorf("reading output provider of %s: %w", self, err)
	}
	p, err := storage.PriorChartsFrom(charts.Value, deployed.Value != nil)
	if err != nil {
		return storage.PriorCharts{}, fmt.Errorf("previous deployment of %s: %w", self, err)
	}
	return p, nil
}
