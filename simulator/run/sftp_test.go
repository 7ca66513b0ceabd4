package run

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/delivery"
	"github.com/simlab/simlab/simulator/worker"
	"golang.org/x/crypto/ssh"
)

func TestSFTPPullPasswordAndKey(t *testing.T) {
	dir, d := gen(t, small(1, 2, 30, 1500*time.Millisecond))
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SIMTEST_SFTP_PW", "s3cret")
	cfgs := map[string]dataset.SourceConfig{
		"ne00001": {Protocol: "sftp", SFTP: &dataset.SFTPConfig{User: "ne1", PasswordEnv: "SIMTEST_SFTP_PW"}},
		"ne00002": {Protocol: "sftp", SFTP: &dataset.SFTPConfig{User: "ne2", FilePattern: "rec-{seq}.txt",
			AuthorizedKeys: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))}}},
	}
	for inst, c := range cfgs {
		b, _ := json.Marshal(c)
		if err := os.WriteFile(filepath.Join(dir, "type1", inst, dataset.ConfigFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 60*time.Second)
	if _, err := e.Controller.Load(ctx, dir, controller.LoadRequest{}); err != nil {
		t.Fatal(err)
	}
	i := e.AddWorker("type1", func(c *worker.Config) { c.SFTPListen = "127.0.0.1:0" })
	srv, err := e.Worker(i).SFTP()
	if err != nil {
		t.Fatal(err)
	}
	pw := &ssh.ClientConfig{User: "ne1", Auth: []ssh.AuthMethod{ssh.Password("s3cret")}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	key := &ssh.ClientConfig{User: "ne2", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.Sink.PullSFTP(pctx, srv.Addr(), pw, 20*time.Millisecond)
	go e.Sink.PullSFTP(pctx, srv.Addr(), key, 20*time.Millisecond)
	st, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, finish(t, ctx, e, d, st), int64(d.RecordCount()), 0)
	// The worker counted every file as published and, once the sink read it, as pulled.
	n := int64(d.RecordCount())
	v := waitDelivery(t, ctx, e, st.RunID, "every file counted as pulled", func(v *delivery.View) bool { return v.Totals.Acked == n })
	if v.Totals.Sent != n || v.Totals.PullDelay == nil || v.Totals.PullDelay.Count != n {
		t.Errorf("workers: sent %d acked %d pull delay %+v; want %d each", v.Totals.Sent, v.Totals.Acked, v.Totals.PullDelay, n)
	}

	// Read-only, and only with the right secret.
	conn, err := ssh.Dial("tcp", srv.Addr(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	infos, err := cl.ReadDir("/")
	if err != nil || len(infos) != 30 || !strings.HasPrefix(infos[0].Name(), "rec-") {
		t.Fatalf("listing: %d files, %v", len(infos), err)
	}
	if f, err := cl.Create("/evil"); err == nil {
		f.Close()
		t.Error("creating a file succeeded on a read-only root")
	}
	if err := cl.Remove("/" + infos[0].Name()); err == nil {
		t.Error("removing a file succeeded on a read-only root")
	}
	bad := *pw
	bad.Auth = []ssh.AuthMethod{ssh.Password("wrong")}
	if c, err := ssh.Dial("tcp", srv.Addr(), &bad); err == nil {
		c.Close()
		t.Error("wrong password accepted")
	}
	other := *key
	other.User = "ne1"
	if c, err := ssh.Dial("tcp", srv.Addr(), &other); err == nil {
		c.Close()
		t.Error("ne2's key accepted for ne1")
	}
}

// TestRunReplaysAnSFTPDataset: `simulator run` on a generated sftp dataset
// with two workers per type; the built-in sink pulls every source from every
// worker and receives every record once, none early.
func TestRunReplaysAnSFTPDataset(t *testing.T) {
	o := small(2, 4, 25, 1500*time.Millisecond)
	o.Protocol = dataset.ProtoSFTP
	dir, d := gen(t, o)
	t.Setenv(dataset.SFTPPasswordEnv, "s3cret")
	res, err := Run(ctxFor(t, 60*time.Second), Options{Dataset: dir, Workers: 2, Delay: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report.Total
	if r.Expected != int64(d.RecordCount()) || r.Received != r.Expected || r.Lost != 0 || r.Early != 0 || r.Duplicated != 0 {
		t.Fatalf("want all %d records once and none early, got %+v", d.RecordCount(), r)
	}
}

// TestRunRefusesSFTPWithoutPassword: the built-in sink cannot log in without
// the password, so run says which source and which variable before loading.
func TestRunRefusesSFTPWithoutPassword(t *testing.T) {
	o := small(1, 1, 5, time.Second)
	o.Protocol = dataset.ProtoSFTP
	dir, _ := gen(t, o)
	t.Setenv(dataset.SFTPPasswordEnv, "")
	_, err := Run(ctxFor(t, 30*time.Second), Options{Dataset: dir})
	if err == nil || !strings.Contains(err.Error(), "type1/ne00001") || !strings.Contains(err.Error(), dataset.SFTPPasswordEnv) {
		t.Fatalf("want the source and the variable named, got %v", err)
	}
}
