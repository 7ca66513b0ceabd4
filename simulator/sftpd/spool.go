package sftpd

// The spool: a directory shared by every worker of a type (a ReadWriteMany volume in the cluster, a
// temp directory locally), one directory per source (Account.Dir). The worker owning a source's
// partition publishes each due record there as a file; every worker's server lists and reads from
// there, so any worker accepts the source's login and a worker's death loses no published file.
//
// In a source's directory:
//
//	<name>            a published file, its mtime the publish time (set by the publisher, so any
//	                  worker measures the pull delay against the publisher's clock)
//	.<name>.tmp       a file being written; renamed to <name> when complete (readers never see
//	                  half a file); never listed
//	.pulled/<name>    created (O_EXCL) by the server that served the first read of <name>: only
//	                  that server counts the pull, so a pull is counted once across workers
//
// Publishing a name again (a new owner resuming from the committed offset) renames over the old
// file: the same content under the same name, so not a second file; its pull, if counted, stays
// counted.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pkg/sftp"
)

// maxFiles is MaxFiles, lowered by tests.
var maxFiles = MaxFiles

// pulledDir holds a source directory's pull markers.
const pulledDir = ".pulled"

// published is what one server published in one spool directory since it took the source over:
// the names there, oldest first, so it keeps at most MaxFiles (read from the directory on the
// first Put, as another worker may have published before).
type published struct {
	names []string
	head  int
	have  map[string]bool
}

// publish writes one file into the root's spool directory (r.mu held).
func (r *root) publish(name string, data []byte, now time.Time) error {
	dir := r.acct.Dir
	if err := validName(name); err != nil {
		return err
	}
	if r.pub == nil {
		p, err := loadPublished(dir)
		if err != nil {
			return err
		}
		r.pub = p
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("sftp spool: %w", err)
	}
	if err := os.Chtimes(tmp, now, now); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("sftp spool: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("sftp spool: %w", err)
	}
	p := r.pub
	if p.have[name] {
		return nil
	}
	p.have[name] = true
	p.names = append(p.names, name)
	for len(p.names)-p.head > maxFiles {
		old := p.names[p.head]
		p.names[p.head] = ""
		p.head++
		delete(p.have, old)
		os.Remove(filepath.Join(dir, old))
		os.Remove(filepath.Join(dir, pulledDir, old))
	}
	if p.head >= 1024 && p.head*2 >= len(p.names) {
		n := copy(p.names, p.names[p.head:])
		p.names, p.head = p.names[:n], 0
	}
	return nil
}

// loadPublished creates a spool directory if needed and reads the files already there, oldest
// first.
func loadPublished(dir string) (*published, error) {
	if err := os.MkdirAll(filepath.Join(dir, pulledDir), 0o755); err != nil {
		return nil, fmt.Errorf("sftp spool: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sftp spool: %w", err)
	}
	type nf struct {
		name string
		mod  time.Time
	}
	var files []nf
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		files = append(files, nf{e.Name(), fi.ModTime()})
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	p := &published{have: make(map[string]bool, len(files))}
	for _, f := range files {
		p.names = append(p.names, f.name)
		p.have[f.name] = true
	}
	return p, nil
}

// validName refuses names that are not one plain, visible file of the directory.
func validName(name string) error {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsRune(name, '/') {
		return fmt.Errorf("sftp spool: file name %q: want a plain name not starting with a dot", name)
	}
	return nil
}

// spoolStat looks one published file up (nil, ErrSSHFxNoSuchFile if it is not there).
func spoolStat(dir, name string) (*file, error) {
	if validName(name) != nil {
		return nil, sftp.ErrSSHFxNoSuchFile
	}
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil || !fi.Mode().IsRegular() {
		return nil, sftp.ErrSSHFxNoSuchFile
	}
	return &file{name: name, mod: fi.ModTime(), spool: fi.Size()}, nil
}

// spoolRead reads one published file; first reports that this read created its pull marker (the
// first read of it on any server of the spool).
func spoolRead(dir, name string) (data []byte, first bool, err error) {
	data, err = os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, false, sftp.ErrSSHFxNoSuchFile
	}
	marker := filepath.Join(dir, pulledDir, name)
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		// No publisher created the directory yet on this volume (it was cleaned): make it.
		if os.MkdirAll(filepath.Join(dir, pulledDir), 0o755) == nil {
			f, err = os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		}
	}
	if err != nil {
		return data, false, nil // already pulled (or the marker cannot be written: not counted twice)
	}
	f.Close()
	return data, true, nil
}

// spoolList lists the published files of a directory by name (none when nothing was published).
func spoolList(dir string) (lister, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, sftp.ErrSSHFxFailure
	}
	out := make(lister, 0, len(ents))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile (the publisher keeps at most MaxFiles)
		}
		out = append(out, fileInfo{name: fi.Name(), size: fi.Size(), mod: fi.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}
