package cli

import (
	"context"
	"io"
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
)

// get returns the status code and body of a GET (code 0 when the request failed).
func get(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWorkerRefusesAnAssignmentOverItsOpenFilesLimit runs a worker process under
// `prlimit --nofile=200` and gives it 400 TCP sources (400 connections + the reserve do not fit):
// it must refuse rather than thrash. /readyz answers 503 naming the need and the limit, /metrics
// and /healthz keep answering and show the refusal, the log holds exactly one refusal line and at
// most a handful of "too many open files", nothing was sent, and it left the group: a worker with
// enough open files then delivers every record.
func TestWorkerRefusesAnAssignmentOverItsOpenFilesLimit(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatal("prlimit not found: install util-linux (Debian's essential set has it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "ds")
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span = 1, 400, 2, 2*time.Second
	if err := dataset.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	env, err := run.NewEnv(run.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if _, err := env.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: env.Sink.Addr()}); err != nil {
		t.Fatal(err)
	}
	health := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "worker.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(prlimit, "--nofile=200:200", "--", os.Args[0], "worker")
	cmd.Env = append(os.Environ(), "SIMULATOR_TEST_AS_MAIN=1",
		"SIMULATOR_KAFKA_BROKERS="+env.Brokers[0], "SIMULATOR_TYPE=type1", "SIMULATOR_CONTROLLER_URL="+env.URL,
		"SIMULATOR_LISTEN="+health, "SIMULATOR_LOG_FORMAT=text")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- worker log (tail) ---\n%s", tail(b, 3000))
		}
	}()
	base := "http://" + health
	waitHTTP(t, ctx, base+"/readyz")
	if _, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "500ms"}); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	for {
		if code, body = get(base + "/readyz"); code == http.StatusServiceUnavailable && strings.Contains(body, "open files") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/readyz never reported the open-files refusal; last: %d %q", code, body)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, want := range []string{"400 TCP sources", "need 464 open files", "limit is 200"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz body lacks %q: %q", want, body)
		}
	}
	if code, body := get(base + "/metrics"); code != 200 ||
		!strings.Contains(body, "simulator_worker_assignments_refused_total 1") ||
		!strings.Contains(body, "simulator_worker_open_files_limit 200") ||
		!strings.Contains(body, "simulator_worker_open_files_needed 464") {
		t.Errorf("/metrics: %d, want 200 with the refusal, the limit and the need:\n%s", code, body)
	}
	if code, _ := get(base + "/healthz"); code != 200 {
		t.Errorf("/healthz: %d, want 200", code)
	}
	if n := env.Sink.Total(); n != 0 {
		t.Errorf("a refusing worker sent %d records", n)
	}
	// The refusing worker left the group: a worker with enough open files takes every source.
	env.AddWorker("type1", nil)
	if err := env.WaitCommitted(ctx, map[string]int64{"type1": 800}); err != nil {
		t.Fatal(err)
	}
	for env.Sink.Total() < 800 {
		select {
		case <-ctx.Done():
			t.Fatalf("after the refusal another worker delivered %d of 800 records", env.Sink.Total())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-ctx.Done():
		t.Fatal("worker did not exit on SIGTERM")
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "refusing the assignment"); n != 1 {
		t.Errorf("want exactly one refusal log line, got %d", n)
	}
	if n := strings.Count(string(b), "too many open files"); n > 5 {
		t.Errorf("%d lines say \"too many open files\", want at most a handful", n)
	}
}
