package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/sink"
	"golang.org/x/crypto/ssh"
)

// metric reads one unlabelled sample from a worker's /metrics (-1 if absent or unreachable).
func metric(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// pullAll logs in to addr as user and downloads every file not in got (name -> content); it
// reports the files it downloaded now.
func pullAll(ctx context.Context, addr, user, pw string, got map[string]string) (int, error) {
	cfg := sink.PullerConfig(user, ssh.Password(pw))
	conn, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	cl, err := sftp.NewClient(conn)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	infos, err := cl.ReadDir("/")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, fi := range infos {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if _, seen := got[fi.Name()]; seen {
			continue
		}
		f, err := cl.Open("/" + fi.Name())
		if err != nil {
			return n, err
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return n, err
		}
		got[fi.Name()] = string(b)
		n++
	}
	return n, nil
}

// TestSFTPSpoolSurvivesSIGKILL runs the broker and two workers of one sftp type as processes on
// one spool directory. Both publish files; one is killed with SIGKILL before the SUT pulled
// anything. The SUT then logs in to the surviving worker only, as every source: right after the
// kill it gets every file published so far, the killed worker's sources' included (before any
// rebalance gave the survivor those sources), and once the run is done every record's file with
// the record's content. Every file's pull is counted once: the delivery aggregate's acked per
// source equals the files pulled, although each file was read twice.
func TestSFTPSpoolSurvivesSIGKILL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const pw = "s3cret"
	t.Setenv(dataset.SFTPPasswordEnv, pw) // the workers inherit it
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer, o.Span, o.Protocol = 1, 6, 60, 6*time.Second, dataset.ProtoSFTP
	brokerAddr, dir, d, env := brokerEnv(t, ctx, o)
	if _, err := env.Controller.Load(ctx, dir, controller.LoadRequest{}); err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	health := []string{freeAddr(t), freeAddr(t)}
	sftpAddr := []string{freeAddr(t), freeAddr(t)}
	var workers []*exec.Cmd
	for i := range 2 {
		workers = append(workers, spawn(t, fmt.Sprintf("worker%d", i), []string{
			"SIMULATOR_KAFKA_BROKERS=" + brokerAddr, "SIMULATOR_TYPE=type1", "SIMULATOR_CONTROLLER_URL=" + env.URL,
			"SIMULATOR_LISTEN=" + health[i], "SIMULATOR_SFTP_LISTEN=" + sftpAddr[i], "SIMULATOR_SFTP_SPOOL=" + spool,
			"SIMULATOR_LOG_FORMAT=text", "SIMULATOR_LOG_LEVEL=debug",
		}, "worker", "--commit-interval", "200ms"))
	}
	for _, h := range health {
		waitHTTP(t, ctx, "http://"+h+"/readyz")
	}
	st, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.WaitGroupMembers(ctx, "type1", 2); err != nil {
		t.Fatal(err)
	}
	// Both workers published files (each owns some of the sources), the SUT pulled none yet.
	for metric(health[0], "simulator_worker_records_sent_total") < 5 || metric(health[1], "simulator_worker_records_sent_total") < 5 {
		select {
		case <-ctx.Done():
			t.Fatalf("the workers did not both publish: sent %v and %v", metric(health[0], "simulator_worker_records_sent_total"),
				metric(health[1], "simulator_worker_records_sent_total"))
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := workers[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	workers[0].Wait()
	// What is on the spool now: the files published before the kill.
	onSpool := map[string][]string{}
	for _, s := range d.Sources {
		ents, _ := os.ReadDir(filepath.Join(spool, "type1", st.RunID, s.Instance))
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				onSpool[s.Instance] = append(onSpool[s.Instance], e.Name())
			}
		}
	}

	got := map[string]map[string]string{}
	survivor := sftpAddr[1]
	for _, s := range d.Sources {
		got[s.Instance] = map[string]string{}
		if _, err := pullAll(ctx, survivor, s.Config.SFTP.User, pw, got[s.Instance]); err != nil {
			t.Fatalf("%s right after the kill, at the surviving worker: %v", s.ID(), err)
		}
		for _, name := range onSpool[s.Instance] {
			if _, ok := got[s.Instance][name]; !ok {
				t.Errorf("%s: %s, published before the kill, not served by the surviving worker", s.ID(), name)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The survivor takes the killed worker's sources over and publishes the rest.
	if err := env.WaitCommitted(ctx, map[string]int64{"type1": int64(d.RecordCount())}); err != nil {
		t.Fatal(err)
	}
	pulled := map[string]int{}
	for _, s := range d.Sources {
		if _, err := pullAll(ctx, survivor, s.Config.SFTP.User, pw, got[s.Instance]); err != nil {
			t.Fatalf("%s after the run, at the surviving worker: %v", s.ID(), err)
		}
		for i, r := range s.Records {
			name := fmt.Sprintf("%d.rec", i)
			if c, ok := got[s.Instance][name]; !ok {
				t.Errorf("%s: %s (record %d) was never served", s.ID(), name, i)
			} else if c != string(r.Payload) {
				t.Errorf("%s: %s holds %q, want record %d's %q", s.ID(), name, c, i, r.Payload)
			}
		}
		pulled[s.Instance] = len(got[s.Instance])
		// Read everything again: not a new pull.
		if _, err := pullAll(ctx, survivor, s.Config.SFTP.User, pw, map[string]string{}); err != nil {
			t.Fatal(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The survivor's final summary (the run stops) carries its per-source counts.
	if _, err := env.Controller.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		v := env.Controller.Delivery(st.RunID, true)
		left := false
		if v != nil {
			for _, w := range v.Workers {
				left = left || w.Left
			}
		}
		if left {
			tv := v.Types["type1"]
			for _, s := range d.Sources {
				var acked int64
				if sv := tv.Sources[s.Instance]; sv != nil {
					acked = sv.Acked
				}
				if acked != int64(pulled[s.Instance]) {
					t.Errorf("%s: acked %d, want the %d files pulled, each counted once", s.ID(), acked, pulled[s.Instance])
				}
			}
			t.Logf("pulled %d files at the surviving worker, %d of them published before the kill; delivery totals sent %d acked %d",
				d.RecordCount(), countAll(onSpool), tv.Sent, tv.Acked)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the surviving worker's final delivery summary never arrived")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func countAll(m map[string][]string) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}
