package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (stdout, stderr string, code int) {
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		return out.String(), errb.String(), exitCode(err)
	}
	return out.String(), errb.String(), 0
}

func TestValidateCommittedStacks(t *testing.T) {
	for _, stack := range []string{"dev", "lab", "local"} {
		out, errOut, code := runCLI("validate", "--dir", "../../../stacks", stack)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", stack, code, errOut)
		}
		if !strings.Contains(out, "valid: cluster") {
			t.Errorf("%s: want a one-line summary, got %q", stack, out)
		}
	}
}

func TestValidateMisspelledKeyFailsNamingIt(t *testing.T) {
	src, err := os.ReadFile("../../../stacks/Pulumi.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(src), "    cephDiskGiB: 50", "    cephDiskGB: 50", 1)
	if bad == string(src) {
		t.Fatal("fixture: key to misspell not found in Pulumi.dev.yaml")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.typo.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI("validate", "--dir", dir, "typo")
	if code != 1 {
		t.Fatalf("want exit 1, got %d", code)
	}
	if !strings.Contains(errOut, `simlab:workers.cephDiskGB: unknown key; did you mean "cephDiskGiB"?`) ||
		!strings.Contains(errOut, "Pulumi.typo.yaml:17:") {
		t.Fatalf("want the key and its line named, got:\n%s", errOut)
	}
}

func TestValidateMissingFile(t *testing.T) {
	_, errOut, code := runCLI("validate", "--dir", t.TempDir(), "nope")
	if code != 1 || !strings.Contains(errOut, "Pulumi.nope.yaml") {
		t.Fatalf("want exit 1 naming the file, got %d %q", code, errOut)
	}
}
