package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/simulator/campaign"
)

// resolveStack is `simlab campaign --stack`'s route to the controller: the stack file says
// where the simulator runs (its namespace, the SUT) and where the cluster's kubeconfig is; the
// client goes through the API server's proxy to the controller's Service.
func resolveStack(ctx context.Context, stack, stacksDir, kubeconfig string) (*campaign.Lab, error) {
	l, err := loadStack(stacksDir, stack)
	if err != nil {
		return nil, err
	}
	if !l.Simulator.Enabled {
		return nil, fmt.Errorf("the stack deploys no simulator (simlab:simulator.enabled is false)")
	}
	kc, from, kctx, err := stackKubeconfig(ctx, l, stack, kubeconfig)
	if err != nil {
		return nil, err
	}
	c, err := campaign.NewKubeClient(kc, from, kctx, campaign.Service{
		Namespace: l.Simulator.Namespace, Name: config.ControllerService, Port: config.ControllerPort})
	if err != nil {
		return nil, err
	}
	return &campaign.Lab{Client: c, SUTAddress: l.Simulator.SUT.Address}, nil
}

// stackKubeconfig returns the cluster's kubeconfig, where it came from and the context to use:
// the --kubeconfig file; for an existing cluster, simlab:existing.kubeconfig and .context;
// otherwise the stack's kubeconfig output, as the Pulumi CLI ($PULUMI, default pulumi on PATH)
// prints it from the stack's state.
func stackKubeconfig(ctx context.Context, l *config.Loaded, stack, flag string) ([]byte, string, string, error) {
	switch {
	case flag != "":
		b, err := os.ReadFile(flag)
		if err != nil {
			return nil, "", "", fmt.Errorf("--kubeconfig: %w", err)
		}
		return b, flag, "", nil
	case l.Provider == config.ProviderExisting:
		p, err := config.ExpandHome(l.Existing.Kubeconfig)
		if err != nil {
			return nil, "", "", fmt.Errorf("simlab:existing.kubeconfig: %w", err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", "", fmt.Errorf("simlab:existing.kubeconfig: %w", err)
		}
		return b, p, l.Existing.Context, nil
	}
	pulumi := os.Getenv("PULUMI")
	if pulumi == "" {
		pulumi = "pulumi"
	}
	args := []string{"stack", "output", "kubeconfig", "--show-secrets", "--json", "--stack", stack}
	cmd := exec.CommandContext(ctx, pulumi, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	shown := pulumi + " " + strings.Join(args, " ")
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil, "", "", fmt.Errorf("reading the stack's kubeconfig output (%s; has `pulumi up` run? or give --kubeconfig FILE): %w", shown, err)
	}
	var kc string
	if err := json.Unmarshal(stdout.Bytes(), &kc); err != nil || kc == "" {
		// Not its text: it may hold credentials.
		return nil, "", "", fmt.Errorf("%s printed no kubeconfig string (has `pulumi up` run? or give --kubeconfig FILE)", shown)
	}
	return []byte(kc), "the stack's kubeconfig output", "", nil
}
