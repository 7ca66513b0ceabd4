package infra

import (
	"fmt"
	"path/filepath"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/storage"
)

// mirroredFiles are the local files the layers apply, keyed by deploy artifact.
type mirroredFiles map[string]string

// resolveMirrored finds every deploy artifact of the stack in its mirror
// (simlab:artifacts.dir), each checked against the stack's pins and its
// sha512 in the manifest. Every problem is reported at once. It returns the
// manifest it read (nil when the stack applies no deploy artifact), so the
// nodes layer need not read it again.
func resolveMirrored(c *config.Config) (mirroredFiles, *artifacts.Manifest, error) {
	names := artifacts.DeployFor(c)
	if len(names) == 0 {
		return mirroredFiles{}, nil, nil
	}
	dir := c.Artifacts.Dir
	m, err := artifacts.LoadManifest(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("simlab:artifacts.dir: %w (the charts and manifests the stack applies come from the mirror: "+
			"`simlab artifacts mirror --dir %s --stack STACK` where the internet is reachable)", err, dir)
	}
	v := artifacts.VersionsFor(c.Versions)
	out := mirroredFiles{}
	var problems []error
	for _, name := range names {
		want, err := artifacts.Deploy(name, v)
		if err != nil {
			return nil, nil, err
		}
		if a, ok := m.Artifacts[name]; ok && a.Path != want.Path {
			problems = append(problems, fmt.Errorf("artifact %s: the mirror in %s holds %s, simlab:versions.%s wants %s "+
				"(re-run `simlab artifacts mirror --stack STACK`)", name, dir, a.Path, want.Pin, want.Path))
			continue
		}
		if _, err := m.Resolve(dir, name); err != nil {
			problems = append(problems, err)
			continue
		}
		// As configured: a mirror given relative to the project directory
		// (the default .artifacts) stays relative, so the state is the same
		// wherever the project is checked out (the provider runs there too).
		out[name] = filepath.Join(dir, filepath.FromSlash(want.Path))
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("simlab:artifacts.dir %s: %w", filepath.Clean(dir), joinErrors(problems))
	}
	return out, m, nil
}

// storageFiles hands the storage layer its files.
func (f mirroredFiles) storage() storage.Mirrored {
	return storage.Mirrored{
		RookChart: f[artifacts.ChartRook], RookCRDs: f[artifacts.ManifestRookCRDs],
		StrimziChart: f[artifacts.ChartStrimzi], StrimziCRDs: f[artifacts.ManifestStrimziCRDs],
		CSIDriverNFSChart: f[artifacts.ChartCSIDriverNFS],
	}
}

// joinErrors joins errors one per line after the first.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msg := fmt.Sprintf("%d problems:", len(errs))
	for _, e := range errs {
		msg += "\n  " + e.Error()
	}
	return fmt.Errorf("%s", msg)
}

// simulatorImage is the digest of the stack's simulator image in its mirror,
// as `simlab image build` wrote it: the chart runs exactly those bytes.
func simulatorImage(c *config.Config) (string, error) {
	ref := c.Simulator.Image + ":" + c.Versions.Simulator
	reg, err := artifacts.NewRegistry(c.Artifacts.Dir)
	if err == nil {
		var d string
		if d, err = reg.Digest(ref); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("simlab:artifacts.dir %s: the simulator image: %w (build it with `simlab image build --dir %s --stack STACK`)",
		filepath.Clean(c.Artifacts.Dir), err, c.Artifacts.Dir)
}
