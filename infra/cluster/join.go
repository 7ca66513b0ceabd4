package cluster

import (
	"fmt"

	"github.com/pulumi/pulumi-command/sdk/go/command/remote"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/nodes"
)

// The join phase: a worker joins with the bootstrap token (refreshed on
// the controller first: tokens expire) and the controller's CA hash,
// skipped when the node has a kubelet.conf; its undo is reset.

// joinPhase joins a worker with the JoinConfiguration on stdin.
func joinPhase() Phase {
	return Phase{
		Prepare: writeConfig("join.yaml"),
		Done:    "sudo test -f /etc/kubernetes/kubelet.conf", Skipped: "kubeadm join: already joined, skipped",
		Run:  "sudo kubeadm join --config " + ConfigDir + "/join.yaml",
		Undo: resetScript,
	}
}

// tokenPhase (re)creates the bootstrap token on the controller, for one
// worker's join, from its kubeadm config on stdin (RenderTokenRefresh).
func tokenPhase() Phase { return Phase{Run: tokenScript()} }

// joinWorker refreshes the bootstrap token on the controller, joins the
// worker, then approves its kubelet serving certificate. Deleting the
// resources drains and deletes the Node first, then resets the worker.
func joinWorker(ctx *pulumi.Context, comp *Cluster, args *Args, ctrl, w *nodes.Node,
	token, caHash pulumi.StringOutput, fetch *remote.Command) (join, admit *remote.Command, err error) {
	parent := pulumi.Parent(comp)
	// Tokens expire (24h); a worker added days later gets the same token
	// refreshed for an hour.
	tokenConfig := pulumi.ToSecret(token.ApplyT(func(tok string) (string, error) {
		out, err := RenderTokenRefresh(w.Name, tok, args.Versions.Kubernetes)
		return string(out), err
	})).(pulumi.StringOutput)
	refresh, err := tokenPhase().Command(ctx, w.Name+"-join-token", Step{
		Connection: ctrl.Connection, Stdin: tokenConfig, Triggers: pulumi.Array{w.InstanceID, comp.Init.ID()},
	}, parent, pulumi.DependsOn([]pulumi.Resource{fetch}))
	if err != nil {
		return nil, nil, fmt.Errorf("refreshing the join token for %s: %w", w.Name, err)
	}

	joinConfig := pulumi.ToSecret(pulumi.All(token, caHash, ctrl.Address).ApplyT(func(v []any) (string, error) {
		out, err := RenderJoin(JoinParams{NodeName: w.Name, ControllerAddress: v[2].(string),
			Token: v[0].(string), CACertHash: v[1].(string)})
		return string(out), err
	})).(pulumi.StringOutput)
	join, err = joinPhase().Command(ctx, w.Name+"-kubeadm-join", Step{
		Connection: w.Connection, Stdin: joinConfig, Triggers: pulumi.Array{w.InstanceID, comp.Init.ID()},
	}, parent, pulumi.DependsOn(append([]pulumi.Resource{comp.Init, refresh}, w.Ready...)))
	if err != nil {
		return nil, nil, fmt.Errorf("joining %s: %w", w.Name, err)
	}

	// Created after the join, so deleted before it: drain and delete the
	// Node while the worker still runs, then the join's delete resets it.
	admit, err = admitPhase(w.Name, true).Command(ctx, w.Name+"-admit", Step{
		Connection: ctrl.Connection, Triggers: pulumi.Array{join.ID()},
	}, parent, pulumi.DependsOn([]pulumi.Resource{join}))
	if err != nil {
		return nil, nil, fmt.Errorf("admitting %s: %w", w.Name, err)
	}
	comp.Ready = append(comp.Ready, admit)
	return join, admit, nil
}

// tokenScript (re)creates the bootstrap token whose kubeadm config
// (RenderTokenRefresh) it reads from stdin, using the controller's
// admin.conf. The config goes to a file in a private scratch directory,
// removed on exit: the token is never an argument of any program.
func tokenScript() string { return tokenScriptWith("sudo kubeadm", "") }

// tokenScriptWith is tokenScript with another kubeadm command and extra
// flags such as --kubeconfig (tests).
func tokenScriptWith(kubeadm, flags string) string {
	return fmt.Sprintf(`set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/token.yaml"
create() { %[1]s token create --config "$dir/token.yaml" %[2]s >/dev/null; }
create 2>/dev/null || {
  id=$(sed -n 's/^[- ]*token: *"\{0,1\}\([a-z0-9]\{6\}\)\..*/\1/p' "$dir/token.yaml")
  %[1]s token delete "$id" %[2]s >/dev/null 2>&1 || true
  create
}`, kubeadm, flags)
}
