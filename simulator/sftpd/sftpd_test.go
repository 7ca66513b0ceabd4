package sftpd

import (
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func listen(t *testing.T) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func login(t *testing.T, addr, user, pw string) *sftp.Client {
	t.Helper()
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("login %s@%s: %v", user, addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	cl, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func readAll(t *testing.T, cl *sftp.Client, name string) string {
	t.Helper()
	f, err := cl.Open("/" + name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

type pulls struct {
	mu  sync.Mutex
	got map[string]int // user/name -> times counted
	pub map[string]time.Time
}

func (p *pulls) on(s *Server) {
	s.OnPull(func(user, name string, published time.Time) {
		p.mu.Lock()
		p.got[user+"/"+name]++
		p.pub[user+"/"+name] = published
		p.mu.Unlock()
	})
}

// TestSpoolServesEveryServersFilesAndCountsEachPullOnce: two servers on one spool directory (two
// workers of a type). A file published through one is listed and read, with its content, through
// the other; read through both, its pull is counted once, by the server that served the first
// read, with the publish time as the file's modification time. A source that no server owns in
// memory still logs in (every worker serves every source of the spool).
func TestSpoolServesEveryServersFilesAndCountsEachPullOnce(t *testing.T) {
	spool := t.TempDir()
	a, b := listen(t), listen(t)
	p := &pulls{got: map[string]int{}, pub: map[string]time.Time{}}
	p.on(a)
	p.on(b)
	dir := filepath.Join(spool, "files", "ne1")
	for _, s := range []*Server{a, b} {
		s.Add(Account{User: "ne1", Password: "pw", Dir: dir})
	}
	before := time.Now()
	if err := a.Put("ne1", "0.rec", []byte("zero\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.Put("ne1", "1.rec", []byte("one\n")); err != nil {
		t.Fatal(err)
	}

	cb := login(t, b.Addr(), "ne1", "pw")
	infos, err := cb.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range infos {
		names = append(names, fi.Name())
		if fi.ModTime().Before(before.Truncate(time.Second)) {
			t.Errorf("%s: mtime %v before the publish at %v", fi.Name(), fi.ModTime(), before)
		}
	}
	if len(names) != 2 || names[0] != "0.rec" || names[1] != "1.rec" {
		t.Fatalf("listed through the other server: %v, want [0.rec 1.rec] (no temporary files, no markers)", names)
	}
	if got := readAll(t, cb, "0.rec"); got != "zero\n" {
		t.Fatalf("0.rec through the other server: %q", got)
	}
	ca := login(t, a.Addr(), "ne1", "pw")
	if got := readAll(t, ca, "0.rec"); got != "zero\n" {
		t.Fatalf("0.rec through the publisher: %q", got)
	}
	readAll(t, cb, "0.rec")
	if got := readAll(t, ca, "1.rec"); got != "one\n" {
		t.Fatalf("1.rec: %q", got)
	}
	readAll(t, cb, "1.rec")
	p.mu.Lock()
	if p.got["ne1/0.rec"] != 1 || p.got["ne1/1.rec"] != 1 || len(p.got) != 2 {
		t.Errorf("pulls counted %v, want each file once across both servers", p.got)
	}
	if pub := p.pub["ne1/0.rec"]; pub.Before(before.Truncate(time.Second)) || pub.After(time.Now()) {
		t.Errorf("publish time %v of 0.rec, want the publish (after %v)", pub, before)
	}
	p.mu.Unlock()

	// Published again (a new owner resuming before the old one's commit): replaced in place, one
	// file, its pull not counted again.
	if err := b.Put("ne1", "0.rec", []byte("zero\n")); err != nil {
		t.Fatal(err)
	}
	if infos, _ := ca.ReadDir("/"); len(infos) != 2 {
		t.Errorf("after publishing 0.rec again: %d files, want 2", len(infos))
	}
	readAll(t, ca, "0.rec")
	p.mu.Lock()
	if p.got["ne1/0.rec"] != 1 {
		t.Errorf("0.rec counted %d times after being published again, want 1", p.got["ne1/0.rec"])
	}
	p.mu.Unlock()

	// Nothing left half-written, and the wrong password is refused.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "0.rec" && e.Name() != "1.rec" && e.Name() != pulledDir {
			t.Errorf("spool holds %s", e.Name())
		}
	}
	if _, err := ssh.Dial("tcp", b.Addr(), &ssh.ClientConfig{User: "ne1", Auth: []ssh.AuthMethod{ssh.Password("bad")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}); err == nil {
		t.Error("a wrong password logged in")
	}
}

// TestSpoolKeepsMaxFilesAcrossOwners: a new owner (a server that did not publish the files there)
// reads the directory on its first publish and removes the oldest files beyond MaxFiles, with
// their pull markers.
func TestSpoolKeepsMaxFilesAcrossOwners(t *testing.T) {
	defer func(n int) { maxFiles = n }(maxFiles)
	maxFiles = 50
	dir := filepath.Join(t.TempDir(), "files", "ne1")
	if err := os.MkdirAll(filepath.Join(dir, pulledDir), 0o755); err != nil {
		t.Fatal(err)
	}
	// MaxFiles files left by the previous owner, the first one oldest and pulled.
	old := time.Now().Add(-time.Hour)
	for i := range maxFiles {
		n := filepath.Join(dir, "f"+strconv.Itoa(i))
		if err := os.WriteFile(n, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		at := old.Add(time.Duration(i) * time.Millisecond)
		os.Chtimes(n, at, at)
	}
	os.WriteFile(filepath.Join(dir, pulledDir, "f0"), nil, 0o644)
	s := listen(t)
	s.Add(Account{User: "ne1", Password: "pw", Dir: dir})
	if err := s.Put("ne1", "new", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f0")); !os.IsNotExist(err) {
		t.Errorf("the oldest file is still there (%v) with MaxFiles+1 published", err)
	}
	if _, err := os.Stat(filepath.Join(dir, pulledDir, "f0")); !os.IsNotExist(err) {
		t.Errorf("the oldest file's pull marker is still there (%v)", err)
	}
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Dir(p) == dir {
			n++
		}
		return nil
	})
	if n != maxFiles {
		t.Errorf("%d files, want MaxFiles (here %d)", n, maxFiles)
	}
	if _, err := os.Stat(filepath.Join(dir, "f1")); err != nil {
		t.Errorf("the second oldest file went too: %v", err)
	}
}
