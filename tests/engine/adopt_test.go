package engine_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/simlab/simlab/infra/storage"
	"github.com/simlab/simlab/tests/engine"
	"github.com/simlab/simlab/tests/localcluster"
	"github.com/simlab/simlab/tests/standin"
)

// stateResource is the part of a state's resource the test reads.
type stateResource struct {
	URN  string `json:"urn"`
	Type string `json:"type"`
	ID   string `json:"id"`
	// External is a resource the program reads, which the engine never
	// deletes.
	External bool           `json:"external"`
	Outputs  map[string]any `json:"outputs"`
}

// TestEngineChartsAdoptReleases: a stack whose third-party charts are
// helm.sh/v3 Releases — every stack deployed before simlab installed them as
// helm.sh/v4 Charts, or one with simlab:storage.helmReleases — moves to
// Charts in one `up` with nothing deleted or recreated: the Releases are
// relinquished (read under their own URN, never uninstalled) and the
// Charts' objects adopt the running ones by server-side apply. Going back is
// refused, naming the key. The stand-in charts (tests/standin) leave unproven
// that the upstream charts' objects adopt as cleanly (they render more kinds,
// none with hooks).
func TestEngineChartsAdoptReleases(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tl := tools(t, root)
	c := localcluster.StartT(t, localcluster.Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ready := &localcluster.Readiness{Delay: 3 * time.Second}
	go ready.Run(ctx, c)

	mirror := standin.MirrorT(t, root)
	var progress strings.Builder
	lab, err := engine.Open(ctx, engine.Options{
		Root: root, Tools: tl, Dir: t.TempDir(), Stack: "adopttest", From: "local",
		Passphrase: "adopt-test-passphrase",
	})
	if err != nil {
		t.Fatal(err)
	}
	const releasesKey = "simlab:storage.helmReleases"
	if err := lab.SetConfig(ctx, map[string]string{
		"simlab:existing.kubeconfig":  c.Kubeconfig,
		"simlab:artifacts.dir":        mirror,
		"simlab:storage.ceph.enabled": "true",
		releasesKey:                   "true",
	}); err != nil {
		t.Fatal(err)
	}
	up := func(name string) *engine.Steps {
		t.Helper()
		steps := engine.NewSteps()
		if _, err := lab.Stack.Up(ctx, optup.EventStreams(steps.Channel()), optup.ProgressStreams(&progress)); err != nil {
			t.Fatalf("%s: %v\n--- engine output ---\n%s", name, err, progress.String())
		}
		return steps
	}
	state := func() (root map[string]any, resources []stateResource) {
		t.Helper()
		dep, err := lab.Stack.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Resources []stateResource `json:"resources"`
		}
		if err := json.Unmarshal(dep.Deployment, &d); err != nil {
			t.Fatal(err)
		}
		for _, r := range d.Resources {
			if r.Type == "pulumi:pulumi:Stack" {
				root = r.Outputs
			}
		}
		return root, d.Resources
	}
	// uids are the operators' Deployments' UIDs: the same UID is the same
	// object, neither deleted nor recreated.
	uids := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, op := range standin.Operators {
			var d struct{ Metadata struct{ UID string } }
			if !kube(ctx, t, c, "/apis/apps/v1/namespaces/"+op.Namespace+"/deployments/"+op.Deployment, &d) {
				t.Fatalf("%s (stand-in %s chart) missing", op.Deployment, op.Chart)
			}
			out[op.Deployment] = d.Metadata.UID
		}
		return out
	}
	// selfRef is the program's read of its own previous deployment.
	const selfRef = "pulumi:pulumi:StackReference::previous-deployment"
	releases := []string{
		"kubernetes:helm.sh/v3:Release::storage-csi-driver-nfs",
		"kubernetes:helm.sh/v3:Release::storage-rook-operator",
		"kubernetes:helm.sh/v3:Release::storage-strimzi-operator",
	}

	first := up("releases up")
	for _, r := range releases {
		if !contains(first.Of(apitype.OpCreate), r) {
			t.Fatalf("with %s the up did not create %s; created %v", releasesKey, r, first.Of(apitype.OpCreate))
		}
	}
	before := uids()

	// A stack deployed before the program exported storageCharts: the same
	// state without that output.
	t.Run("the old stack is rewritten without storageCharts", func(t *testing.T) {
		if !dropOutput(ctx, t, lab, storage.ChartsOutput) {
			t.Fatalf("the stack has no output %s", storage.ChartsOutput)
		}
	})

	if err := lab.Stack.RemoveConfigWithOptions(ctx, releasesKey, &auto.ConfigOptions{Path: true}); err != nil {
		t.Fatal(err)
	}
	adopt := up("adopting up")
	t.Run("the Charts adopt the Releases' objects, nothing deleted", func(t *testing.T) {
		for _, op := range []apitype.OpType{apitype.OpDelete, apitype.OpDeleteReplaced, apitype.OpCreateReplacement, apitype.OpReplace} {
			if got := adopt.Of(op); len(got) > 0 {
				t.Errorf("%s: %v", op, got)
			}
		}
		// The engine relinquishes a managed resource the program now reads:
		// a read step, no delete (and the stack reads itself).
		wantRead := append([]string{selfRef}, releases...)
		sort.Strings(wantRead)
		if got := adopt.Of(apitype.OpRead); strings.Join(got, " ") != strings.Join(wantRead, " ") {
			t.Errorf("read %v, want %v", got, wantRead)
		}
		for _, u := range adopt.Of(apitype.OpUpdate) {
			t.Errorf("updated %s: adopting changes no object", u)
		}
		if after := uids(); !equalMaps(before, after) {
			t.Errorf("operator Deployments' UIDs %v, before %v: an object was recreated", after, before)
		}
		outs, res := state()
		var charts, children []string
		for _, r := range res {
			if r.Type == "kubernetes:helm.sh/v3:Release" && !r.External {
				t.Errorf("state still manages %s (the next up would uninstall it)", r.URN)
			}
			name := r.URN[strings.LastIndex(r.URN, "::")+2:]
			if r.Type == "kubernetes:helm.sh/v4:Chart" && strings.HasPrefix(name, "storage-") {
				charts = append(charts, name)
			}
			if r.Type == "kubernetes:apps/v1:Deployment" && strings.HasPrefix(name, "storage-") {
				children = append(children, name)
			}
		}
		sort.Strings(charts)
		sort.Strings(children)
		if want := "storage-csi-driver-nfs storage-rook-operator storage-strimzi-operator"; strings.Join(charts, " ") != want {
			t.Errorf("Charts in the state %v, want %s", charts, want)
		}
		for _, op := range standin.Operators {
			if !containsSuffix(children, ":"+op.Namespace+"/"+op.Deployment) {
				t.Errorf("the Deployment %s/%s is not a Chart's object in the state (Deployments: %v)", op.Namespace, op.Deployment, children)
			}
		}
		if sc, _ := outs[storage.ChartsOutput].(map[string]any); sc["kind"] != storage.ChartsAsCharts {
			t.Errorf("output %s = %v, want kind %s", storage.ChartsOutput, outs[storage.ChartsOutput], storage.ChartsAsCharts)
		}
	})

	// The next up reads no Release (storageCharts says Charts): the engine
	// discards the read ones from the state, and changes nothing else.
	again := up("second up")
	for op, n := range again.Ops() {
		if op != apitype.OpSame && op != apitype.OpReadDiscard && (op != apitype.OpRead || strings.Join(again.Of(op), " ") != selfRef) {
			t.Errorf("the up after the adoption did %d %s: %v", n, op, again.Of(op))
		}
	}
	if got := again.Of(apitype.OpReadDiscard); strings.Join(got, " ") != strings.Join(releases, " ") {
		t.Errorf("the up after the adoption discarded %v, want the read Releases %v", got, releases)
	}
	_, res := state()
	for _, r := range res {
		if r.Type == "kubernetes:helm.sh/v3:Release" {
			t.Errorf("the state still holds %s", r.URN)
		}
	}
	if after := uids(); !equalMaps(before, after) {
		t.Errorf("after the second up the operators' UIDs are %v, before %v", after, before)
	}

	t.Run("back to Releases is refused, naming the key", func(t *testing.T) {
		if err := lab.SetConfig(ctx, map[string]string{releasesKey: "true"}); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		_, err := lab.Stack.Up(ctx, optup.ProgressStreams(&out))
		if err == nil {
			t.Fatalf("up with %s went back to Releases over Charts", releasesKey)
		}
		if !strings.Contains(out.String(), "storage.helmReleases") {
			t.Errorf("the refusal does not name storage.helmReleases:\n%s", out.String())
		}
		if after := uids(); !equalMaps(before, after) {
			t.Errorf("after the refusal the operators' UIDs are %v, before %v", after, before)
		}
		if err := lab.Stack.RemoveConfigWithOptions(ctx, releasesKey, &auto.ConfigOptions{Path: true}); err != nil {
			t.Fatal(err)
		}
	})

	if _, err := lab.Stack.Destroy(ctx, optdestroy.ProgressStreams(&progress)); err != nil {
		t.Fatalf("destroy: %v\n%s", err, progress.String())
	}
	for _, ns := range []string{storage.KafkaNamespace, storage.NFSNamespace, storage.RookNamespace} {
		if kube(ctx, t, c, "/api/v1/namespaces/"+ns, &obj{}) {
			t.Errorf("namespace %s still exists after destroy", ns)
		}
	}
	if _, res := state(); len(res) > 0 {
		t.Errorf("destroy left %d resources in the state", len(res))
	}
	if t.Failed() {
		t.Logf("--- engine output ---\n%s", progress.String())
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func containsSuffix(l []string, s string) bool {
	for _, x := range l {
		if strings.HasSuffix(x, s) {
			return true
		}
	}
	return false
}
