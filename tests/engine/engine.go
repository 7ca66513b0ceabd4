// Package engine runs the simlab program (infra.Build, unchanged) through the
// real Pulumi engine: the Pulumi CLI and the Kubernetes provider plugin that
// `make engine-tools` builds from Go modules (tests/tools/pulumi,
// tests/tools/pulumi-kubernetes), driven by the Automation API as an inline
// program, since the Go language host is not served here and an inline
// program needs none. It owns the offline engine settings (file backend,
// PULUMI_HOME under .cache, no plugin download, no update check) and the
// project directory a run uses. The engine tests and `make demo` use it.
package engine

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/tests/localcluster"
)

// Project is the Pulumi project name (Pulumi.yaml).
const Project = config.Namespace

// Tools are the engine's binaries, built by `make engine-tools`.
type Tools struct {
	// Pulumi is the CLI; PulumiVersion its version (v3.276.0).
	Pulumi, PulumiVersion string
	// Provider is pulumi-resource-kubernetes; ProviderVersion its version
	// (v4.25.0), which is also the pulumi-kubernetes SDK's version in go.mod.
	Provider, ProviderVersion string
}

// FindTools locates the pinned binaries under root/.cache/bin (or
// $SIMLAB_BIN_DIR), named <name>-<version>. The error names what is missing
// and the make target that builds it.
func FindTools(root string) (Tools, error) {
	pv, err := localcluster.ModuleVersion(filepath.Join(root, "tests", "tools", "pulumi", "go.mod"), "github.com/pulumi/pulumi/pkg/v3")
	if err != nil {
		return Tools{}, err
	}
	kv, err := localcluster.ModuleVersion(filepath.Join(root, "tests", "tools", "pulumi-kubernetes", "go.mod"), "github.com/pulumi/pulumi-kubernetes/sdk/v4")
	if err != nil {
		return Tools{}, err
	}
	bin := os.Getenv("SIMLAB_BIN_DIR")
	if bin == "" {
		bin = filepath.Join(root, ".cache", "bin")
	}
	t := Tools{
		Pulumi: filepath.Join(bin, "pulumi-"+pv), PulumiVersion: pv,
		Provider: filepath.Join(bin, "pulumi-resource-kubernetes-"+kv), ProviderVersion: kv,
	}
	var missing []string
	for _, p := range []string{t.Pulumi, t.Provider} {
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Base(p))
		}
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("missing in %s: %s (build them with `make engine-tools`)", bin, strings.Join(missing, ", "))
	}
	return t, nil
}

// Options configure a Lab.
type Options struct {
	// Root is the repository root (its charts/ and stacks/).
	Root string
	// Tools are the engine's binaries.
	Tools Tools
	// Dir holds the project directory, the state backend and the stack's
	// config file; it must exist and is left for the caller to remove.
	Dir string
	// Stack is the stack name.
	Stack string
	// From names the committed stack file (stacks/Pulumi.<From>.yaml) whose
	// config the stack starts with, as `pulumi config cp` would copy it.
	From string
	// Home is PULUMI_HOME (plugins); default Root/.cache/pulumi-home.
	Home string
	// Passphrase encrypts the stack's secrets (PULUMI_CONFIG_PASSPHRASE).
	Passphrase string
	// Program is the inline program; default infra.Build, the simlab program.
	Program pulumi.RunFunc
}

// Lab is a stack of the simlab program on a file backend.
type Lab struct {
	Stack auto.Stack
	// StateDir is the file backend's directory.
	StateDir string
	// ProjectDir is the project directory the engine and the provider run in.
	ProjectDir string
	opts       Options
}

// Open installs the provider plugin into PULUMI_HOME (once per version),
// prepares the project directory (Pulumi.yaml and the charts the program
// references by relative path) and selects or creates the stack with the
// program (infra.Build unless Options.Program says otherwise) as an inline program.
func Open(ctx context.Context, o Options) (*Lab, error) {
	if o.Home == "" {
		o.Home = filepath.Join(o.Root, ".cache", "pulumi-home")
	}
	if o.Passphrase == "" {
		o.Passphrase = "simlab-local-passphrase"
	}
	if err := installPlugin(ctx, o); err != nil {
		return nil, err
	}
	project := filepath.Join(o.Dir, "project")
	state := filepath.Join(o.Dir, "state")
	for _, d := range []string{project, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The program names the simulator chart ./charts/simulator, relative to
	// the project directory where the provider runs.
	if err := os.Symlink(filepath.Join(o.Root, "charts"), filepath.Join(project, "charts")); err != nil && !os.IsExist(err) {
		return nil, err
	}
	yaml := fmt.Sprintf("name: %s\nruntime: go\ndescription: simlab, run by tests/engine\n", Project)
	if err := os.WriteFile(filepath.Join(project, "Pulumi.yaml"), []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	if o.From != "" {
		data, err := os.ReadFile(filepath.Join(o.Root, "stacks", "Pulumi."+o.From+".yaml"))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(project, "Pulumi."+o.Stack+".yaml"), data, 0o644); err != nil {
			return nil, err
		}
	}
	cmd, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: cliRoot(o)})
	if err != nil {
		return nil, fmt.Errorf("the Pulumi CLI %s: %w", o.Tools.Pulumi, err)
	}
	program := o.Program
	if program == nil {
		program = infra.Build
	}
	st, err := auto.UpsertStackInlineSource(ctx, o.Stack, Project, program,
		auto.WorkDir(project), auto.PulumiHome(o.Home), auto.Pulumi(cmd), auto.EnvVars(Env(o.Home, state, o.Passphrase)))
	if err != nil {
		return nil, fmt.Errorf("stack %s: %w", o.Stack, err)
	}
	return &Lab{Stack: st, StateDir: state, ProjectDir: project, opts: o}, nil
}

// Env is the environment that keeps the engine offline and local.
func Env(home, stateDir, passphrase string) map[string]string {
	return map[string]string{
		"PULUMI_HOME":                                 home,
		"PULUMI_BACKEND_URL":                          "file://" + stateDir,
		"PULUMI_CONFIG_PASSPHRASE":                    passphrase,
		"PULUMI_SKIP_UPDATE_CHECK":                    "true",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
		// The SDK's check of the CLI's version: ours is newer than it knows.
		"PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
	}
}

// cliRoot is a directory whose bin/pulumi is the pinned CLI, as the
// Automation API wants it.
func cliRoot(o Options) string {
	return filepath.Join(o.Home, "cli", o.Tools.PulumiVersion)
}

// installPlugin makes the built provider the kubernetes plugin of its version
// in PULUMI_HOME, so the engine loads exactly it (not whatever is on PATH),
// and links the CLI where the Automation API looks for it.
func installPlugin(ctx context.Context, o Options) error {
	bin := filepath.Join(cliRoot(o), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	link := filepath.Join(bin, "pulumi")
	if cur, err := os.Readlink(link); err != nil || cur != o.Tools.Pulumi {
		os.Remove(link)
		if err := os.Symlink(o.Tools.Pulumi, link); err != nil {
			return err
		}
	}
	dir := filepath.Join(o.Home, "plugins", "resource-kubernetes-"+o.Tools.ProviderVersion)
	if st, err := os.Stat(filepath.Join(dir, "pulumi-resource-kubernetes")); err == nil {
		if ref, err := os.Stat(o.Tools.Provider); err == nil && st.Size() == ref.Size() {
			return nil
		}
	}
	cmd := exec.CommandContext(ctx, o.Tools.Pulumi, "plugin", "install", "resource", "kubernetes",
		o.Tools.ProviderVersion, "--file", o.Tools.Provider)
	cmd.Env = os.Environ()
	for k, v := range Env(o.Home, os.TempDir(), o.Passphrase) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pulumi plugin install resource kubernetes %s --file %s: %w\n%s",
			o.Tools.ProviderVersion, o.Tools.Provider, err, out)
	}
	return nil
}

// SetConfig sets stack config the way `pulumi config set --path` does, so
// the program reads it exactly as a user's.
func (l *Lab) SetConfig(ctx context.Context, values map[string]string) error {
	cm := auto.ConfigMap{}
	for k, v := range values {
		cm[k] = auto.ConfigValue{Value: v}
	}
	return l.Stack.SetAllConfigWithOptions(ctx, cm, &auto.ConfigOptions{Path: true})
}

// SetSecret sets one secret config value.
func (l *Lab) SetSecret(ctx context.Context, key, value string) error {
	return l.Stack.SetConfigWithOptions(ctx, key, auto.ConfigValue{Value: value, Secret: true}, &auto.ConfigOptions{Path: true})
}
