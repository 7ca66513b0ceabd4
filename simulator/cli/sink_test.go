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
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
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

// TestSinkProcessReportsFramingMismatches runs `simulator sink` with one framing and sends another:
// each mismatch is counted once per connection in the report (framing_mismatches), described
// naming the connection and the framing the stream looks like, and logged in exactly one line
// naming the connection. A raw stream into a raw sink is split by the dataset's payloads: every
// record received, no mismatch.
func TestSinkProcessReportsFramingMismatches(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ds")
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span = 1, 1, 5, time.Second
	if err := dataset.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for _, r := range d.Sources[0].Records {
		payloads = append(payloads, string(r.Payload))
	}
	newline := []byte(strings.Join(payloads, "\n") + "\n")
	raw := []byte(strings.Join(payloads, ""))
	for _, tc := range []struct {
		name, framing string
		send          []byte
		looks         string // "" = no mismatch, every record received
	}{
		{"length32 sink, newline stream", dataset.FramingLength, newline, "looks like text"},
		{"newline sink, length32 stream", dataset.FramingNewline, length32(payloads...), "looks length32-framed"},
		{"raw sink, newline stream", dataset.FramingRaw, newline, "looks newline-framed"},
		{"newline sink, raw stream", dataset.FramingNewline, raw, "looks raw"},
		{"raw sink, raw stream", dataset.FramingRaw, raw, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			addr := freeAddr(t)
			report := filepath.Join(t.TempDir(), "sink.json")
			cmd := exec.Command(os.Args[0], "sink", "--listen", addr, "--framing", tc.framing, "--dataset", dir, "--report", report)
			cmd.Env = append(os.Environ(), "SIMULATOR_TEST_AS_MAIN=1")
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			waitTCP(t, ctx, addr)
			from := sendAndDrain(t, ctx, addr, tc.send)
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			b, err := os.ReadFile(report)
			if err != nil {
				t.Fatalf("no report: %v\n%s", err, out.String())
			}
			var rep struct {
				sink.Report
				// decoded here so the test builds on a Report without them
				FramingMismatches      int64    `json:"framing_mismatches"`
				FramingMismatchSamples []string `json:"framing_mismatch_samples"`
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if tc.looks == "" {
				if rep.FramingMismatches != 0 || rep.Total.Received != 5 || rep.Total.Lost != 0 {
					t.Errorf("want 5 received, no mismatch; report %s", b)
				}
				return
			}
			if rep.FramingMismatches != 1 || len(rep.FramingMismatchSamples) != 1 {
				t.Fatalf("want 1 framing mismatch; report %s\n%s", b, out.String())
			}
			if d := rep.FramingMismatchSamples[0]; !strings.Contains(d, from) || !strings.Contains(d, tc.looks) {
				t.Errorf("mismatch %q: want it to name the connection %s and say the stream %s", d, from, tc.looks)
			}
			var lines int
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.Contains(l, "framing mismatch") && strings.Contains(l, from) {
					lines++
				}
			}
			if lines != 1 {
				t.Errorf("want one log line naming %s, got %d:\n%s", from, lines, out.String())
			}
		})
	}
}
