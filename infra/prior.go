package infra

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
	"github.com/simlab/simlab/infra/storage"
)

// previous is what the stack's own previous deployment recorded in its
// outputs. A program cannot see its state; a StackReference to the stack
// itself reads the outputs of its last successful update (none for a stack
// never deployed; the mock engine has none unless a test gives them).
type previous struct {
	// charts says how the storage charts were installed
	// (storage.ChartsOutput), so that a stack whose charts were helm.sh/v3
	// Releases moves to helm.sh/v4 Charts without helm uninstalling
	// anything (docs/DAY2.md).
	charts storage.PriorCharts
	// nodes are the node names it had (the output nodes).
	nodes []string
	// workerSize is the workers' config.Pool.Size it had
	// (config.WorkerSizeOutput; "" when it recorded none).
	workerSize string
	// guards are its guards' records (guard.Output), by guard name.
	guards map[string]string
}

// readPrevious reads the stack's previous deployment.
func readPrevious(ctx *pulumi.Context) (previous, error) {
	self := ctx.Organization() + "/" + ctx.Project() + "/" + ctx.Stack()
	ref, err := pulumi.NewStackReference(ctx, "previous-deployment", &pulumi.StackReferenceArgs{Name: pulumi.String(self)})
	if err != nil {
		return previous{}, fmt.Errorf("reading the previous deployment of %s: %w", self, err)
	}
	out := map[string]any{}
	for _, name := range []string{storage.ChartsOutput, "provider", "nodes", config.WorkerSizeOutput, guard.Output} {
		d, err := ref.GetOutputDetails(name)
		if err != nil {
			return previous{}, fmt.Errorf("reading output %s of %s: %w", name, self, err)
		}
		out[name] = d.Value
	}
	var p previous
	// Every deployment of the program exports provider: its absence means
	// the stack was never deployed.
	if p.charts, err = storage.PriorChartsFrom(out[storage.ChartsOutput], out["provider"] != nil); err != nil {
		return previous{}, fmt.Errorf("previous deployment of %s: %w", self, err)
	}
	nodes, _ := out["nodes"].([]any)
	for _, n := range nodes {
		if s, ok := n.(string); ok {
			p.nodes = append(p.nodes, s)
		}
	}
	p.workerSize, _ = out[config.WorkerSizeOutput].(string)
	if g, ok := out[guard.Output].(map[string]any); ok {
		p.guards = map[string]string{}
		for name, v := range g {
			if s, ok := v.(string); ok {
				p.guards[name] = s
			}
		}
	}
	return p, nil
}

// workers are the previous deployment's workers still in the stack, in
// order (libvirt; none for another provider).
func (p previous) workers(c *config.Config) []string {
	if c.Provider != config.ProviderLibvirt {
		return nil
	}
	had := map[string]bool{}
	for _, n := range p.nodes {
		had[n] = true
	}
	var out []string
	for _, n := range c.NodesByRole(config.RoleWorker) {
		if had[n.Name] {
			out = append(out, n.Name)
		}
	}
	return out
}

// resized says whether this `up` resizes the running workers' machines
// in place: the workers' size (cpus, memoryMiB) differs from the one the
// previous deployment recorded. A stack deployed before the size was
// recorded resizes none one at a time (its first `up` with this program
// records it).
func (p previous) resized(c *config.Config) bool {
	return p.workerSize != "" && p.workerSize != c.Workers.Size()
}

// RecordedOutputs are the stack outputs a deployment of c records that the
// next `up` reads back (readPrevious), but the guards' records
// (guard.Output, which only a run of the program makes: Stack.Guards): what
// `simlab plan` and the day-2 tests give the mock engine as the previous
// deployment of c, whose guards they run themselves (plan.Guards).
func RecordedOutputs(c *config.Config) map[string]any {
	var names []any
	for _, n := range c.Nodes() {
		names = append(names, n.Name)
	}
	out := map[string]any{"provider": c.Provider, "nodes": names}
	if c.Provider == config.ProviderLibvirt {
		out[config.WorkerSizeOutput] = c.Workers.Size()
	}
	if !c.Storage.HelmReleases {
		// With Releases the output lists the Releases registered; left out,
		// every enabled chart's Release counts (storage.PriorChartsFrom).
		out[storage.ChartsOutput] = map[string]any{"kind": storage.ChartsAsCharts, "releases": []any{}}
	}
	return out
}
