package dataset

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// File names inside a dataset.
const (
	MetaFile    = "dataset.json"
	ConfigFile  = "source.json"
	RecordsFile = "records"
)

// Protocols and framings a source may use.
const (
	ProtoTCP  = "tcp"
	ProtoSFTP = "sftp"

	FramingNewline = "newline"  // payload + "\n"; payload must not contain "\n"
	FramingLength  = "length32" // 4-byte big-endian length, then payload
	FramingRaw     = "raw"      // payload bytes as they are
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Meta is the optional dataset.json at the dataset root.
type Meta struct {
	Name string `json:"name,omitempty"`
	// Span is the length of one loop in repeat mode (Go duration). Default: last offset + 1s.
	Span string `json:"span,omitempty"`
}

// SourceConfig is a source's source.json: where and how its records go.
type SourceConfig struct {
	Protocol string      `json:"protocol"`
	Framing  string      `json:"framing,omitempty"`
	TCP      *TCPConfig  `json:"tcp,omitempty"`
	SFTP     *SFTPConfig `json:"sftp,omitempty"`
}

// TCPConfig is the TCP push target: the SUT's address.
type TCPConfig struct {
	Address string `json:"address"`
}

// SFTPConfig lets the SUT pull due records as files from the worker's SFTP server.
type SFTPConfig struct {
	User string `json:"user"`
	// PasswordEnv names an environment variable of the worker holding the password.
	PasswordEnv string `json:"password_env,omitempty"`
	// AuthorizedKeys holds OpenSSH authorized_keys lines accepted for User.
	AuthorizedKeys []string `json:"authorized_keys,omitempty"`
	// FilePattern names each due record's file; {seq} is the record's index. Default "{seq}.rec".
	FilePattern string `json:"file_pattern,omitempty"`
}

// Source is one data source: its type, instance, config and records sorted by offset.
type Source struct {
	Type     string
	Instance string
	Config   SourceConfig
	Records  []Record
}

// ID is "<type>/<instance>".
func (s *Source) ID() string { return s.Type + "/" + s.Instance }

// Dataset is a parsed, valid dataset.
type Dataset struct {
	Dir         string
	Meta        Meta
	Span        time.Duration
	Sources     []*Source // sorted by type, then instance
	Fingerprint string    // sha256 over every file's name and content
}

// Types returns the sorted distinct types.
func (d *Dataset) Types() []string {
	var out []string
	for _, s := range d.Sources {
		if len(out) == 0 || out[len(out)-1] != s.Type {
			out = append(out, s.Type)
		}
	}
	return out
}

// RecordCount is the number of records in the dataset (one loop).
func (d *Dataset) RecordCount() int {
	n := 0
	for _, s := range d.Sources {
		n += len(s.Records)
	}
	return n
}

// ValidationError carries every problem of a dataset.
type ValidationError struct{ Problems []Problem }

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dataset has %d problem(s):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Strings returns the problems as "file:line: msg".
func (e *ValidationError) Strings() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.String()
	}
	return out
}

// Load reads and validates the dataset at dir. On any problem it returns a *ValidationError listing
// all of them (file paths relative to dir) and no dataset.
func Load(dir string) (*Dataset, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening dataset: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("opening dataset: %s is not a directory", dir)
	}
	d := &Dataset{Dir: dir}
	var probs []Problem
	h := sha256.New()
	prob := func(file string, line int, format string, args ...any) {
		probs = append(probs, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if b, err := os.ReadFile(filepath.Join(dir, MetaFile)); err == nil {
		fmt.Fprintf(h, "%s\x00%d\x00", MetaFile, len(b))
		h.Write(b)
		if line, err := decodeStrict(b, &d.Meta); err != nil {
			prob(MetaFile, line, "%v", err)
		} else if d.Meta.Span != "" {
			sp, err := time.ParseDuration(d.Meta.Span)
			if err != nil || sp <= 0 {
				prob(MetaFile, lineOfKey(b, "span"), "span %q: want a positive duration such as 30s", d.Meta.Span)
			}
			d.Span = sp
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		prob(MetaFile, 0, "%v", err)
	}
	types, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading dataset: %w", err)
	}
	for _, te := range types {
		if te.Name() == MetaFile || strings.HasPrefix(te.Name(), ".") {
			continue
		}
		if !te.IsDir() {
			prob(te.Name(), 0, "unexpected file: the dataset root holds only %s and one directory per type", MetaFile)
			continue
		}
		if !nameRE.MatchString(te.Name()) {
			prob(te.Name(), 0, "type name must match %s", nameRE)
			continue
		}
		insts, err := os.ReadDir(filepath.Join(dir, te.Name()))
		if err != nil {
			prob(te.Name(), 0, "%v", err)
			continue
		}
		n := 0
		for _, ie := range insts {
			rel := te.Name() + "/" + ie.Name()
			if strings.HasPrefix(ie.Name(), ".") {
				continue
			}
			if !ie.IsDir() {
				prob(rel, 0, "unexpected file: a type directory holds one directory per source instance")
				continue
			}
			if !nameRE.MatchString(ie.Name()) {
				prob(rel, 0, "instance name must match %s", nameRE)
				continue
			}
			n++
			src := &Source{Type: te.Name(), Instance: ie.Name()}
			probs = append(probs, loadSource(filepath.Join(dir, rel), rel, src, h)...)
			d.Sources = append(d.Sources, src)
		}
		if n == 0 {
			prob(te.Name(), 0, "type has no source directories")
		}
	}
	if len(d.Sources) == 0 && len(probs) == 0 {
		prob(".", 0, "no data sources: expected <type>/<instance>/%s and %s", ConfigFile, RecordsFile)
	}
	// A span no longer than a record's offset would make repeat loops overlap.
	if d.Span > 0 {
		var last time.Duration
		var at string
		for _, s := range d.Sources {
			for _, r := range s.Records {
				if r.Offset > last {
					last, at = r.Offset, s.Type+"/"+s.Instance
				}
			}
		}
		if last >= d.Span {
			b, _ := os.ReadFile(filepath.Join(dir, MetaFile))
			prob(MetaFile, lineOfKey(b, "span"), "span %s is not longer than the largest record offset %s (%s): "+
				"repeat loops would overlap; make span longer or leave it out (default: largest offset + 1s)", d.Span, last, at)
		}
	}
	if len(probs) > 0 {
		return nil, &ValidationError{Problems: probs}
	}
	sort.Slice(d.Sources, func(i, j int) bool { return d.Sources[i].ID() < d.Sources[j].ID() })
	if d.Span == 0 {
		var last time.Duration
		for _, s := range d.Sources {
			if n := len(s.Records); n > 0 && s.Records[n-1].Offset > last {
				last = s.Records[n-1].Offset
			}
		}
		d.Span = last + time.Second
	}
	d.Fingerprint = hex.EncodeToString(h.Sum(nil))
	return d, nil
}

func loadSource(dir, rel string, src *Source, h io.Writer) []Problem {
	var probs []Problem
	cfgRel := rel + "/" + ConfigFile
	prob := func(file string, line int, format string, args ...any) {
		probs = append(probs, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		prob(cfgRel, 0, "missing or unreadable: %v", errors.Unwrap(err))
	} else {
		fmt.Fprintf(h, "%s\x00%d\x00", cfgRel, len(b))
		h.Write(b)
		if line, err := decodeStrict(b, &src.Config); err != nil {
			prob(cfgRel, line, "%v", err)
		} else {
			for _, p := range src.Config.check() {
				prob(cfgRel, lineOfKey(b, p.key), "%s", p.msg)
			}
		}
	}
	recRel := rel + "/" + RecordsFile
	f, err := os.Open(filepath.Join(dir, RecordsFile))
	if err != nil {
		prob(recRel, 0, "missing or unreadable: %v", errors.Unwrap(err))
		return probs
	}
	defer f.Close()
	fmt.Fprintf(h, "%s\x00", recRel)
	recs, rp := ParseRecords(io.TeeReader(f, h), recRel)
	probs = append(probs, rp...)
	if src.Config.Framing == FramingNewline {
		for _, r := range recs {
			if bytes.IndexByte(r.Payload, '\n') >= 0 {
				prob(recRel, r.Line, "payload contains a newline, which framing %q cannot carry", FramingNewline)
			}
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
	src.Records = recs
	return probs
}

type keyProblem struct{ key, msg string }

func (c *SourceConfig) check() []keyProblem {
	var out []keyProblem
	switch c.Framing {
	case "":
		c.Framing = FramingNewline
	case FramingNewline, FramingLength, FramingRaw:
	default:
		out = append(out, keyProblem{"framing", fmt.Sprintf("framing %q: want %s, %s or %s", c.Framing, FramingNewline, FramingLength, FramingRaw)})
	}
	switch c.Protocol {
	case ProtoTCP:
		if c.TCP == nil || c.TCP.Address == "" {
			out = append(out, keyProblem{"protocol", "protocol tcp needs tcp.address (host:port of the SUT)"})
		} else if _, port, err := net.SplitHostPort(c.TCP.Address); err != nil || port == "" {
			out = append(out, keyProblem{"address", fmt.Sprintf("tcp.address %q: want host:port", c.TCP.Address)})
		}
	case ProtoSFTP:
		if c.SFTP == nil || c.SFTP.User == "" {
			out = append(out, keyProblem{"protocol", "protocol sftp needs sftp.user"})
		} else {
			if c.SFTP.PasswordEnv == "" && len(c.SFTP.AuthorizedKeys) == 0 {
				out = append(out, keyProblem{"sftp", "sftp needs password_env or authorized_keys"})
			}
			if c.SFTP.FilePattern == "" {
				c.SFTP.FilePattern = "{seq}.rec"
			} else if strings.ContainsAny(c.SFTP.FilePattern, "/\\") || !strings.Contains(c.SFTP.FilePattern, "{seq}") || strings.HasPrefix(c.SFTP.FilePattern, ".") {
				// A leading dot is the spool's own files (being written, pull markers).
				out = append(out, keyProblem{"file_pattern", fmt.Sprintf("sftp.file_pattern %q: must contain {seq}, no slash, and not start with a dot", c.SFTP.FilePattern)})
			}
		}
	case "":
		out = append(out, keyProblem{"", "protocol is required: tcp or sftp"})
	default:
		out = append(out, keyProblem{"protocol", fmt.Sprintf("protocol %q: want tcp or sftp", c.Protocol)})
	}
	return out
}

// decodeStrict decodes JSON refusing unknown fields; on error it returns the line of the problem.
func decodeStrict(b []byte, v any) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return lineAt(b, int(dec.InputOffset())), errors.New("trailing data after the JSON object")
		}
		return 0, nil
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return lineAt(b, int(se.Offset)), fmt.Errorf("invalid JSON: %v", err)
	case errors.As(err, &te):
		return lineAt(b, int(te.Offset)), fmt.Errorf("%s: wrong type: %v", te.Field, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		key := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return lineOfKey(b, key), fmt.Errorf("unknown key %q", key)
	}
	return 0, fmt.Errorf("invalid JSON: %v", err)
}

func lineAt(b []byte, off int) int {
	if off > len(b) {
		off = len(b)
	}
	return 1 + bytes.Count(b[:off], []byte{'\n'})
}

// lineOfKey finds the first line mentioning "key" (0 if none).
func lineOfKey(b []byte, key string) int {
	if key == "" {
		return 0
	}
	i := bytes.Index(b, []byte(`"`+key+`"`))
	if i < 0 {
		return 0
	}
	return lineAt(b, i)
}
