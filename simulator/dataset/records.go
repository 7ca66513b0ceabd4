// Package dataset owns the on-disk dataset format of the simulator: the directory layout, the
// per-source config (source.json), the record file parser, validation with file:line problems,
// and the synthetic generator. See docs/DATASET.md.
package dataset

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/simlab/simlab/contract"
)

// MaxRecordSize is the largest payload a record may carry: contract.MaxRecordBytes, which the
// record topics are sized for.
const MaxRecordSize = contract.MaxRecordBytes

// MaxOffset is the largest offset a record may have.
const MaxOffset = 1000 * time.Hour

// Record is one record of a data source: a payload due at Offset after the simulation start.
type Record struct {
	Offset  time.Duration
	Payload []byte
	Line    int // line of the record header in its file
}

// Problem is one thing wrong with a dataset, located by file and line (line 0: the whole file).
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// ParseRecords reads a record file: header lines "@<offset> <length>", each followed by exactly
// <length> payload bytes and a newline. Blank lines and lines starting with '#' between records are
// ignored. It returns every record it could read and every problem found; it stops at the first
// problem that makes the rest of the file unreadable (a bad length). name is used in problems.
func ParseRecords(r io.Reader, name string) ([]Record, []Problem) {
	br := bufio.NewReaderSize(r, 64<<10)
	var recs []Record
	var probs []Problem
	line := 1
	add := func(l int, format string, args ...any) {
		probs = append(probs, Problem{File: name, Line: l, Msg: fmt.Sprintf(format, args...)})
	}
	for {
		raw, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			add(line, "line longer than %d bytes where a record header was expected", len(raw))
			return recs, probs
		}
		if len(raw) == 0 && err == io.EOF {
			return recs, probs
		}
		if err != nil && err != io.EOF {
			add(line, "reading: %v", err)
			return recs, probs
		}
		hdrLine := line
		text := strings.TrimRight(string(raw), "\r\n")
		if err == nil {
			line++
		}
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			if err == io.EOF {
				return recs, probs
			}
			continue
		}
		if !strings.HasPrefix(text, "@") {
			add(hdrLine, "expected a record header \"@<offset> <length>\", got %q", clip(text))
			if err == io.EOF {
				return recs, probs
			}
			continue
		}
		fields := strings.Fields(text[1:])
		if len(fields) != 2 {
			add(hdrLine, "record header needs an offset and a length (\"@1.5s 42\"), got %q", clip(text))
			return recs, probs
		}
		off, perr := time.ParseDuration(fields[0])
		offOK := true
		switch {
		case perr != nil:
			add(hdrLine, "offset %q: not a duration with a unit (e.g. 1.5s, 250ms)", fields[0])
			offOK = false
		case off < 0:
			add(hdrLine, "offset %s is negative", fields[0])
			offOK = false
		case off > MaxOffset:
			add(hdrLine, "offset %s exceeds the maximum %s", fields[0], MaxOffset)
			offOK = false
		}
		n, lerr := strconv.Atoi(fields[1])
		if lerr != nil || n < 0 || fields[1][0] == '+' {
			add(hdrLine, "length %q: not a non-negative integer", fields[1])
			return recs, probs
		}
		if n > MaxRecordSize {
			add(hdrLine, "length %d exceeds the maximum record size %d (%d MiB, what the record topics accept)", n, MaxRecordSize, MaxRecordSize>>20)
			return recs, probs
		}
		if err == io.EOF {
			add(hdrLine, "record header at end of file: payload of %d bytes missing", n)
			return recs, probs
		}
		payload := make([]byte, n)
		if _, rerr := io.ReadFull(br, payload); rerr != nil {
			add(hdrLine, "payload truncated: want %d bytes", n)
			return recs, probs
		}
		line += bytes.Count(payload, []byte{'\n'})
		b, rerr := br.ReadByte()
		if rerr != nil || b != '\n' {
			add(line, "payload of the record at line %d must be followed by a newline (is the length %d right?)", hdrLine, n)
			return recs, probs
		}
		line++
		if offOK {
			recs = append(recs, Record{Offset: off, Payload: payload, Line: hdrLine})
		}
	}
}

// AppendRecord appends the encoded form of one record to buf.
func AppendRecord(buf []byte, off time.Duration, payload []byte) []byte {
	buf = append(buf, '@')
	buf = append(buf, off.String()...)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(len(payload)), 10)
	buf = append(buf, '\n')
	buf = append(buf, payload...)
	return append(buf, '\n')
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
