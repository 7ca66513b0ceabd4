package cluster

import (
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/remote"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Phase is one remote step of the cluster's lifecycle on one node, in the
// manner of k0sctl's phases: what it does, how it knows it is already
// done, what it does when an input changes on the same machine, and its
// undo. Each phase is built by a function in its own file (init.go,
// join.go, admit.go, upgrade.go; reset.go is the undo of init and join),
// and becomes one pulumi-command remote command (Phase.Command), so the
// day-2 policy (docs/DAY2.md) is what these fields say:
//
//   - create runs Script: Prepare, then Run unless Done holds;
//   - update (an input changed, no trigger did) runs Update, or Script
//     again when Update is empty;
//   - delete runs Undo (nothing when empty);
//   - a changed trigger replaces the command: Undo, then Script.
type Phase struct {
	// Prepare runs first, every time (it writes what Run reads).
	Prepare string
	// Done is a shell condition that holds when the step is already done;
	// then Run is skipped and Skipped is printed. Empty: Run always runs
	// (the step is idempotent by itself).
	Done, Skipped string
	// Run does the step.
	Run string
	// Update is the update script ("" runs Script again).
	Update string
	// Undo is the delete script ("" does nothing).
	Undo string
}

// Script is the phase's create script.
func (p Phase) Script() string {
	var b strings.Builder
	if p.Prepare != "" {
		b.WriteString(p.Prepare + "\n")
	}
	if p.Done != "" {
		b.WriteString("if " + p.Done + `; then echo "` + p.Skipped + `"; exit 0; fi` + "\n")
	}
	b.WriteString(p.Run)
	return b.String()
}

// Step is where and with what a phase runs on one node.
type Step struct {
	// Connection reaches the node the phase runs on.
	Connection remote.ConnectionInput
	// Stdin is handed to every script (a kubeadm config, a token, ...).
	Stdin pulumi.StringInput
	// Triggers replace the command (undo, then create) when they change.
	Triggers pulumi.ArrayInput
	// Logging overrides pulumi-command's output logging.
	Logging remote.LoggingPtrInput
}

// Command registers phase p as the remote command name.
func (p Phase) Command(ctx *pulumi.Context, name string, s Step, opts ...pulumi.ResourceOption) (*remote.Command, error) {
	args := &remote.CommandArgs{
		Connection: s.Connection,
		Create:     pulumi.String(p.Script()),
		Stdin:      s.Stdin,
		Triggers:   s.Triggers,
		Logging:    s.Logging,
	}
	if p.Update != "" {
		args.Update = pulumi.String(p.Update)
	}
	if p.Undo != "" {
		args.Delete = pulumi.String(p.Undo)
	}
	return remote.NewCommand(ctx, name, args, opts...)
}
