package localcluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Binaries holds the absolute paths of the programs a cluster runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kubectl, Kubeadm, Kwok, MetricsServer, Helm string
}

// Versions are the pinned versions of the test tools, read from
// tests/tools/go.mod (Kubernetes, etcd) and tests/tools/versions.mk (the rest).
type Versions struct {
	Kubernetes, Etcd, Kwok, MetricsServer, Helm string
}

// RepoRoot returns the repository root: the nearest directory at or above the
// working directory that holds tests/tools/go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tests", "tools", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the repository root: no tests/tools/go.mod at or above the working directory")
		}
		dir = parent
	}
}

// ReadVersions reads the pinned tool versions from the repository at root.
func ReadVersions(root string) (Versions, error) {
	var v Versions
	gomod := filepath.Join(root, "tests", "tools", "go.mod")
	mods, err := scanFields(gomod, func(f []string, set func(k, v string)) {
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "k8s.io/kubernetes" || f[i] == "go.etcd.io/etcd/server/v3" {
				set(f[i], f[i+1])
			}
		}
	})
	if err != nil {
		return v, err
	}
	v.Kubernetes, v.Etcd = mods["k8s.io/kubernetes"], mods["go.etcd.io/etcd/server/v3"]
	mk := filepath.Join(root, "tests", "tools", "versions.mk")
	vars, err := scanFields(mk, func(f []string, set func(k, v string)) {
		if len(f) == 3 && f[1] == ":=" {
			set(f[0], f[2])
		}
	})
	if err != nil {
		return v, err
	}
	v.Kwok, v.MetricsServer, v.Helm = vars["KWOK_VERSION"], vars["METRICS_SERVER_VERSION"], vars["HELM_VERSION"]
	for name, got := range map[string]string{
		gomod + ": k8s.io/kubernetes": v.Kubernetes, gomod + ": go.etcd.io/etcd/server/v3": v.Etcd,
		mk + ": KWOK_VERSION": v.Kwok, mk + ": METRICS_SERVER_VERSION": v.MetricsServer, mk + ": HELM_VERSION": v.Helm,
	} {
		if got == "" {
			return v, fmt.Errorf("reading tool versions: %s not found", name)
		}
	}
	return v, nil
}

// ModuleVersion is the version of module that a go.mod file requires.
func ModuleVersion(gomod, module string) (string, error) {
	mods, err := scanFields(gomod, func(f []string, set func(k, v string)) {
		for i := 0; i+1 < len(f); i++ {
			if f[i] == module {
				set(module, f[i+1])
			}
		}
	})
	if err != nil {
		return "", err
	}
	if mods[module] == "" {
		return "", fmt.Errorf("%s: no requirement of %s", gomod, module)
	}
	return mods[module], nil
}

func scanFields(path string, each func(f []string, set func(k, v string))) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading tool versions: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	set := func(k, v string) {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if i := strings.Index(line, "#"); i >= 0 && strings.HasSuffix(path, ".mk") {
			line = line[:i]
		}
		each(strings.Fields(line), set)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}

// DefaultBinDir is where `make tools` puts the binaries: $SIMLAB_BIN_DIR if
// set, else <repo>/.cache/bin.
func DefaultBinDir(root string) string {
	if d := os.Getenv("SIMLAB_BIN_DIR"); d != "" {
		return d
	}
	return filepath.Join(root, ".cache", "bin")
}

// FindBinaries returns the paths of the pinned binaries in binDir (named
// <name>-<version> by `make tools`); binDir "" means DefaultBinDir. The error
// lists every missing binary and says how to build them.
func FindBinaries(binDir string) (Binaries, error) {
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	v, err := ReadVersions(root)
	if err != nil {
		return Binaries{}, err
	}
	if binDir == "" {
		binDir = DefaultBinDir(root)
	}
	binDir, err = filepath.Abs(binDir)
	if err != nil {
		return Binaries{}, fmt.Errorf("binary directory %s: %w", binDir, err)
	}
	var missing []string
	p := func(name, version string) string {
		path := filepath.Join(binDir, name+"-"+version)
		if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Base(path))
		}
		return path
	}
	b := Binaries{
		Etcd:              p("etcd", v.Etcd),
		APIServer:         p("kube-apiserver", v.Kubernetes),
		ControllerManager: p("kube-controller-manager", v.Kubernetes),
		Scheduler:         p("kube-scheduler", v.Kubernetes),
		Kubectl:           p("kubectl", v.Kubernetes),
		Kubeadm:           p("kubeadm", v.Kubernetes),
		Kwok:              p("kwok", v.Kwok),
		MetricsServer:     p("metrics-server", v.MetricsServer),
		Helm:              p("helm", v.Helm),
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("missing in %s: %s (build them with `make tools`)", binDir, strings.Join(missing, ", "))
	}
	return b, nil
}

// InCI reports whether the environment says this is a CI run (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireBinaries returns the pinned binaries, or ends the test when any is
// missing: it skips with a message naming them and `make tools` on a
// developer machine, and fails in CI (CI=true), where `make test` builds them
// first and a missing binary is a bug.
func RequireBinaries(t testing.TB) Binaries {
	t.Helper()
	b, err := FindBinaries("")
	if err != nil {
		if InCI() {
			t.Fatalf("local control plane binaries: %v", err)
		}
		t.Skipf("local control plane binaries: %v; skipping (this fails when CI=true)", err)
	}
	return b
}
