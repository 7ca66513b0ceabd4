// Package sftpd owns the worker's SFTP mode: one SSH server per worker where each SFTP-protocol
// source is a login (password or public key) whose read-only root holds that source's due records as
// files. A root is either in memory (a source can log in only while its partition is assigned to
// this worker) or a directory on a spool shared by every worker of the type (Account.Dir): then
// every server on the spool serves the source, whichever worker published its files (spool.go).
package sftpd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// MaxFiles bounds the files kept per source; the oldest go first.
const MaxFiles = 100000

// Account is one source's login.
type Account struct {
	User           string
	Password       string // empty: no password login
	AuthorizedKeys []ssh.PublicKey
	// Dir, if set, is the source's directory on the spool: Put publishes files there and the
	// server serves them from there (with the files any other server on the spool published).
	// Empty: the files are in this server's memory.
	Dir string
}

// ParseAuthorizedKeys parses OpenSSH authorized_keys lines.
func ParseAuthorizedKeys(lines []string) ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	for i, l := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, fmt.Errorf("authorized_keys[%d]: %w", i, err)
		}
		out = append(out, k)
	}
	return out, nil
}

type file struct {
	name   string
	data   []byte
	mod    time.Time // when it was published
	pulled bool      // read at least once since it was published
	// spool is the size of a file on the spool (data is nil there), -1 in memory.
	spool int64
}

func (f *file) size() int64 {
	if f.data == nil && f.spool >= 0 {
		return f.spool
	}
	return int64(len(f.data))
}

type root struct {
	acct  Account
	mu    sync.Mutex
	files []*file // in arrival order
	index map[string]*file
	// pub is what this server published in acct.Dir (spool roots only; nil until the first Put).
	pub *published
}

// Server is an SSH/SFTP server on one address.
type Server struct {
	ln    net.Listener
	cfg   *ssh.ServerConfig
	log   *slog.Logger
	mu    sync.Mutex
	roots map[string]*root
	wg    sync.WaitGroup
	conns map[net.Conn]struct{}
	// onPull, if set, is told once per published file when a client first reads it.
	onPull atomic.Pointer[func(user, name string, published time.Time)]
}

// OnPull sets a function told once per published file (per Put) when a client first opens it
// for reading: user, file name, and when it was published.
func (s *Server) OnPull(f func(user, name string, published time.Time)) { s.onPull.Store(&f) }

// Listen starts a server on addr with a fresh ed25519 host key (or hostKey if given, PEM).
func Listen(addr string, hostKey []byte, log *slog.Logger) (*Server, error) {
	var signer ssh.Signer
	var err error
	if len(hostKey) > 0 {
		signer, err = ssh.ParsePrivateKey(hostKey)
	} else {
		var pk ed25519.PrivateKey
		_, pk, err = ed25519.GenerateKey(rand.Reader)
		if err == nil {
			signer, err = ssh.NewSignerFromKey(pk)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sftp host key: %w", err)
	}
	s := &Server{log: log, roots: map[string]*root{}, conns: map[net.Conn]struct{}{}}
	s.cfg = &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			r := s.root(c.User())
			if r == nil || r.acct.Password == "" || subtle.ConstantTimeCompare([]byte(r.acct.Password), pw) != 1 {
				return nil, errors.New("denied")
			}
			return nil, nil
		},
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			r := s.root(c.User())
			if r != nil {
				for _, k := range r.acct.AuthorizedKeys {
					if bytes.Equal(k.Marshal(), key.Marshal()) {
						return nil, nil
					}
				}
			}
			return nil, errors.New("denied")
		},
	}
	s.cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sftp listen %s: %w", addr, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the listen address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and drops every session.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Add opens a source's root (on assignment, or for every source of the type with a spool). Files
// already there are kept.
func (s *Server) Add(a Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.roots[a.User]; r != nil {
		r.mu.Lock()
		if r.acct.Dir != a.Dir {
			r.pub = nil
		}
		r.acct = a
		r.mu.Unlock()
		return
	}
	s.roots[a.User] = &root{acct: a, index: map[string]*file{}}
}

// Remove closes a source's root (on revoke): it can no longer log in here.
func (s *Server) Remove(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.roots, user)
}

// Release forgets what this server published in a spool root (on revoke: another worker publishes
// there now); the root stays served. The next Put reads the directory again.
func (s *Server) Release(user string) {
	if r := s.root(user); r != nil {
		r.mu.Lock()
		r.pub = nil
		r.mu.Unlock()
	}
}

// Put publishes one due record as a file in a source's root.
func (s *Server) Put(user, name string, data []byte) error {
	r := s.root(user)
	if r == nil {
		return fmt.Errorf("sftp: no root for %s", user)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.acct.Dir != "" {
		return r.publish(name, data, time.Now())
	}
	if old := r.index[name]; old != nil {
		old.data, old.mod, old.pulled = data, time.Now(), false
		return nil
	}
	f := &file{name: name, data: data, mod: time.Now(), spool: -1}
	r.files = append(r.files, f)
	r.index[name] = f
	if len(r.files) > MaxFiles {
		delete(r.index, r.files[0].name)
		r.files = r.files[1:]
	}
	return nil
}

// dir is the root's spool directory ("" in memory).
func (r *root) dir() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acct.Dir
}

func (s *Server) root(user string) *root {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roots[user]
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { c.Close(); s.mu.Lock(); delete(s.conns, c); s.mu.Unlock() }()
			s.serve(c)
		}()
	}
}

func (s *Server) serve(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		s.log.Debug("sftp handshake", "remote", c.RemoteAddr(), "err", err)
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			for req := range creqs {
				ok := req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == "sftp"
				req.Reply(ok, nil)
				if ok {
					h := &handlers{s: s, user: sc.User()}
					srv := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
					srv.Serve()
					srv.Close()
					ch.Close()
					return
				}
			}
		}()
	}
}

// handlers serve one session's root, read-only.
type handlers struct {
	s    *Server
	user string
}

func (h *handlers) lookup(p string) (*root, *file, error) {
	r := h.s.root(h.user)
	if r == nil {
		return nil, nil, sftp.ErrSSHFxPermissionDenied // revoked while connected
	}
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" {
		return r, nil, nil
	}
	if dir := r.dir(); dir != "" {
		f, err := spoolStat(dir, name)
		return r, f, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.index[name]
	if f == nil {
		return r, nil, sftp.ErrSSHFxNoSuchFile
	}
	return r, f, nil
}

func (h *handlers) Fileread(req *sftp.Request) (io.ReaderAt, error) {
	r, f, err := h.lookup(req.Filepath)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, sftp.ErrSSHFxFailure
	}
	if dir := r.dir(); dir != "" {
		data, first, err := spoolRead(dir, f.name)
		if err != nil {
			return nil, err
		}
		if fn := h.s.onPull.Load(); first && fn != nil {
			(*fn)(h.user, f.name, f.mod)
		}
		return bytes.NewReader(data), nil
	}
	r.mu.Lock()
	first, published, data := !f.pulled, f.mod, f.data
	f.pulled = true
	r.mu.Unlock()
	if fn := h.s.onPull.Load(); first && fn != nil {
		(*fn)(h.user, f.name, published)
	}
	return bytes.NewReader(data), nil
}

func (h *handlers) Filewrite(*sftp.Request) (io.WriterAt, error) {
	return nil, sftp.ErrSSHFxPermissionDenied
}

func (h *handlers) Filecmd(*sftp.Request) error { return sftp.ErrSSHFxPermissionDenied }

type fileInfo struct {
	name string
	size int64
	mod  time.Time
	dir  bool
}

func (fi fileInfo) Name() string { return fi.name }
func (fi fileInfo) Size() int64  { return fi.size }
func (fi fileInfo) Mode() os.FileMode {
	if fi.dir {
		return os.ModeDir | 0o555
	}
	return 0o444
}
func (fi fileInfo) ModTime() time.Time { return fi.mod }
func (fi fileInfo) IsDir() bool        { return fi.dir }
func (fi fileInfo) Sys() any           { return nil }

type lister []os.FileInfo

func (l lister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if off+int64(n) >= int64(len(l)) {
		return n, io.EOF
	}
	return n, nil
}

func (h *handlers) Filelist(req *sftp.Request) (sftp.ListerAt, error) {
	r, f, err := h.lookup(req.Filepath)
	if err != nil {
		return nil, err
	}
	switch req.Method {
	case "List":
		if f != nil {
			return nil, sftp.ErrSSHFxFailure
		}
		if dir := r.dir(); dir != "" {
			return spoolList(dir)
		}
		r.mu.Lock()
		out := make(lister, 0, len(r.files))
		for _, f := range r.files {
			out = append(out, fileInfo{name: f.name, size: int64(len(f.data)), mod: f.mod})
		}
		r.mu.Unlock()
		sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
		return out, nil
	case "Stat", "Lstat":
		if f == nil {
			return lister{fileInfo{name: "/", dir: true, mod: time.Now()}}, nil
		}
		return lister{fileInfo{name: f.name, size: f.size(), mod: f.mod}}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}
