package dataset

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// GenOptions describes a synthetic dataset.
type GenOptions struct {
	Types      int
	SourcesPer int
	RecordsPer int
	Span       time.Duration
	RecordSize int
	Seed       uint64
	SUTAddress string
	Framing    string
	// Protocol is tcp (default: push to SUTAddress) or sftp (each source a
	// login <type>-<instance> whose password is in $SFTPPasswordEnv).
	Protocol      string
	TypePrefix    string // type names are <prefix><n>; default "type"
	InstancePrefx string // instance names are <prefix><n>; default "ne"
}

// SFTPPasswordEnv is the environment variable generated sftp sources take
// their password from.
const SFTPPasswordEnv = "SIMULATOR_SFTP_PASSWORD"

// DefaultGenOptions replays in about 10 s.
func DefaultGenOptions() GenOptions {
	return GenOptions{Types: 2, SourcesPer: 10, RecordsPer: 100, Span: 10 * time.Second, RecordSize: 128,
		Seed: 1, SUTAddress: "127.0.0.1:9000", Framing: FramingNewline}
}

// Mark is the header the generator puts at the start of every payload, so that a sink can tell
// which source, which record and which offset it received: "SIMREC <source-id> <seq> <offset-ns> ".
type Mark struct {
	Source string
	Seq    int
	Offset time.Duration
}

var markPrefix = []byte("SIMREC ")

// AppendMark appends a mark to b.
func AppendMark(b []byte, m Mark) []byte {
	b = append(b, markPrefix...)
	b = append(b, m.Source...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(m.Seq), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(m.Offset), 10)
	return append(b, ' ')
}

// ParseMark reads the mark at the start of a payload.
func ParseMark(p []byte) (Mark, bool) {
	if !bytes.HasPrefix(p, markPrefix) {
		return Mark{}, false
	}
	p = p[len(markPrefix):]
	var f [3][]byte
	for i := range f {
		j := bytes.IndexByte(p, ' ')
		if j <= 0 {
			return Mark{}, false
		}
		f[i], p = p[:j], p[j+1:]
	}
	seq, err1 := strconv.Atoi(string(f[1]))
	off, err2 := strconv.ParseInt(string(f[2]), 10, 64)
	if err1 != nil || err2 != nil || seq < 0 || off < 0 {
		return Mark{}, false
	}
	return Mark{Source: string(f[0]), Seq: seq, Offset: time.Duration(off)}, true
}

// Generate writes a synthetic dataset into dir (created; must be empty or absent). Offsets are
// uniform in [0, Span), written in shuffled order; seq numbers follow offset order.
func Generate(dir string, o GenOptions) error {
	if o.Types < 1 || o.SourcesPer < 1 || o.RecordsPer < 0 || o.Span <= 0 || o.RecordSize < 0 {
		return fmt.Errorf("generate: types and sources must be >= 1, records and size >= 0, span > 0")
	}
	if o.Framing == "" {
		o.Framing = FramingNewline
	}
	switch o.Protocol {
	case "", ProtoTCP, ProtoSFTP:
	default:
		return fmt.Errorf("generate: protocol %q: want tcp or sftp", o.Protocol)
	}
	if o.TypePrefix == "" {
		o.TypePrefix = "type"
	}
	if o.InstancePrefx == "" {
		o.InstancePrefx = "ne"
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("generate: %s is not empty", dir)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x51ab))
	meta, _ := json.MarshalIndent(Meta{Name: "synthetic", Span: o.Span.String()}, "", "  ")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, MetaFile), append(meta, '\n'), 0o644); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	filler := []byte("abcdefghijklmnopqrstuvwxyz0123456789")
	for t := 0; t < o.Types; t++ {
		typ := fmt.Sprintf("%s%d", o.TypePrefix, t+1)
		for s := 0; s < o.SourcesPer; s++ {
			inst := fmt.Sprintf("%s%05d", o.InstancePrefx, s+1)
			sdir := filepath.Join(dir, typ, inst)
			if err := os.MkdirAll(sdir, 0o755); err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			cfg := SourceConfig{Protocol: ProtoTCP, Framing: o.Framing, TCP: &TCPConfig{Address: o.SUTAddress}}
			if o.Protocol == ProtoSFTP {
				cfg = SourceConfig{Protocol: ProtoSFTP, SFTP: &SFTPConfig{User: typ + "-" + inst, PasswordEnv: SFTPPasswordEnv}}
			}
			cb, _ := json.MarshalIndent(cfg, "", "  ")
			if err := os.WriteFile(filepath.Join(sdir, ConfigFile), append(cb, '\n'), 0o644); err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			offs := make([]time.Duration, o.RecordsPer)
			for i := range offs {
				offs[i] = time.Duration(rng.Int64N(int64(o.Span)))
			}
			sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
			order := rng.Perm(len(offs))
			var buf []byte
			id := typ + "/" + inst
			for _, i := range order {
				p := AppendMark(nil, Mark{Source: id, Seq: i, Offset: offs[i]})
				for len(p) < o.RecordSize {
					p = append(p, filler[len(p)%len(filler)])
				}
				buf = AppendRecord(buf, offs[i], p)
			}
			if err := os.WriteFile(filepath.Join(sdir, RecordsFile), buf, 0o644); err != nil {
				return fmt.Errorf("generate: %w", err)
			}
		}
	}
	return nil
}
