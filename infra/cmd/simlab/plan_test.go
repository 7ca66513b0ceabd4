package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simlab/simlab/tests/standin"
)

// stackCopy writes stacks/Pulumi.dev.yaml to dir/name with its artifact mirror
// set to mirror and edit applied to the text.
func stackCopy(t *testing.T, dir, name, mirror string, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "stacks", "Pulumi.dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "  simlab:artifacts:\n", "  simlab:artifacts:\n    dir: "+mirror+"\n", 1)
	if edit != nil {
		s = edit(s)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// planStacks writes the dev stack as old.yaml and, with edit applied, as
// Pulumi.dev.yaml, both with one stand-in mirror; HOME is empty: no
// developer key is read (plan reads none anyway).
func planStacks(t *testing.T, edit func(string) string) (old, cur string) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	dir := t.TempDir()
	mirror := standin.MirrorT(t, filepath.Join("..", "..", ".."))
	return stackCopy(t, dir, "old.yaml", mirror, nil), stackCopy(t, dir, "Pulumi.dev.yaml", mirror, edit)
}

func TestPlanCommandShowsTheRefusedResizeFirst(t *testing.T) {
	old, cur := planStacks(t, func(s string) string {
		return strings.Replace(s, "    diskGiB: 30\n", "    diskGiB: 40\n", 1)
	})
	out, errOut, code := runCLI("plan", cur, "--from", old, "--fail-on-refusal")
	if code != 3 || !strings.HasPrefix(out, "Plan for stack dev: ") || !strings.Contains(out, "\nREFUSED: ") ||
		!strings.Contains(out, "simlab:controllers.diskGiB: 30 -> 40") || !strings.Contains(out, " to replace, 0 to delete, ") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if out, errOut, code = runCLI("plan", cur, "--from", cur); code != 0 || !strings.HasSuffix(out, "No changes.\n") {
		t.Fatalf("the same config: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code = runCLI("plan", cur); code != 2 || !strings.Contains(errOut, "--from OLD.yaml is required") {
		t.Fatalf("without --from: exit %d, %s", code, errOut)
	}
}

// A worker resize is shown as it rolls: per worker, its drained step
// replaced (its create drains the worker), its domain and its settle step
// updated (restart, then back); nothing else.
func TestPlanCommandShowsAResizeDrainingEachWorker(t *testing.T) {
	old, cur := planStacks(t, func(s string) string {
		return strings.Replace(s, "    memoryMiB: 8192\n", "    memoryMiB: 16384\n", 1)
	})
	out, errOut, code := runCLI("plan", cur, "--from", old, "--fail-on-refusal")
	if code != 0 {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("simlab plan:\n%s", out)
	for _, w := range []string{"dev-worker-1", "dev-worker-2"} {
		for _, want := range []string{"+- replace  command:remote:Command  " + w + "-drained",
			"~  update   command:remote:Command  " + w + "-domain", "~  update   command:remote:Command  " + w + "-settled"} {
			if !strings.Contains(out, want) {
				t.Errorf("the plan does not show %q", want)
			}
		}
	}
	if !strings.Contains(out, "2 to replace, 0 to delete, 4 to update, 0 to create.") {
		t.Errorf("the plan's counts are not those of a rolling resize of two workers:\n%s", out)
	}
}
