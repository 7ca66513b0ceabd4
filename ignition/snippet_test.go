package ignition

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
)

func reflectValue(v any) reflect.Value { return reflect.ValueOf(v) }

func unescapeDataURL(t *testing.T, s string) string {
	t.Helper()
	out, err := url.PathUnescape(s)
	if err != nil {
		t.Fatalf("data URL %q: %v", s, err)
	}
	return out
}

func devStack(t *testing.T) *config.Config {
	t.Helper()
	return stacks(t)["dev"]
}

func TestSnippetUnknownKeyNamesLineAndColumn(t *testing.T) {
	c := *devStack(t)
	c.Ignition.Worker = []string{`variant: fcos
version: 1.6.0
systemd:
  units:
    - name: hello.service
      enabeld: true
`}
	_, err := RenderNode(&c, c.NodesByRole(config.RoleWorker)[0], testManifest(t))
	if err == nil {
		t.Fatal("a snippet with `enabeld:` rendered without error")
	}
	for _, want := range []string{"snippet simlab:ignition.worker[0]:6:7:", "unused key enabeld", "6 |       enabeld: true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	// The controller has no worker snippets: it still renders.
	if _, err := RenderNode(&c, c.NodesByRole(config.RoleController)[0], testManifest(t)); err != nil {
		t.Errorf("controller: %v", err)
	}
}

func TestSnippetYAMLErrorNamesLine(t *testing.T) {
	c := *devStack(t)
	n := c.NodesByRole(config.RoleWorker)[1]
	c.Ignition.Nodes = map[string][]string{n.Name: {"variant: fcos\nversion: 1.6.0\nstorage:\n  files:\n  - path: /etc/x\n   mode: 420\n"}}
	_, err := RenderNode(&c, n, testManifest(t))
	if err == nil || !strings.Contains(err.Error(), "snippet simlab:ignition.nodes."+n.Name+"[0]") || !strings.Contains(err.Error(), "yaml: line 3") {
		t.Fatalf("got %v, want an error naming the node snippet and the YAML line", err)
	}
}

func TestSnippetsMergeInOrder(t *testing.T) {
	c := *devStack(t)
	n := c.NodesByRole(config.RoleWorker)[0]
	c.Ignition.Worker = []string{"variant: fcos\nversion: 1.6.0\nstorage:\n  files:\n    - path: /etc/motd.d/simlab\n      contents:\n        inline: role\n"}
	c.Ignition.Nodes = map[string][]string{n.Name: {
		// An older fcos version is accepted; a later file with the same path wins.
		"variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/simlab\n      overwrite: true\n      contents:\n        inline: node\n",
	}}
	out, err := RenderNode(&c, n, testManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	ic := parse(t, n.Name, out)
	if got, _ := fileContents(t, ic, "/etc/motd.d/simlab"); got != "node" {
		t.Errorf("/etc/motd.d/simlab = %q, want the node snippet's %q", got, "node")
	}
	other, err := RenderNode(&c, c.NodesByRole(config.RoleWorker)[1], testManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := fileContents(t, parse(t, "other", other), "/etc/motd.d/simlab"); got != "role" {
		t.Errorf("other worker: /etc/motd.d/simlab = %q, want the role snippet's %q", got, "role")
	}
}

func TestSnippetRulesEnforced(t *testing.T) {
	for name, tc := range map[string]struct{ snippet, want string }{
		"usr file": {"variant: fcos\nversion: 1.6.0\nstorage:\n  files:\n    - path: /usr/local/bin/x\n      contents:\n        inline: x\n",
			"/usr/local/bin/x is under /usr"},
		"usr link": {"variant: fcos\nversion: 1.6.0\nstorage:\n  links:\n    - path: /usr/bin/kubeadm\n      target: /opt/bin/kubeadm\n",
			"/usr/bin/kubeadm is under /usr"},
		"remote without hash": {"variant: fcos\nversion: 1.6.0\nstorage:\n  files:\n    - path: /opt/bin/tool\n      contents:\n        source: http://example.invalid/tool\n",
			"remote source http://example.invalid/tool has no sha512 verification hash"},
		"other variant": {"variant: flatcar\nversion: 1.0.0\n", `snippet simlab:ignition.worker[0]: variant "flatcar"`},
		"no variant":    {"version: 1.6.0\n", `snippet simlab:ignition.worker[0]: variant ""`},
		"ceph disk formatted": {"variant: fcos\nversion: 1.6.0\nstorage:\n  filesystems:\n    - device: /dev/vdb\n      format: xfs\n      wipe_filesystem: true\n",
			"formats the Ceph data disk /dev/vdb"},
	} {
		t.Run(name, func(t *testing.T) {
			c := *devStack(t)
			c.Ignition.Worker = []string{tc.snippet}
			_, err := RenderNode(&c, c.NodesByRole(config.RoleWorker)[0], testManifest(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestManifestMustMatchPins(t *testing.T) {
	c := *devStack(t)
	c.Versions.Kubernetes = "v1.99.0"
	_, err := RenderNode(&c, c.Nodes()[0], testManifest(t))
	if err == nil || !strings.Contains(err.Error(), `simlab:versions.kubernetes is "v1.99.0"`) {
		t.Fatalf("got %v, want an error naming simlab:versions.kubernetes", err)
	}
	m := testManifest(t)
	delete(m.Artifacts, artifacts.CNIPlugins)
	c = *devStack(t)
	if _, err := RenderNode(&c, c.Nodes()[0], m); err == nil || !strings.Contains(err.Error(), `"cni-plugins" is missing`) {
		t.Fatalf("got %v, want an error naming the missing artifact", err)
	}
}

func TestArtifactsURLRequired(t *testing.T) {
	c := *devStack(t)
	c.Artifacts.URL = ""
	if _, err := RenderNode(&c, c.Nodes()[0], testManifest(t)); err == nil || !strings.Contains(err.Error(), "simlab:artifacts.url") {
		t.Fatalf("got %v, want an error naming simlab:artifacts.url", err)
	}
}

func TestTranslateStrictTemplateError(t *testing.T) {
	// A Butane warning (here: a systemd unit name without a unit type) is an error.
	_, err := Translate("templates/x.bu", []byte("variant: fcos\nversion: 1.6.0\nstorage:\n  files:\n    - path: /etc/x\n      mode: 644\n"))
	if err == nil || !strings.Contains(err.Error(), "templates/x.bu:6:") || !strings.Contains(err.Error(), "strict mode") {
		t.Fatalf("got %v, want a strict-mode error at templates/x.bu:6", err)
	}
}

func TestStaticNetworkLibvirt(t *testing.T) {
	c := *devStack(t)
	n := c.NodesByRole(config.RoleWorker)[0]
	lv := *c.Libvirt
	lv.Addresses = map[string]string{n.Name: "192.168.122.50"}
	lv.Gateway, lv.Nameservers = "192.168.122.1", []string{"192.168.122.1", "9.9.9.9"}
	c.Libvirt = &lv
	n = c.NodesByRole(config.RoleWorker)[0]
	out, err := RenderNode(&c, n, testManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	nm, ok := fileContents(t, parse(t, n.Name, out), "/etc/NetworkManager/system-connections/simlab-static.nmconnection")
	for _, want := range []string{"method=manual", "address1=192.168.122.50/24,192.168.122.1", "dns=192.168.122.1;9.9.9.9;"} {
		if !ok || !strings.Contains(nm, want) {
			t.Errorf("static connection %q lacks %q", nm, want)
		}
	}
}

// TestRenderIsPure: shared cached parts are never mutated by a render, and
// the Renderer and RenderNode agree byte for byte.
func TestRenderIsPure(t *testing.T) {
	c := devStack(t)
	m := testManifest(t)
	w := c.NodesByRole(config.RoleWorker)
	first := render(t, c, w[0])
	r, err := NewRenderer(c, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		if _, err := r.Render(n); err != nil {
			t.Fatal(err)
		}
	}
	again, err := r.Render(w[0])
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(again) {
		t.Errorf("rendering other nodes changed %s's Ignition:\n%s", w[0].Name, firstDiff(string(first), string(again)))
	}
	if strings.Contains(string(again), w[1].Name) {
		t.Errorf("%s's Ignition mentions %s", w[0].Name, w[1].Name)
	}
}

// TestRendererConcurrent renders every lab node from several goroutines with
// one Renderer; run with -race. Outputs equal the sequential ones.
func TestRendererConcurrent(t *testing.T) {
	c := stacks(t)["lab"]
	r, err := NewRenderer(c, testManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	nodes := c.Nodes()
	want := make([]string, len(nodes))
	for i, n := range nodes {
		want[i] = string(render(t, c, n))
	}
	errs := make(chan error, 4*len(nodes))
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i, n := range nodes {
				out, err := r.Render(n)
				if err != nil {
					errs <- err
				} else if string(out) != want[i] {
					errs <- fmt.Errorf("%s differs when rendered concurrently", n.Name)
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMergedConfigValidated: a role snippet that is valid alone but
// conflicts with the templates after the merge (a link where the templates
// write /etc/simlab/*.env) fails for every node, not only the first.
func TestMergedConfigValidated(t *testing.T) {
	c := *devStack(t)
	c.Ignition.Worker = []string{"variant: fcos\nversion: 1.6.0\nstorage:\n  links:\n    - path: /etc/simlab\n      target: /var/lib/simlab\n"}
	if _, err := Translate("alone", []byte(c.Ignition.Worker[0])); err != nil {
		t.Fatalf("the snippet alone should be valid: %v", err)
	}
	r, err := NewRenderer(&c, testManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.NodesByRole(config.RoleWorker) {
		if _, err := r.Render(n); err == nil || !strings.Contains(err.Error(), "merged config is invalid") || !strings.Contains(err.Error(), "includes link in config (/etc/simlab/node.env)") {
			t.Errorf("%s: got %v, want the merged config rejected", n.Name, err)
		}
	}
	if _, err := r.Render(c.NodesByRole(config.RoleController)[0]); err != nil {
		t.Errorf("controller (no worker snippet): %v", err)
	}
}
