package plan_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/plan"
	"github.com/simlab/simlab/infra/pulumimock"
	"github.com/simlab/simlab/tests/standin"
)

func TestMain(m *testing.M) {
	// Nothing here may read a developer's real key through ssh.privateKeyPath.
	os.Setenv("HOME", os.TempDir())
	os.Exit(m.Run())
}

// devStack is stacks/Pulumi.dev.yaml with a stand-in mirror (as after
// `simlab artifacts mirror`); no secret: plan reads none.
func devStack(t *testing.T, mirror string) *config.Loaded {
	t.Helper()
	l, err := config.LoadStackFile(filepath.Join("..", "..", "stacks", "Pulumi.dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l.Artifacts.Dir = mirror
	return l
}

func TestPlanOfAnUnchangedConfigIsEmpty(t *testing.T) {
	mirror := standin.MirrorT(t, filepath.Join("..", ".."))
	p, err := plan.Compute("dev", devStack(t, mirror), devStack(t, mirror))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	p.Write(&b)
	if len(p.Changes) != 0 || b.String() != "No changes.\n" {
		t.Fatalf("an unchanged config plans %v:\n%s", p.Changes, b.String())
	}
}

func TestPlanOfAScaleOutCreatesOnlyTheNewWorker(t *testing.T) {
	mirror := standin.MirrorT(t, filepath.Join("..", ".."))
	old, new := devStack(t, mirror), devStack(t, mirror)
	new.Workers.Count = old.Workers.Count + 1
	p, err := plan.Compute("dev", old, new)
	if err != nil {
		t.Fatal(err)
	}
	worker := new.Nodes()[len(new.Nodes())-1].Name
	if p.Count(pulumimock.OpReplace) != 0 || p.Count(pulumimock.OpDelete) != 0 || len(p.Refused) != 0 {
		t.Errorf("a scale-out replaces, deletes or refuses: %+v", p)
	}
	created := false
	for _, c := range p.Changes {
		created = created || (c.Op == pulumimock.OpCreate && c.Name == worker+"-kubeadm-join")
	}
	if !created {
		t.Errorf("the new worker %s does not join: %+v", worker, p.Changes)
	}
}

// A controller disk resize is refused by its guard: the plan says so first,
// with the guard's message naming the key, and lists the replacement after.
func TestPlanShowsARefusalFirstAndTheReplacement(t *testing.T) {
	mirror := standin.MirrorT(t, filepath.Join("..", ".."))
	old, new := devStack(t, mirror), devStack(t, mirror)
	new.Controllers.DiskGiB = old.Controllers.DiskGiB + 10
	p, err := plan.Compute("dev", old, new)
	if err != nil {
		t.Fatal(err)
	}
	ctl := new.Nodes()[0].Name
	if len(p.Refused) != 1 || p.Refused[0].Guard != ctl+"-guard" ||
		!strings.HasPrefix(p.Refused[0].Message, "simlab:controllers.replace: refusing to change "+ctl) {
		t.Fatalf("refusals %+v, want %s-guard naming simlab:controllers.replace", p.Refused, ctl)
	}
	if len(p.Changes) == 0 || p.Changes[0].Op != pulumimock.OpReplace {
		t.Fatalf("the first change is not a replacement: %+v", p.Changes)
	}
	var b strings.Builder
	p.Write(&b)
	out := b.String()
	t.Logf("the plan:\n%s", out)
	refused, disks := strings.Index(out, "REFUSED"), strings.Index(out, ctl+"-disks")
	if refused != 0 || disks < 0 || !strings.Contains(out, "replace") || !strings.Contains(out, "to replace") {
		t.Errorf("the written plan:\n%s", out)
	}

	// Acknowledged, the same change goes through: nothing refused.
	new.Controllers.Replace = true
	if p, err = plan.Compute("dev", old, new); err != nil {
		t.Fatal(err)
	}
	if len(p.Refused) != 0 || p.Count(pulumimock.OpReplace) == 0 {
		t.Errorf("acknowledged: refused %+v, %d replacements", p.Refused, p.Count(pulumimock.OpReplace))
	}
}
