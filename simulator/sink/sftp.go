package sink

import (
	"context"
	"io"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// PullerConfig is the SSH client config the sink pulls a source with: it
// logs in as user and, being a stand-in for the SUT, does not pin the
// worker's host key (workers generate one per start unless given one).
func PullerConfig(user string, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	return &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
}

// PullSFTP polls one source's SFTP root every interval, downloads each new file once and records it
// as received (at download time: lateness includes the polling interval). It runs until ctx ends,
// reconnecting after errors.
func (s *Sink) PullSFTP(ctx context.Context, addr string, cfg *ssh.ClientConfig, interval time.Duration) {
	seen := map[string]bool{}
	for ctx.Err() == nil {
		s.pullSession(ctx, addr, cfg, interval, seen)
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

func (s *Sink) pullSession(ctx context.Context, addr string, cfg *ssh.ClientConfig, interval time.Duration, seen map[string]bool) {
	conn, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	cl, err := sftp.NewClient(conn)
	if err != nil {
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		infos, err := cl.ReadDir("/")
		if err != nil {
			return
		}
		for _, fi := range infos {
			if seen[fi.Name()] {
				continue
			}
			f, err := cl.Open("/" + fi.Name())
			if err != nil {
				return
			}
			data, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return
			}
			seen[fi.Name()] = true
			s.record(data, time.Now().UnixNano(), "sftp "+cfg.User+"@"+addr)
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

func (s *Sink) record(data []byte, at int64, conn string) {
	s.total.Add(1)
	it := s.classify(data, at, conn)
	it.conn = conn
	s.add([]item{it})
}
