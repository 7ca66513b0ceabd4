package ignition

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"

	"github.com/coreos/vcontext/report"

	"github.com/coreos/ignition/v2/config/v3_5/types"
)

// reportError turns Butane's report into one error, each entry as
// "<name>:<line>:<column>: <message> (at <path>; strict: warnings are errors)"
// followed by the offending source line.
func reportError(name string, src []byte, entries []report.Entry) error {
	lines := bytes.Split(src, []byte("\n"))
	var b strings.Builder
	for i, e := range entries {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(name)
		if p := e.Marker.StartP; p != nil && p.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
		}
		fmt.Fprintf(&b, ": %s: %s", e.Kind, e.Message)
		if e.Context.Len() > 0 {
			fmt.Fprintf(&b, " (at %s)", e.Context)
		}
		if e.Kind != report.Error {
			b.WriteString(" [strict mode: warnings are errors]")
		}
		if p := e.Marker.StartP; p != nil && p.Line > 0 && int(p.Line) <= len(lines) {
			fmt.Fprintf(&b, "\n    %d | %s", p.Line, strings.TrimRight(string(lines[p.Line-1]), "\r"))
		}
	}
	return &Error{Name: name, Msg: b.String()}
}

// describeReport formats validator entries of a merged config, naming the
// path of each file, directory or link (indexes alone mean nothing to a user:
// the merged config is never written down).
func describeReport(c types.Config, rpt report.Report) string {
	var out []string
	for _, e := range rpt.Entries {
		msg := fmt.Sprintf("%s at %s: %s", e.Kind, e.Context, e.Message)
		if p := e.Context.Path; len(p) >= 3 && p[0] == "storage" {
			if i, ok := p[2].(int); ok {
				switch {
				case p[1] == "files" && i < len(c.Storage.Files):
					msg += " (" + c.Storage.Files[i].Path + ")"
				case p[1] == "directories" && i < len(c.Storage.Directories):
					msg += " (" + c.Storage.Directories[i].Path + ")"
				case p[1] == "links" && i < len(c.Storage.Links):
					msg += " (" + c.Storage.Links[i].Path + ")"
				}
			}
		}
		out = append(out, msg)
	}
	return strings.Join(out, "; ")
}

// Error is a translation error of one template or snippet.
type Error struct {
	// Name names the template or snippet, e.g. "snippet simlab:ignition.worker[0]".
	Name string
	// Msg holds every problem, one per line, each with line and column.
	Msg string
}

func (e *Error) Error() string { return e.Msg }

// UnderUsr reports whether p is /usr or below it (read-only on Fedora CoreOS).
func UnderUsr(p string) bool {
	return p == "/usr" || strings.HasPrefix(p, "/usr/")
}

// checkNode enforces what every node config must satisfy, whatever the
// snippets say: nothing targets /usr, every remote resource carries a
// sha512 verification hash, and the Ceph data disk stays raw.
func checkNode(c types.Config, cephDisk string) error {
	var problems []string
	for i, d := range c.Storage.Directories {
		if UnderUsr(d.Path) {
			problems = append(problems, fmt.Sprintf("storage.directories[%d] %s is under /usr, which is read-only on Fedora CoreOS (use /opt or /var)", i, d.Path))
		}
	}
	for i, f := range c.Storage.Files {
		if UnderUsr(f.Path) {
			problems = append(problems, fmt.Sprintf("storage.files[%d] %s is under /usr, which is read-only on Fedora CoreOS (use /opt or /var)", i, f.Path))
		}
	}
	for i, l := range c.Storage.Links {
		if UnderUsr(l.Path) {
			problems = append(problems, fmt.Sprintf("storage.links[%d] %s is under /usr, which is read-only on Fedora CoreOS (use /opt or /var)", i, l.Path))
		}
	}
	for i, fs := range c.Storage.Filesystems {
		if fs.Path != nil && UnderUsr(*fs.Path) {
			problems = append(problems, fmt.Sprintf("storage.filesystems[%d] mounts at %s, under the read-only /usr", i, *fs.Path))
		}
	}
	walkResources(reflect.ValueOf(c), "", func(at string, r types.Resource) {
		if r.Source == nil || strings.HasPrefix(*r.Source, "data:") || *r.Source == "" {
			return
		}
		if r.Verification.Hash == nil || !strings.HasPrefix(*r.Verification.Hash, "sha512-") {
			problems = append(problems, fmt.Sprintf("%s: remote source %s has no sha512 verification hash", at, *r.Source))
		}
	})
	if cephDisk != "" {
		for i, d := range c.Storage.Disks {
			if d.Device == cephDisk {
				problems = append(problems, fmt.Sprintf("storage.disks[%d] partitions the Ceph data disk %s, which must stay raw for Rook", i, cephDisk))
			}
		}
		for i, fs := range c.Storage.Filesystems {
			if fs.Device == cephDisk || strings.HasPrefix(fs.Device, cephDisk) {
				problems = append(problems, fmt.Sprintf("storage.filesystems[%d] formats the Ceph data disk %s, which must stay raw for Rook", i, fs.Device))
			}
		}
		for i, r := range c.Storage.Raid {
			for _, dev := range r.Devices {
				if strings.HasPrefix(string(dev), cephDisk) {
					problems = append(problems, fmt.Sprintf("storage.raid[%d] uses the Ceph data disk %s, which must stay raw for Rook", i, dev))
				}
			}
		}
		for i, l := range c.Storage.Luks {
			if l.Device != nil && strings.HasPrefix(*l.Device, cephDisk) {
				problems = append(problems, fmt.Sprintf("storage.luks[%d] encrypts the Ceph data disk %s, which must stay raw for Rook", i, *l.Device))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

var resourceType = reflect.TypeOf(types.Resource{})

// walkResources calls fn for every types.Resource in v, with its JSON-ish path.
func walkResources(v reflect.Value, at string, fn func(string, types.Resource)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkResources(v.Elem(), at, fn)
		}
	case reflect.Struct:
		if v.Type() == resourceType {
			fn(at, v.Interface().(types.Resource))
			return
		}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			sub := at
			if !f.Anonymous && name != "" {
				if sub != "" {
					sub += "."
				}
				sub += name
			}
			walkResources(v.Field(i), sub, fn)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			walkResources(v.Index(i), fmt.Sprintf("%s[%d]", at, i), fn)
		}
	}
}
