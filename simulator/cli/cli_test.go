package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/run"
	"github.com/simlab/simlab/simulator/sink"
)

// TestMain lets the test binary act as the simulator binary for the multi-process tests.
func TestMain(m *testing.M) {
	if os.Getenv("SIMULATOR_TEST_AS_MAIN") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// spawn starts the test binary as `simulator args...` with extra environment.
func spawn(t *testing.T, name string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "SIMULATOR_TEST_AS_MAIN=1"), env...)
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("--- %s log (tail) ---\n%s", name, tail(b, 3000))
		}
	})
	return cmd
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func waitHTTP(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never answered 200: %v", url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitTCP(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never accepted: %v", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// brokerEnv starts the broker as a process, generates a dataset with o into a temp dir, and starts
// the controller and sink in this process against that broker (closed at the test's end).
func brokerEnv(t *testing.T, ctx context.Context, o dataset.GenOptions) (brokerAddr, dir string, d *dataset.Dataset, env *run.Env) {
	t.Helper()
	brokerAddr = freeAddr(t)
	spawn(t, "broker", nil, "broker", "--listen", brokerAddr)
	waitTCP(t, ctx, brokerAddr)
	dir = filepath.Join(t.TempDir(), "ds")
	if err := dataset.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	env, err = run.NewEnv(run.EnvOptions{Brokers: []string{brokerAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return brokerAddr, dir, d, env
}

// TestSIGKILLWorkerProcess runs the broker and two workers as separate processes, kills one worker
// with SIGKILL mid-run, and checks that the other takes over: nothing lost, nothing early, and
// duplicates bounded by what was received in the last second before the kill (commit interval
// 200 ms).
func TestSIGKILLWorkerProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span = 1, 8, 150, 5*time.Second
	brokerAddr, dir, d, env := brokerEnv(t, ctx, o)
	if _, err := env.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: env.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	health := []string{freeAddr(t), freeAddr(t)}
	var workers []*exec.Cmd
	for i := range 2 {
		workers = append(workers, spawn(t, fmt.Sprintf("worker%d", i), []string{
			"SIMULATOR_KAFKA_BROKERS=" + brokerAddr, "SIMULATOR_TYPE=type1", "SIMULATOR_CONTROLLER_URL=" + env.URL,
			"SIMULATOR_LISTEN=" + health[i], "SIMULATOR_LOG_FORMAT=text", "SIMULATOR_LOG_LEVEL=debug",
		}, "worker", "--commit-interval", "200ms"))
	}
	for _, h := range health {
		waitHTTP(t, ctx, "http://"+h+"/healthz")
		waitHTTP(t, ctx, "http://"+h+"/readyz")
	}
	st, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.WaitGroupMembers(ctx, "type1", 2); err != nil {
		t.Fatal(err)
	}
	total := int64(d.RecordCount())
	for env.Sink.Total() < total*2/5 {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d records before the kill", env.Sink.Total())
		case <-time.After(20 * time.Millisecond):
		}
	}
	killed := time.Now()
	if err := workers[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	workers[0].Wait()
	for env.Sink.Total() < total {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d records after the kill", env.Sink.Total(), total)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := env.WaitCommitted(ctx, map[string]int64{"type1": total}); err != nil {
		t.Fatal(err)
	}
	rep := env.Sink.Report(sink.Expectation{Sources: sink.ExpectDataset(d), Start: st.StartTime, Span: d.Span, Loops: 1})
	bound := int64(env.Sink.CountBetween(killed.Add(-time.Second), killed.Add(100*time.Millisecond)))
	tot := rep.Total
	t.Logf("after SIGKILL: received %d/%d, duplicates %d (bound %d), late p99 %.1f ms, max %.1f ms", tot.Received, tot.Expected, tot.Duplicated, bound, tot.LateP99ms, tot.LateMaxms)
	if tot.Lost != 0 || tot.Early != 0 || tot.Received != total || tot.Duplicated > bound {
		t.Fatalf("lost %d early %d received %d/%d duplicates %d > bound %d", tot.Lost, tot.Early, tot.Received, total, tot.Duplicated, bound)
	}
}

func TestValidateCommandListsProblems(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "router", "a"), 0o755)
	os.WriteFile(filepath.Join(dir, "router", "a", "source.json"), []byte(`{"protocol": "udp"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "router", "a", "records"), []byte("@1s 2\nab\n@2s x\n"), 0o644)
	cmd := exec.Command(os.Args[0], "dataset", "validate", dir)
	cmd.Env = append(os.Environ(), "SIMULATOR_TEST_AS_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v\n%s", err, out.String())
	}
	for _, want := range []string{`router/a/source.json:1: protocol "udp": want tcp or sftp`, `router/a/records:3: length "x": not a non-negative integer`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}
}

func TestEnvOverridesDefaultsFlagsOverrideEnv(t *testing.T) {
	t.Setenv("SIMULATOR_LISTEN", "127.0.0.1:1234")
	t.Setenv("SIMULATOR_TYPE", "router")
	c := workerCmd()
	c.Flags().Parse([]string{"--type", "sensor"})
	if err := envDefaults(c.Flags()); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Flags().GetString("listen"); v != "127.0.0.1:1234" {
		t.Errorf("listen %q, want the env value", v)
	}
	if v, _ := c.Flags().GetString("type"); v != "sensor" {
		t.Errorf("type %q, want the flag value", v)
	}
	t.Setenv("SIMULATOR_COMMIT_INTERVAL", "soon")
	c = workerCmd()
	if err := envDefaults(c.Flags()); err == nil || !strings.Contains(err.Error(), "SIMULATOR_COMMIT_INTERVAL") {
		t.Errorf("bad env value: want an error naming the variable, got %v", err)
	}
}

// TestRunCommandReportsAndExitsZero runs `simulator run` as a process on a tiny dataset: exit 0,
// a per-type table, and a JSON report with exact counts.
func TestRunCommandReportsAndExitsZero(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ds")
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span = 2, 3, 20, time.Second
	if err := dataset.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(os.Args[0], "run", "--dataset", dir, "--workers", "2", "--report", report, "--delay", "500ms")
	cmd.Env = append(os.Environ(), "SIMULATOR_TEST_AS_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"type1 ", "type2 ", "TOTAL ", "OK: nothing lost, nothing early"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep sink.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Total.Expected != 120 || rep.Total.Received != 120 || rep.Total.Lost != 0 || rep.Total.Early != 0 || rep.Types["type2"].Expected != 60 {
		t.Fatalf("report %s", b)
	}
}

// The worker checks at start that it can write to its SFTP spool; one it cannot write to fails at
// once, naming it.
func TestWorkerChecksItsSFTPSpoolAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o644)
	c := workerCmd()
	c.SetArgs([]string{"--kafka-brokers", "127.0.0.1:1", "--type", "files", "--controller-url", "http://127.0.0.1:1", "--sftp-spool", filepath.Join(file, "spool")})
	c.SetOut(io.Discard)
	c.SetErr(io.Discard)
	if err := c.Execute(); err == nil || !strings.Contains(err.Error(), "--sftp-spool "+filepath.Join(file, "spool")) {
		t.Errorf("a spool below a file: got %v, want an error naming it", err)
	}
}

// The worker checks its SFTP host key file at start and logs the fingerprint the SUT's
// known_hosts must hold; a file that holds no key fails at once, naming it.
func TestWorkerChecksItsSFTPHostKeyAtStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	c := workerCmd()
	c.SetArgs([]string{"--kafka-brokers", "127.0.0.1:1", "--type", "files", "--controller-url", "http://127.0.0.1:1", "--sftp-host-key-file", bad})
	c.SetOut(io.Discard)
	c.SetErr(io.Discard)
	if err := c.Execute(); err == nil || !strings.Contains(err.Error(), "--sftp-host-key-file "+bad) {
		t.Errorf("a file without a key: got %v, want an error naming it", err)
	}
}
