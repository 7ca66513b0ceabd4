package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/contract"
)

func TestParseRecordsRoundTrip(t *testing.T) {
	var buf []byte
	buf = append(buf, "# a comment\n\n"...)
	buf = AppendRecord(buf, 1500*time.Millisecond, []byte("hello\nworld"))
	buf = AppendRecord(buf, 0, nil)
	buf = AppendRecord(buf, time.Hour+time.Nanosecond, bytes.Repeat([]byte{0, 255}, 1000))
	recs, probs := ParseRecords(bytes.NewReader(buf), "f")
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	if len(recs) != 3 || recs[0].Offset != 1500*time.Millisecond || string(recs[0].Payload) != "hello\nworld" ||
		recs[1].Offset != 0 || len(recs[1].Payload) != 0 || recs[2].Offset != time.Hour+time.Nanosecond || len(recs[2].Payload) != 2000 {
		t.Fatalf("got %+v", recs)
	}
	if recs[0].Line != 3 || recs[1].Line != 6 || recs[2].Line != 8 {
		t.Fatalf("lines %d %d %d", recs[0].Line, recs[1].Line, recs[2].Line)
	}
}

func TestParseRecordsProblemsHaveLines(t *testing.T) {
	in := "@1s 3\nabc\n@-2s 1\nx\n@5 1\ny\nbogus\n@1s 10\nshort\n"
	_, probs := ParseRecords(strings.NewReader(in), "recs")
	var got []string
	for _, p := range probs {
		got = append(got, p.String())
	}
	want := []string{
		"recs:3: offset -2s is negative",
		"recs:5: offset \"5\": not a duration with a unit (e.g. 1.5s, 250ms)",
		"recs:7: expected a record header \"@<offset> <length>\", got \"bogus\"",
		"recs:8: payload truncated: want 10 bytes",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func FuzzParseRecords(f *testing.F) {
	f.Add([]byte("@1s 3\nabc\n"))
	f.Add([]byte("# c\n@0s 0\n\n@2h 1\n\n"))
	f.Add([]byte("@1s 99999999999\n"))
	f.Add([]byte("@1s 2\nab"))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, probs := ParseRecords(bytes.NewReader(in), "fuzz")
		for _, p := range probs {
			if p.Line < 1 || p.Line > bytes.Count(in, []byte{'\n'})+1 {
				t.Fatalf("problem line %d out of range: %v", p.Line, p)
			}
		}
		if len(probs) == 0 {
			// A clean parse must re-encode to something that parses to the same records.
			var out []byte
			for _, r := range recs {
				if r.Offset < 0 || r.Offset > MaxOffset {
					t.Fatalf("offset out of range accepted: %v", r.Offset)
				}
				out = AppendRecord(out, r.Offset, r.Payload)
			}
			again, p2 := ParseRecords(bytes.NewReader(out), "again")
			if len(p2) != 0 || len(again) != len(recs) {
				t.Fatalf("re-encoded parse differs: %v", p2)
			}
			for i := range recs {
				if again[i].Offset != recs[i].Offset || !bytes.Equal(again[i].Payload, recs[i].Payload) {
					t.Fatalf("record %d differs", i)
				}
			}
		}
	})
}

func TestGenerateLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ds")
	o := DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer = 2, 3, 50
	if err := Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	d, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.RecordCount(); got != 300 {
		t.Fatalf("records %d", got)
	}
	if d.Span != 10*time.Second || len(d.Types()) != 2 {
		t.Fatalf("span %v types %v", d.Span, d.Types())
	}
	for _, s := range d.Sources {
		seen := map[int]bool{}
		for i, r := range s.Records {
			if i > 0 && r.Offset < s.Records[i-1].Offset {
				t.Fatal("records not sorted")
			}
			m, ok := ParseMark(r.Payload)
			if !ok || m.Source != s.ID() || m.Offset != r.Offset || seen[m.Seq] || len(r.Payload) != 128 {
				t.Fatalf("bad mark %+v in %q", m, r.Payload)
			}
			seen[m.Seq] = true
		}
	}
	d2, err := Load(dir)
	if err != nil || d2.Fingerprint != d.Fingerprint {
		t.Fatalf("fingerprint not stable: %v", err)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, s string) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("router/a/source.json", "{\n  \"protocol\": \"tcp\",\n  \"tcp\": {\"address\": \"nope\"}\n}\n")
	write("router/a/records", "@1s 3\nabc\n")
	write("router/b/source.json", "{\n  \"protocol\": \"tcp\",\n  \"tcp\": {\"address\": \"h:1\"},\n  \"colour\": 1\n}\n")
	write("router/b/records", "@1s 3\nabc\n@x 1\ny\n")
	write("router/c/source.json", "{\"protocol\": \"tcp\", \"tcp\": {\"address\": \"h:1\"}}")
	write("router/c/records", "@1s 3\na\nb\n")
	write("files/d/source.json", `{"protocol": "sftp", "sftp": {"user": "d", "password_env": "PW", "file_pattern": ".{seq}.rec"}}`)
	write("files/d/records", "@1s 1\na\n")
	write("Bad_Type/x/source.json", "{}")
	_, err := Load(dir)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want ValidationError, got %v", err)
	}
	got := strings.Join(ve.Strings(), "\n")
	for _, want := range []string{
		"Bad_Type: type name must match",
		"router/a/source.json:3: tcp.address \"nope\": want host:port",
		"router/b/source.json:4: unknown key \"colour\"",
		"router/b/records:3: offset \"x\": not a duration",
		"router/c/records:1: payload contains a newline, which framing \"newline\" cannot carry",
		// A leading dot is the SFTP spool's (files being written, pull markers).
		"sftp.file_pattern \".{seq}.rec\": must contain {seq}, no slash, and not start with a dot",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestSpanShorterThanAnOffsetIsRefused(t *testing.T) {
	dir := t.TempDir()
	for rel, s := range map[string]string{
		"dataset.json":     "{\n  \"name\": \"x\",\n  \"span\": \"2s\"\n}\n",
		"pm/a/source.json": `{"protocol": "tcp", "tcp": {"address": "h:1"}}`,
		"pm/a/records":     "@1s 1\na\n",
		"pm/b/source.json": `{"protocol": "tcp", "tcp": {"address": "h:1"}}`,
		"pm/b/records":     "@500ms 1\na\n@2s 1\nb\n",
	} {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Load(dir)
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(strings.Join(ve.Strings(), "\n"), "dataset.json:3: span 2s is not longer than the largest record offset 2s (pm/b)") {
		t.Fatalf("want the span refused, naming the line and the source: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "dataset.json"), []byte(`{"span": "3s"}`), 0o644)
	if d, err := Load(dir); err != nil || d.Span != 3*time.Second {
		t.Fatalf("a span longer than every offset: %v", err)
	}
}

// TestRecordOverTheContractMaximumIsRefused: a record longer than contract.MaxRecordBytes (what
// the record topics accept) is a validation problem naming its file and line; one of exactly
// that size is fine. The payload of the refused one need not even be there: the header says it.
func TestRecordOverTheContractMaximumIsRefused(t *testing.T) {
	if MaxRecordSize != contract.MaxRecordBytes {
		t.Fatalf("dataset.MaxRecordSize %d differs from contract.MaxRecordBytes %d", MaxRecordSize, contract.MaxRecordBytes)
	}
	in := AppendRecord(nil, 0, bytes.Repeat([]byte{'x'}, contract.MaxRecordBytes))
	in = fmt.Appendf(in, "@1s %d\n", contract.MaxRecordBytes+1)
	recs, probs := ParseRecords(bytes.NewReader(in), "router/ne1/records")
	if len(recs) != 1 || len(probs) != 1 {
		t.Fatalf("want the first record and one problem, got %d records, problems %v", len(recs), probs)
	}
	want := fmt.Sprintf("router/ne1/records:3: length %d exceeds the maximum record size %d", contract.MaxRecordBytes+1, contract.MaxRecordBytes)
	if !strings.HasPrefix(probs[0].String(), want) {
		t.Fatalf("problem %q, want it to start with %q", probs[0], want)
	}
}
