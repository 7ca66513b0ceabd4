package infra_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/pulumimock"
)

// mirroredImages is what `simlab artifacts mirror --stack` copies for cfg
// besides kubeadm's list (checked against the real kubeadm in
// infra/cluster): the stack's own images and those its mirrored charts'
// values and manifests name.
func mirroredImages(t *testing.T, dir string, names []string, own []string) map[string]bool {
	t.Helper()
	m, err := artifacts.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range own {
		out[r] = true
	}
	reqs, err := artifacts.DeployImages(dir, m, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		out[r.Ref] = true
	}
	return out
}

// TestMockEveryImageTheStackRunsIsMirrored runs every committed stack under
// the mock engine and collects every image any object it registers names
// (containers of Deployments and DaemonSets, the CephCluster's Ceph image):
// each must be in the list the mirror copies, and come from one of the
// registries every node pulls through the artifact server. A layer that adds
// an image without naming it in config.Config.Images fails here.
func TestMockEveryImageTheStackRunsIsMirrored(t *testing.T) {
	for _, name := range []string{"dev", "lab", "local"} {
		t.Run(name, func(t *testing.T) {
			cfg := loadStack(t, name)
			var own []string
			for _, i := range cfg.Images() {
				own = append(own, i.Ref)
			}
			want := mirroredImages(t, cfg.Artifacts.Dir, artifacts.DeployFor(&cfg.Config), own)
			rec := deployMock(t, name, cfg)
			hosts := map[string]bool{}
			for _, u := range artifacts.UpstreamRegistries {
				hosts[u.Host] = true
			}
			var found []string
			for _, r := range rec.Resources() {
				for p, s := range pulumimockPlain(r.Key(), r.Inputs) {
					if !strings.HasSuffix(p, ".image") {
						continue
					}
					found = append(found, s)
					if strings.HasPrefix(s, cfg.Simulator.Image+":") {
						continue // built by `simlab image build`, run by digest
					}
					if !want[s] {
						t.Errorf("%s runs %s (%s), which the mirror does not copy", r.Key(), s, p)
					}
					if h, _, _, err := artifacts.ParseImageRef(s); err != nil || !hosts[h] {
						t.Errorf("%s runs %s from %q, not a registry nodes pull through the mirror (%v)", r.Key(), s, h, err)
					}
				}
			}
			if cfg.Provider != config.ProviderExisting && len(found) == 0 {
				t.Fatal("no image found in any resource's inputs (Flannel's at least)")
			}
			sort.Strings(found)
			t.Logf("images in the %s stack's objects: %v", name, found)
		})
	}
}

func pulumimockPlain(key string, pm resource.PropertyMap) map[string]string {
	return pulumimock.PlainStrings(key, resource.NewObjectProperty(pm))
}
