package cluster

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPhaseScriptRunsPrepareAlwaysAndRunUnlessDone runs a phase's create
// script with sh: Prepare runs every time, Run only while Done does not
// hold, and a done step prints Skipped (with the script's variables).
func TestPhaseScriptRunsPrepareAlwaysAndRunUnlessDone(t *testing.T) {
	dir := t.TempDir()
	p := Phase{
		Prepare: "echo prepared >> " + dir + "/log; what=step",
		Done:    "test -f " + dir + "/done", Skipped: "$what: already done",
		Run: "echo ran >> " + dir + "/log; touch " + dir + "/done",
	}
	for i, want := range []string{"", "$what: already done"} {
		out, err := exec.Command("sh", "-c", p.Script()).CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, out)
		}
		if want != "" && strings.TrimSpace(string(out)) != "step: already done" {
			t.Errorf("run %d printed %q, want the expanded Skipped", i+1, out)
		}
	}
	log, _ := exec.Command("cat", dir+"/log").Output()
	if string(log) != "prepared\nran\nprepared\n" {
		t.Errorf("log %q: want Prepare twice and Run once", log)
	}
}
