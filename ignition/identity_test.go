package ignition

import (
	"bytes"
	"strings"
	"testing"

	"github.com/simlab/simlab/infra/artifacts"
)

// TestIdentityIgnoresOnlyTheKubernetesRelease: a Kubernetes bump changes
// every node's Ignition (new kubeadm, kubelet and kubectl) but not its
// Identity; anything else that Ignition carries (a snippet, the crictl
// release) changes both. The upgrade phase's binaries are the new release's.
func TestIdentityIgnoresOnlyTheKubernetesRelease(t *testing.T) {
	for name, c := range stacks(t) {
		t.Run(name, func(t *testing.T) {
			n := c.Nodes()[len(c.Nodes())-1]
			old, err := NewRenderer(c, testManifestFor(c.Versions))
			if err != nil {
				t.Fatal(err)
			}
			bumped := *c
			bumped.Versions.Kubernetes = "v1.99.0"
			neu, err := NewRenderer(&bumped, testManifestFor(bumped.Versions))
			if err != nil {
				t.Fatal(err)
			}
			oldIgn, _ := old.Render(n)
			newIgn, _ := neu.Render(n)
			if bytes.Equal(oldIgn, newIgn) {
				t.Fatal("the Kubernetes bump did not change the Ignition: the test proves nothing")
			}
			oldID, err := old.Identity(n)
			if err != nil {
				t.Fatal(err)
			}
			newID, err := neu.Identity(n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(oldID, newID) {
				t.Errorf("a Kubernetes bump changed %s's identity", n.Name)
			}
			if bytes.Contains(oldID, []byte(c.Versions.Kubernetes)) {
				t.Errorf("%s's identity still names Kubernetes %s", n.Name, c.Versions.Kubernetes)
			}

			crictl := *c
			crictl.Versions.Crictl = "v9.9.9"
			other, err := NewRenderer(&crictl, testManifestFor(crictl.Versions))
			if err != nil {
				t.Fatal(err)
			}
			if otherID, _ := other.Identity(n); bytes.Equal(oldID, otherID) {
				t.Errorf("a crictl bump (not upgraded in place) left %s's identity unchanged", n.Name)
			}
			snip := *c
			snip.Ignition.Worker = append(append([]string(nil), c.Ignition.Worker...),
				"variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/simlab-identity-test\n      contents: {inline: x}\n")
			snip.Ignition.Controller = snip.Ignition.Worker
			sr, err := NewRenderer(&snip, testManifestFor(snip.Versions))
			if err != nil {
				t.Fatal(err)
			}
			if snipID, _ := sr.Identity(n); bytes.Equal(oldID, snipID) {
				t.Errorf("a snippet left %s's identity unchanged", n.Name)
			}

			bins := neu.KubernetesBinaries()
			if len(bins) != 3 {
				t.Fatalf("KubernetesBinaries: want kubeadm, kubelet, kubectl, got %+v", bins)
			}
			m := testManifestFor(bumped.Versions)
			for _, b := range bins {
				want, _ := m.Hash(b.Name)
				if b.Hash != want || !strings.Contains(b.URL, "v1.99.0") || !strings.HasPrefix(b.Path, BinDir+"/") {
					t.Errorf("%s: %+v; want the v1.99.0 artifact under %s with hash %s", b.Name, b, BinDir, want)
				}
			}
			if bins[0].Name != artifacts.Kubeadm {
				t.Errorf("kubeadm first (an upgrade installs it first), got %s", bins[0].Name)
			}
		})
	}
}
