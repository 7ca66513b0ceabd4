package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/sink"
)

// sendAndDrain writes frames to the sink at addr, half-closes, and reads until the sink closes its
// side: by then the sink has read and recorded every frame (it closes a connection only after EOF).
func sendAndDrain(t *testing.T, ctx context.Context, addr string, data []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("waiting for the sink to close the connection: %v", err)
	}
}

// TestSinkProcessWritesItsReportWhenTheControllerIsUnreachable runs `simulator sink` as a process
// whose controller is unreachable (a closed port) when it stops: it still writes its JSON report
// with every received record counted, names early, lateness and failed_at_workers as unknown
// (with the controller's address), and exits 1.
func TestSinkProcessWritesItsReportWhenTheControllerIsUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "ds")
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span = 1, 2, 5, time.Second
	if err := dataset.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var frames []byte
	for _, s := range d.Sources {
		for _, r := range s.Records {
			frames = append(append(frames, r.Payload...), '\n')
		}
	}
	addr, ctl := freeAddr(t), freeAddr(t) // nothing listens on ctl
	report := filepath.Join(t.TempDir(), "sink.json")
	cmd := spawn(t, "sink", nil, "sink", "--listen", addr, "--dataset", dir, "--controller-url", "http://"+ctl, "--report", report)
	waitTCP(t, ctx, addr)
	sendAndDrain(t, ctx, addr, frames)
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("sink exit: want status 1 (report incomplete), got %v", err)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no report written: %v", err)
	}
	var rep struct {
		sink.Report
		Unavailable map[string]string `json:"unavailable"` // decoded here so the test builds on a Report without it
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Total.Expected != 10 || rep.Total.Received != 10 || rep.Total.Lost != 0 {
		t.Errorf("want 10 expected, 10 received, 0 lost; report %s", b)
	}
	for _, part := range []string{"early", "lateness", "failed_at_workers"} {
		if why := rep.Unavailable[part]; !strings.Contains(why, ctl) {
			t.Errorf("unavailable[%q] = %q, want the reason naming the controller %s", part, why, ctl)
		}
	}
}
