package nodes

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
)

// Roll orders the workers' machines one at a time, on steps of the layer
// above this one (the cluster's), in two cases:
//
//   - a replacement (simlab:workers.replace set): each libvirt worker's
//     disks (and so its domain, join and admission after them) wait for
//     the previous worker's settle step (joined again, Ceph whole again).
//     Under deleteBeforeReplace the engine replaces a worker's disks when
//     it registers them, so worker N+1 is drained, reset and recreated
//     only after worker N is back;
//   - a resize (the workers' cpus or memoryMiB changed since the last
//     `up`): each running worker's domain, whose update restarts it, waits
//     for the worker's own drained step (cluster/drained.go; a step that
//     does nothing unless the size changed), and, in a resize, that step
//     for the previous worker's settle step, whose update brings that
//     worker back (uncordoned, Ceph whole again).
//
// The gates are outputs resolved once the layer above registered its
// steps (Release); Abort rejects them when the program fails before, so no
// registration waits forever. A worker the `up` creates waits for no
// other, and so do all workers without a replacement or a resize: they
// are created, changed and destroyed side by side.
type Roll struct {
	order   []string         // the workers, in order
	disks   map[string]*gate // worker -> the previous worker's settle step (replacement)
	domains map[string]*gate // running worker -> its own drained step (resize)
	done    bool
}

// gate is a dependency on a resource registered later, above this layer.
type gate struct {
	out     pulumi.ResourceArrayOutput
	resolve func(any)
	reject  func(error)
}

func newGate(ctx *pulumi.Context) *gate {
	out, resolve, reject := ctx.NewOutput()
	return &gate{
		out:     out.ApplyT(func(v any) []pulumi.Resource { return v.([]pulumi.Resource) }).(pulumi.ResourceArrayOutput),
		resolve: resolve, reject: reject,
	}
}

// NewRoll makes the gates of the workers among nodes: with replace, each
// worker's disks after the previous worker's settle step; for each worker
// in running (those the last `up` made), its domain after its drained step.
func NewRoll(ctx *pulumi.Context, nodes []config.Node, replace bool, running []string) *Roll {
	r := &Roll{disks: map[string]*gate{}, domains: map[string]*gate{}}
	for _, n := range nodes {
		if n.Role == config.RoleWorker {
			r.order = append(r.order, n.Name)
		}
	}
	if replace {
		for _, w := range r.order[min(1, len(r.order)):] {
			r.disks[w] = newGate(ctx)
		}
	}
	for _, w := range running {
		r.domains[w] = newGate(ctx)
	}
	return r
}

// after is the option that makes a worker's disks wait for its predecessor
// (none for the first worker, without a replacement or without a Roll).
func (r *Roll) after(worker string) []pulumi.ResourceOption {
	if r == nil {
		return nil
	}
	return r.wait(r.disks, worker)
}

// beforeRestart is the option that makes a running worker's domain wait for
// its drained step, which drains it when it is resized (none for a worker
// this `up` creates).
func (r *Roll) beforeRestart(worker string) []pulumi.ResourceOption {
	if r == nil {
		return nil
	}
	return r.wait(r.domains, worker)
}

// wait is the option that waits for worker's gate in gates, if it has one.
func (r *Roll) wait(gates map[string]*gate, worker string) []pulumi.ResourceOption {
	if g, ok := gates[worker]; ok {
		return []pulumi.ResourceOption{pulumi.DependsOnInputs(g.out)}
	}
	return nil
}

// Release opens the gates: each worker's disks wait for settled[previous
// worker], each running worker's domain for drained[worker] (the steps
// the layer above registered, by node name).
func (r *Roll) Release(settled, drained map[string]pulumi.Resource) error {
	if r == nil || r.done {
		return nil
	}
	for i, w := range r.order {
		if g, ok := r.disks[w]; ok {
			prev := r.order[i-1]
			res, ok := settled[prev]
			if !ok {
				err := fmt.Errorf("rolling the workers: no settle step of %s for %s to wait for", prev, w)
				r.Abort(err)
				return err
			}
			g.resolve([]pulumi.Resource{res})
			delete(r.disks, w)
		}
		if g, ok := r.domains[w]; ok {
			res, ok := drained[w]
			if !ok {
				err := fmt.Errorf("resizing the workers: no drained step of %s for its domain to wait for", w)
				r.Abort(err)
				return err
			}
			g.resolve([]pulumi.Resource{res})
			delete(r.domains, w)
		}
	}
	if len(r.domains) > 0 {
		err := fmt.Errorf("resizing the workers: %d running worker(s) are not workers of the stack", len(r.domains))
		r.Abort(err)
		return err
	}
	r.done = true
	return nil
}

// Abort rejects the gates not released yet with err.
func (r *Roll) Abort(err error) {
	if r == nil || r.done {
		return
	}
	for _, gates := range []map[string]*gate{r.disks, r.domains} {
		for _, g := range gates {
			g.reject(err)
		}
	}
	r.done = true
}
