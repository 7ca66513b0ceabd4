package campaign

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/delivery"
)

func TestParseThresholds(t *testing.T) {
	src := `# campaign gates
late_p99 < 5ms
lost == 0            # nothing may be lost
sent_ratio{router} >= 0.999
late_max < 1s abort-on-fail
`
	ts, err := parseThresholds("th.txt", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 4 {
		t.Fatalf("%d thresholds, want 4: %+v", len(ts), ts)
	}
	want := []Threshold{
		{Line: 2, Metric: "late_p99", Op: "<", Value: 5},
		{Line: 3, Metric: "lost", Op: "==", Value: 0},
		{Line: 4, Metric: "sent_ratio", Type: "router", Op: ">=", Value: 0.999},
		{Line: 5, Metric: "late_max", Op: "<", Value: 1000, Abort: true},
	}
	for i, w := range want {
		g := ts[i]
		if g.Line != w.Line || g.Metric != w.Metric || g.Type != w.Type || g.Op != w.Op || g.Value != w.Value || g.Abort != w.Abort {
			t.Errorf("threshold %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestParseThresholdsErrorsNameFileAndLine(t *testing.T) {
	src := "late_p99 < 5ms\nlate_p99 < 5\nbogus == 1\nlost == -1\nlost == 0 abort-on-fail\nlate_p99 about 5ms\nsent_ratio >= x\n"
	_, err := parseThresholds("gates.txt", strings.NewReader(src))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`gates.txt:2: late_p99: value "5": want a duration`,
		`gates.txt:3: unknown metric "bogus"`,
		`gates.txt:4: lost: value "-1": want a whole number`,
		`gates.txt:5: lost cannot abort a run`,
		`gates.txt:6: "late_p99 about 5ms": want`,
		`gates.txt:7: sent_ratio: value "x"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "gates.txt:1:") {
		t.Errorf("line 1 is valid, yet reported:\n%s", msg)
	}
	_, err = ParseThresholds(filepath.Join(t.TempDir(), "missing.txt"))
	if err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("a missing file: %v", err)
	}
}

// A report built from an expectation and a workers' aggregate, judged: every violated threshold
// is named with its measured value.
func TestBuildReportAndJudge(t *testing.T) {
	start := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	exp := &Expectation{Span: 3 * time.Second, Offsets: map[string]map[string][]time.Duration{
		"a": {"s1": {0, time.Second, 2 * time.Second}, "s2": {500 * time.Millisecond}},
		"b": {"s3": {0, 1500 * time.Millisecond}},
	}}
	agg := delivery.NewAggregator()
	add := func(typ, src string, seq int64, at time.Duration, n int, late time.Duration) {
		c := &delivery.Counts{Sent: int64(n), Acked: int64(n)}
		for range n {
			c.Late.Observe(late)
		}
		agg.Add(&delivery.Summary{V: 1, Run: "r", Type: typ, Worker: "w-" + typ, Seq: seq, From: start.Add(at - time.Second), To: start.Add(at),
			Final: at == 3*time.Second, Totals: c, Sources: map[string]*delivery.Counts{src: c}})
	}
	add("a", "s1", 1, time.Second, 1, time.Millisecond)
	add("a", "s2", 2, time.Second, 1, time.Millisecond)
	add("a", "s1", 3, 2*time.Second, 1, 2*time.Millisecond)
	add("a", "s1", 4, 3*time.Second, 2, 3*time.Millisecond) // s1 sends one record twice
	add("b", "s3", 1, time.Second, 1, 20*time.Millisecond)  // s3 loses one
	add("b", "s3", 2, 3*time.Second, 0, 0)
	r := BuildReport(exp, agg.View("r", true), runWindow{start: start, loops: 1}, "local", "http://x")
	if r.Totals.Expected != 6 || r.Totals.Sent != 6 || r.Totals.Lost != 1 || r.Totals.Duplicated != 1 {
		t.Errorf("totals %+v: want expected 6, sent 6, lost 1 (b/s3), duplicated 1 (a/s1)", r.Totals)
	}
	if s := r.Types["a"].Sources["s1"]; s.Expected != 3 || s.Sent != 4 || s.Duplicated != 1 {
		t.Errorf("a/s1 %+v", s)
	}
	if r.WorstSources[0].Source != "b/s3" || r.WorstSources[0].Lost != 1 {
		t.Errorf("worst source %+v, want b/s3 with one lost", r.WorstSources[0])
	}
	var due int64
	for _, p := range r.Series {
		for _, st := range p.Types {
			due += st.Due
		}
	}
	if due != 6 || len(r.Series) != 3 {
		t.Errorf("series: %d points, %d due; want 3 points (seconds 0-2), 6 due", len(r.Series), due)
	}
	ths, err := parseThresholds("t", strings.NewReader("lost == 0\nlate_p99{b} < 10ms\nsent_ratio >= 1\nlate_max{a} < 5ms\nworkers_seen == 2\nlost{nope} == 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	vs := Judge(ths, r, false)
	r.Judged(vs)
	var bad []string
	for _, v := range vs {
		if !v.OK {
			bad = append(bad, v.String())
		}
	}
	want := []string{"lost == 0 (line 1): VIOLATED, measured 1", "late_p99{b} < 10ms (line 2): VIOLATED, measured 20.000ms",
		`lost{nope} == 0 (line 6): VIOLATED: type "nope" is not in the run (types: a, b)`}
	if strings.Join(bad, "\n") != strings.Join(want, "\n") || r.Verdict != "fail" {
		t.Errorf("violations:\n%s\nwant:\n%s\nverdict %s", strings.Join(bad, "\n"), strings.Join(want, "\n"), r.Verdict)
	}
	dir := t.TempDir()
	jp, hp, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(jp)
	if err != nil || back.Totals != r.Totals || back.RunID != "r" {
		t.Errorf("report.json round trip: %v %+v", err, back)
	}
	if b, _ := os.ReadFile(hp); !strings.Contains(string(b), `<tr class="totals"><td>all</td><td>6</td><td>6</td>`) {
		t.Errorf("report.html lacks the totals row")
	}
}

func TestRunFlagsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--dataset", "x"}, "--stack or --controller-url is required"},
		{[]string{"run", "--controller-url", "http://127.0.0.1:1"}, "--dataset is required"},
		{[]string{"run", "--controller-url", "http://127.0.0.1:1", "--dataset", "x", "--repeat", "0"}, "--repeat 0: want 1 or more"},
		{[]string{"run", "--controller-url", "http://127.0.0.1:1", "--dataset", "x", "--start-in", "-1s"}, "--start-in -1s"},
		{[]string{"run", "--controller-url", "http://127.0.0.1:1", "--dataset", "/nonexistent/ds"}, "--dataset"},
	} {
		c := Command(nil)
		c.SetArgs(tc.args)
		c.SetOut(new(strings.Builder))
		c.SetErr(new(strings.Builder))
		err := c.Execute()
		if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v (exit %d), want %q", tc.args, err, ExitCode(err), tc.want)
		}
	}
}

func TestStackWithoutAResolverSaysSo(t *testing.T) {
	c := Command(nil)
	c.SetArgs([]string{"run", "--stack", "lab", "--dataset", t.TempDir()})
	c.SetOut(new(strings.Builder))
	c.SetErr(new(strings.Builder))
	err := c.Execute()
	if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), "--stack lab: this build cannot find a stack's controller; give --controller-url") {
		t.Fatalf("got %v (exit %d)", err, ExitCode(err))
	}
}

// TestStackRouteUsesTheResolversControllerAndSUT runs `campaign run --stack` with a resolver
// whose controller stand-in (an HTTP server on loopback) refuses the load: the load must reach
// it, with the stack's SUT address unless --sut-address overrides it.
func TestStackRouteUsesTheResolversControllerAndSUT(t *testing.T) {
	ds := filepath.Join(t.TempDir(), "ds")
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer = 1, 1, 2
	if err := dataset.Generate(ds, o); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{nil, "sut.lab:7000"},
		{[]string{"--sut-address", "other.lab:9"}, "other.lab:9"},
	} {
		var got controller.LoadRequest
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" {
				return // 200: ready
			}
			if r.URL.Path == "/v1/dataset" && r.Method == "POST" {
				json.NewDecoder(r.Body).Decode(&got)
			}
			http.Error(w, `{"error":"stand-in refuses"}`, http.StatusBadRequest)
		}))
		var asked []string
		resolve := func(ctx context.Context, stack, stacksDir, kubeconfig string) (*Lab, error) {
			asked = []string{stack, stacksDir, kubeconfig}
			return &Lab{Client: NewClient(srv.URL), SUTAddress: "sut.lab:7000"}, nil
		}
		c := Command(resolve)
		c.SetArgs(append([]string{"run", "--stack", "lab", "--stacks-dir", "st", "--kubeconfig", "kc", "--dataset", ds}, tc.flags...))
		c.SetOut(new(strings.Builder))
		c.SetErr(new(strings.Builder))
		err := c.Execute()
		srv.Close()
		if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), "stand-in refuses") {
			t.Errorf("%v: got %v, want the controller's refusal", tc.flags, err)
		}
		if strings.Join(asked, " ") != "lab st kc" {
			t.Errorf("%v: the resolver was asked for %q, want stack lab, stacks dir st, kubeconfig kc", tc.flags, asked)
		}
		if got.AddressOverride != tc.want || got.Path != "ds" {
			t.Errorf("%v: the controller was asked to load %+v, want path ds with address_override %s", tc.flags, got, tc.want)
		}
	}
}

func TestKubeconfigNeedsStack(t *testing.T) {
	c := Command(nil)
	c.SetArgs([]string{"status", "--controller-url", "http://127.0.0.1:1", "--kubeconfig", "kc"})
	c.SetOut(new(strings.Builder))
	c.SetErr(new(strings.Builder))
	if err := c.Execute(); err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), "--kubeconfig goes with --stack") {
		t.Fatalf("got %v", err)
	}
}

// WaitReady waits through a controller that is still starting (503) and through a Service
// without endpoints yet (the API server's proxy answers 503 too), telling the first failure
// once; a controller that never gets ready fails with the last failure.
func TestWaitReady(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if r.URL.Path != "/readyz" || n <= 3 {
			http.Error(w, "state topic not read yet", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	var told []error
	if err := NewClient(srv.URL).WaitReady(context.Background(), time.Minute, time.Millisecond, func(err error) { told = append(told, err) }); err != nil {
		t.Fatal(err)
	}
	if calls != 4 || len(told) != 1 || !strings.Contains(told[0].Error(), "state topic not read yet") {
		t.Errorf("%d calls, told %v: want 4 calls and the first failure once", calls, told)
	}
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no endpoints available for service", http.StatusServiceUnavailable)
	}))
	defer never.Close()
	err := NewClient(never.URL).WaitReady(context.Background(), 50*time.Millisecond, time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "not ready within 50ms") || !strings.Contains(err.Error(), "no endpoints available") {
		t.Errorf("got %v", err)
	}
}
