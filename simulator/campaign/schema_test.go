package campaign

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// The report's JSON keys are the documented schema (docs/CAMPAIGNS.md): a field renamed or
// dropped here must change Schema's version and the document.
func TestReportSchemaIsDocumented(t *testing.T) {
	b, err := json.Marshal(sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	json.Unmarshal(b, &top)
	var keys []string
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := "controller_url dataset end loops measurement run_id schema series stack start thresholds totals types verdict workers workers_over_time worst_sources"
	if got := strings.Join(keys, " "); got != want {
		t.Errorf("top-level keys:\n %s\nwant (schema %s):\n %s", got, Schema, want)
	}
	doc, err := os.ReadFile("../../docs/CAMPAIGNS.md")
	if err != nil {
		t.Fatal(err)
	}
	var stats map[string]json.RawMessage
	json.Unmarshal(top["totals"], &stats)
	for k := range stats {
		keys = append(keys, k)
	}
	keys = append(keys, "stopped_at", "lateness_hist", "sources", "p50_ms", "p99_ms", "p999_ms", "max_ms", "late_p99_ms", "due", "left")
	for _, k := range keys {
		if !strings.Contains(string(doc), "`"+k+"`") && !strings.Contains(string(doc), "."+k+"`") {
			t.Errorf("report field %q is not documented in docs/CAMPAIGNS.md", k)
		}
	}
}

func TestLiveViewPlainAndTerminal(t *testing.T) {
	ps := []Progress{{Type: "a", Due: 10, Sent: 9, Committed: 8, LateP99: 1.5, Workers: 2}, {Type: "b", Due: -1}}
	var plain strings.Builder
	lv := &liveView{w: &plain}
	lv.show(3*time.Second, "running", ps)
	lv.show(4*time.Second, "running", ps)
	lines := strings.Split(strings.TrimSpace(plain.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "t+3s running a ") || !strings.Contains(lines[0], "due        10  sent         9  committed         8  late p99 (1s)    1.500ms  workers   2") ||
		!strings.Contains(lines[1], "due         -") || strings.Contains(plain.String(), "\x1b") {
		t.Errorf("plain lines:\n%s", plain.String())
	}
	var term strings.Builder
	lv = &liveView{w: &term, tty: true}
	lv.show(3*time.Second, "running", ps)
	first := term.Len()
	lv.show(4*time.Second, "running", ps)
	if strings.Contains(term.String()[:first], "\x1b[3A") || !strings.Contains(term.String()[first:], "\x1b[3A") {
		t.Errorf("a terminal block is redrawn in place (cursor up 3 lines on the second update): %q", term.String())
	}
}
