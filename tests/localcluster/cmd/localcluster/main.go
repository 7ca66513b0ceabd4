// Command localcluster starts a detached local control plane (`up`, used by
// `make cluster-up`) and stops exactly the processes it started (`down`,
// used by `make cluster-down`). See docs/LOCAL-CLUSTER.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/simlab/simlab/tests/localcluster"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localcluster up -dir DIR [-bin DIR] [-nodes N] [-hpa-sync D] [-hpa-downscale D] [-wait-metrics]\n       localcluster down -dir DIR")
	os.Exit(2)
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", ".cache/cluster", "state directory (certificates, kubeconfig, logs, PID file)")
	bin := fs.String("bin", "", "directory of the binaries `make tools` built (default .cache/bin)")
	nodes := fs.Int("nodes", 3, "number of simulated nodes")
	hpaSync := fs.Duration("hpa-sync", 2*time.Second, "--horizontal-pod-autoscaler-sync-period")
	hpaDown := fs.Duration("hpa-downscale", 5*time.Minute, "--horizontal-pod-autoscaler-downscale-stabilization")
	waitMetrics := fs.Bool("wait-metrics", false, "also wait until the metrics API reports every node")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	_ = fs.Parse(args)
	if *nodes < 1 {
		return fmt.Errorf("-nodes must be at least 1, got %d", *nodes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	t0 := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{
		Nodes: *nodes, Dir: *dir, BinDir: *bin, Detach: true,
		HPASyncPeriod: *hpaSync, HPADownscaleStabilization: *hpaDown, WaitForMetrics: *waitMetrics,
		Logf: func(format string, a ...any) { fmt.Printf(format+"\n", a...) },
	})
	if err != nil {
		return err
	}
	if err := c.WriteInfo(); err != nil {
		return err
	}
	fmt.Printf("local control plane up in %v: %d nodes Ready, API server %s\n", time.Since(t0).Round(time.Millisecond), len(c.Nodes), c.Server)
	fmt.Printf("PIDs in %s/%s, logs in %s/logs; stop with: make cluster-down\n", c.Dir, localcluster.PIDFile, c.Dir)
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	return nil
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	dir := fs.String("dir", ".cache/cluster", "state directory given to up")
	_ = fs.Parse(args)
	stopped, err := localcluster.StopDir(*dir)
	for _, s := range stopped {
		fmt.Println("stopped", s)
	}
	if err != nil {
		return err
	}
	if len(stopped) == 0 {
		fmt.Println("no local control plane runs from", *dir)
	}
	return nil
}
