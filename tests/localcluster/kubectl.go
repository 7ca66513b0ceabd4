package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// kubectlTimeout bounds Kubectl calls made without a context.
const kubectlTimeout = 2 * time.Minute

// Kubectl runs kubectl against the cluster with args and returns its
// standard output; on failure the error holds the command and its stderr.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	return c.KubectlContext(ctx, nil, args...)
}

// KubectlContext runs kubectl with args and stdin (may be nil) until ctx ends.
func (c *Cluster) KubectlContext(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	full := append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)
	cmd := exec.CommandContext(ctx, c.Bin.Kubectl, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Apply server-side-applies a YAML or JSON manifest (several documents allowed).
func (c *Cluster) Apply(ctx context.Context, manifest []byte) error {
	_, err := c.KubectlContext(ctx, bytes.NewReader(manifest), "apply", "--server-side", "--force-conflicts",
		"--field-manager=simlab-tests", "-f", "-")
	return err
}

// SetPodCPU sets the simulated CPU usage of every container of a pod (a
// quantity like "800m"); metrics-server reports it after its next scrapes.
func (c *Cluster) SetPodCPU(ctx context.Context, namespace, pod, cpu string) error {
	_, err := c.KubectlContext(ctx, nil, "-n", namespace, "annotate", "--overwrite", "pod", pod, CPUAnnotation+"="+cpu)
	return err
}

// StartT starts a cluster for a test and stops it when the test ends: it
// skips (or fails when CI=true) if the binaries are missing, fails the test
// if the cluster does not come up within 3 minutes, and logs progress and,
// on failure, where the component logs are.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	RequireBinaries(t)
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting the local control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() && c.tempDir {
			// Keep the logs of a failed test: Stop removes only temp dirs it made.
			c.tempDir = false
			t.Logf("local control plane state and logs kept in %s", c.Dir)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the local control plane: %v", err)
		}
	})
	return c
}
