package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/image"
)

// ImageDir is where `simlab image build` writes the simulator image in an
// artifact directory (an OCI image layout).
const ImageDir = "images/simulator"

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build the simulator's container image without a container engine",
	}
	cmd.AddCommand(newImageBuildCmd())
	return cmd
}

func newImageBuildCmd() *cobra.Command {
	var dir, stack, stacksDir, module, platforms string
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the simulator image (static binary on an empty base) into the artifact directory",
		Long: `Build compiles the simulator for each platform as a static, reproducible binary
(CGO_ENABLED=0, -trimpath, no VCS stamp, no build ID), puts it as the only layer on an empty
base (entrypoint /simulator, user ` + image.User + `), and writes a multi-platform OCI image
index as an OCI image layout to <dir>/` + ImageDir + `, named <simlab:simulator.image>:<versions.simulator>.
No Docker, no daemon, nothing fetched: the Go toolchain and this module are all it needs.
The same source and Go version give the same digest, which it prints.`,
		Example: `  simlab image build                          # .artifacts/images/simulator, linux/amd64 and linux/arm64
  simlab image build --stack lab --platform linux/amd64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := config.Default()
			if stack != "" {
				l, err := loadStack(stacksDir, stack)
				if err != nil {
					return err
				}
				c = l.Config
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			ref := c.Simulator.Image + ":" + c.Versions.Simulator
			out := filepath.Join(dir, filepath.FromSlash(ImageDir))
			res, err := image.Build(ctx, image.Options{ModuleDir: module, Out: out, Ref: ref,
				Platforms: strings.Split(platforms, ","), Log: cmd.OutOrStdout()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s@%s\nwritten to %s (OCI image layout)\n", ref, res.Digest, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".artifacts", "artifact directory")
	f.StringVar(&stack, "stack", "", "take the image name and tag from stacks/Pulumi.<STACK>.yaml")
	f.StringVar(&stacksDir, "stacks-dir", "stacks", "directory holding Pulumi.<STACK>.yaml files")
	f.StringVar(&module, "module", ".", "the simlab module's root (holding go.mod and simulator/)")
	f.StringVar(&platforms, "platform", strings.Join(image.DefaultPlatforms, ","), "comma-separated os/arch list")
	return cmd
}
