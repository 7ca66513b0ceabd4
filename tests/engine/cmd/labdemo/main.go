// Command labdemo is `make demo`: the project's main job on one machine. It
// starts a local control plane (kube-apiserver, etcd, kwok nodes), runs
// `pulumi up` of the committed local stack through the real Pulumi engine and
// Kubernetes provider (the resource table is the engine's own output), runs a
// command in between (make demo passes a short simulator replay), then
// `pulumi destroy`, and stops the control plane.
//
// The charts and CRD manifests come from a stand-in artifact mirror
// (tests/standin), since the upstream charts cannot be fetched here; with
// internet, `simlab artifacts mirror --stack local` makes the real one.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/tests/engine"
	"github.com/simlab/simlab/tests/localcluster"
	"github.com/simlab/simlab/tests/standin"
)

func main() {
	replay := flag.String("replay", "", "shell command to run while the stack is up")
	nodes := flag.Int("nodes", 3, "simulated nodes of the local control plane")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: labdemo [-replay CMD] [-nodes N]\n\n"+
			"Starts a local control plane, runs `pulumi up` of stacks/Pulumi.local.yaml through the real\n"+
			"Pulumi engine, runs CMD, then `pulumi destroy`, and stops the control plane.\n"+
			"Needs `make tools engine-tools` (make demo builds them).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*replay, *nodes); err != nil {
		fmt.Fprintln(os.Stderr, "labdemo:", err)
		os.Exit(1)
	}
}

func run(replay string, nodes int) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	root, err := localcluster.RepoRoot()
	if err != nil {
		return err
	}
	tl, err := engine.FindTools(root)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "simlab-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step := func(what string, since time.Time) {
		fmt.Printf("\n== %s (%.1f s)\n", what, time.Since(since).Seconds())
	}
	t0 := time.Now()
	fmt.Printf("== starting a local control plane with %d kwok nodes\n", nodes)
	c, err := localcluster.Start(ctx, localcluster.Options{Nodes: nodes})
	if err != nil {
		return err
	}
	defer c.Stop()
	step("control plane ready", t0)
	// No operator runs on kwok nodes: a stand-in reports Kafka (and Ceph)
	// ready, so `pulumi up` does not wait for them until its timeout.
	go (&localcluster.Readiness{}).Run(ctx, c)

	mirror := filepath.Join(work, "mirror")
	if _, err := standin.Mirror(root, mirror, config.DefaultVersions()); err != nil {
		return err
	}
	lab, err := engine.Open(ctx, engine.Options{Root: root, Tools: tl, Dir: work, Stack: "demo", From: "local"})
	if err != nil {
		return err
	}
	if err := lab.SetConfig(ctx, map[string]string{
		"simlab:existing.kubeconfig": c.Kubeconfig,
		"simlab:artifacts.dir":       mirror,
	}); err != nil {
		return err
	}
	t1 := time.Now()
	fmt.Println("\n== pulumi up (stack demo, config from stacks/Pulumi.local.yaml)")
	if _, err := lab.Stack.Up(ctx, optup.ProgressStreams(os.Stdout)); err != nil {
		destroy(lab)
		return fmt.Errorf("pulumi up: %w", err)
	}
	step("pulumi up done", t1)

	if replay != "" {
		fmt.Printf("\n== %s\n", replay)
		cmd := exec.CommandContext(ctx, "sh", "-c", replay)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			destroy(lab)
			return fmt.Errorf("replay: %w", err)
		}
	}
	t2 := time.Now()
	if err := destroy(lab); err != nil {
		return err
	}
	step("pulumi destroy done", t2)
	step("demo done", t0)
	return nil
}

func destroy(lab *engine.Lab) error {
	fmt.Println("\n== pulumi destroy")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := lab.Stack.Destroy(ctx, optdestroy.ProgressStreams(os.Stdout)); err != nil {
		return fmt.Errorf("pulumi destroy: %w", err)
	}
	return nil
}
