package nodes

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
)

// Roll orders the replacement of workers one at a time: with
// simlab:workers.replace set, each libvirt worker's disks (and so its
// domain, join and admission after them) wait for the previous worker's
// last step in a layer above this one (the cluster's settle phase: joined
// again, Ceph whole again). Under deleteBeforeReplace the engine replaces
// a worker's disks when it registers them, so worker N+1 is drained,
// reset and recreated only after worker N is back.
//
// The gates are outputs resolved once the layer above registered its
// steps (Release); Abort rejects them when the program fails before, so
// no registration waits forever. Without a replacement to acknowledge the
// stack has no Roll, and workers are created side by side.
type Roll struct {
	order   []string
	gates   map[string]pulumi.ResourceArrayOutput
	resolve map[string]func(any)
	reject  map[string]func(error)
	done    bool
}

// NewRoll makes the gates of the workers among nodes, in their order.
func NewRoll(ctx *pulumi.Context, nodes []config.Node) *Roll {
	r := &Roll{gates: map[string]pulumi.ResourceArrayOutput{},
		resolve: map[string]func(any){}, reject: map[string]func(error){}}
	for _, n := range nodes {
		if n.Role == config.RoleWorker {
			r.order = append(r.order, n.Name)
		}
	}
	for _, w := range r.order[min(1, len(r.order)):] {
		out, resolve, reject := ctx.NewOutput()
		r.gates[w] = out.ApplyT(func(v any) []pulumi.Resource { return v.([]pulumi.Resource) }).(pulumi.ResourceArrayOutput)
		r.resolve[w], r.reject[w] = resolve, reject
	}
	return r
}

// after is the option that makes worker wait for its predecessor (none for
// the first worker or without a Roll).
func (r *Roll) after(worker string) []pulumi.ResourceOption {
	if r == nil {
		return nil
	}
	if g, ok := r.gates[worker]; ok {
		return []pulumi.ResourceOption{pulumi.DependsOnInputs(g)}
	}
	return nil
}

// Release opens the gates: each worker after the first waits for
// last[previous worker], its last step above this layer.
func (r *Roll) Release(last map[string]pulumi.Resource) error {
	if r == nil || r.done {
		return nil
	}
	for i, w := range r.order[min(1, len(r.order)):] {
		prev := r.order[i]
		res, ok := last[prev]
		if !ok {
			err := fmt.Errorf("rolling the workers: no last step of %s for %s to wait for", prev, w)
			r.Abort(err)
			return err
		}
		r.resolve[w]([]pulumi.Resource{res})
	}
	r.done = true
	return nil
}

// Abort rejects the gates not released yet with err.
func (r *Roll) Abort(err error) {
	if r == nil || r.done {
		return
	}
	for _, w := range r.order[min(1, len(r.order)):] {
		r.reject[w](err)
	}
	r.done = true
}
