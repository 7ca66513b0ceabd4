package cli

import (
	"context"
	"encoding/binary"
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
func sendAndDrain(t *testing.T, ctx context.Context, addr string, data []byte) (local string) {
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
	return c.LocalAddr().String()
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

// writeSource writes one hand-made source: length32 framing, records as (offset, payload).
func writeSource(t *testing.T, dir, typ, inst string, recs ...any) {
	t.Helper()
	sdir := filepath.Join(dir, typ, inst)
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := `{"protocol": "tcp", "framing": "length32", "tcp": {"address": "127.0.0.1:9"}}`
	if err := os.WriteFile(filepath.Join(sdir, dataset.ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for i := 0; i < len(recs); i += 2 {
		buf = dataset.AppendRecord(buf, recs[i].(time.Duration), []byte(recs[i+1].(string)))
	}
	if err := os.WriteFile(filepath.Join(sdir, dataset.RecordsFile), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func length32(payloads ...string) []byte {
	var b []byte
	for _, p := range payloads {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// TestSinkProcessMatchesUnmarkedPayloadsByContent runs `simulator sink --dataset` on a hand-made
// dataset without the generator's marks, with 0-byte payloads shared by two sources: every record
// is counted received (matched by source, offset and content hash; a 0-byte record on a connection
// that also carried a record of source a is a's), none lost; a payload that is in no source and a
// 0-byte payload on a connection that names no source are reported as unattributed, naming that
// connection, not silently counted lost.
func TestSinkProcessMatchesUnmarkedPayloadsByContent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "ds")
	ms := time.Millisecond
	writeSource(t, dir, "t", "a", 0*ms, "", 100*ms, "", 200*ms, "", 300*ms, "hello a")
	writeSource(t, dir, "t", "b", 0*ms, "", 100*ms, "bbb")
	if _, err := dataset.Load(dir); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	report := filepath.Join(t.TempDir(), "sink.json")
	cmd := spawn(t, "sink", nil, "sink", "--listen", addr, "--framing", "length32", "--dataset", dir, "--report", report)
	waitTCP(t, ctx, addr)
	sendAndDrain(t, ctx, addr, length32("hello a", "", "", ""))
	sendAndDrain(t, ctx, addr, length32("bbb", ""))
	stray := sendAndDrain(t, ctx, addr, length32("zzz", ""))
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("sink exit: %v", err)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no report written: %v", err)
	}
	var rep struct {
		sink.Report
		// decoded here so the test builds on a Report without them
		Unattributed        int64    `json:"unattributed"`
		UnattributedSamples []string `json:"unattributed_samples"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Total.Expected != 6 || rep.Total.Received != 6 || rep.Total.Lost != 0 || rep.Total.Duplicated != 0 {
		t.Errorf("want 6 expected, 6 received, 0 lost, 0 duplicated; report %s", b)
	}
	if rep.Unattributed != 2 || len(rep.UnattributedSamples) != 2 {
		t.Fatalf("want 2 unattributed records described; report %s", b)
	}
	for _, d := range rep.UnattributedSamples {
		if !strings.Contains(d, "from "+stray) {
			t.Errorf("unattributed %q does not name its connection %s", d, stray)
		}
	}
	if all := strings.Join(rep.UnattributedSamples, "\n"); !strings.Contains(all, "3 bytes") || !strings.Contains(all, "0 bytes") || !strings.Contains(all, "t/a, t/b") {
		t.Errorf("unattributed samples %q: want the 3-byte stray and the 0-byte record shared by t/a, t/b", rep.UnattributedSamples)
	}
}
