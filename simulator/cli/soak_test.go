package cli

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/sink"
)

// faultProxy stands between the workers and the sink as the system under test's faults: it
// forwards every byte it reads to the sink, and on demand stops reading (a SUT that stalls: its
// receive buffers fill, the workers' writes back up), drops every connection with a reset (what
// it had not read is gone, as with a SUT that crashes), or restarts (refuses connections for a
// while, then listens again on the same address). What it read it wrote to the sink, so the
// sink sees exactly what a SUT that read it would have.
type faultProxy struct {
	target string
	addr   string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*net.TCPConn]struct{}
	resume  chan struct{} // closed: reading; open: stalled
	wg      sync.WaitGroup
	dropped int
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	p := &faultProxy{target: target, conns: map[*net.TCPConn]struct{}{}, resume: make(chan struct{})}
	close(p.resume)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wc := c.(*net.TCPConn)
			sc, err := net.Dial("tcp", p.target)
			if err != nil {
				wc.Close()
				continue
			}
			p.mu.Lock()
			p.conns[wc] = struct{}{}
			p.mu.Unlock()
			p.wg.Add(1)
			go p.pipe(wc, sc)
		}
	}()
}

// pipe copies one worker connection to the sink, waiting while stalled.
func (p *faultProxy) pipe(wc *net.TCPConn, sc net.Conn) {
	defer p.wg.Done()
	defer func() {
		sc.Close() // after the last write: the sink reads all of it, then EOF
		p.mu.Lock()
		delete(p.conns, wc)
		p.mu.Unlock()
	}()
	go io.Copy(io.Discard, sc) // the sink writes nothing; notice it closing
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		resume := p.resume
		p.mu.Unlock()
		<-resume
		n, err := wc.Read(buf)
		if n > 0 {
			if _, werr := sc.Write(buf[:n]); werr != nil {
				wc.Close()
				return
			}
		}
		if err != nil {
			wc.Close()
			return
		}
	}
}

// stall stops reading from every connection, new ones included.
func (p *faultProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resume:
		p.resume = make(chan struct{})
	default:
	}
}

// dropAll resets every connection (SO_LINGER 0: an RST, unread bytes discarded) and reads again.
func (p *faultProxy) dropAll() {
	p.mu.Lock()
	for c := range p.conns {
		c.SetLinger(0)
		c.Close()
		p.dropped++
	}
	resume := p.resume
	p.mu.Unlock()
	select {
	case <-resume:
	default:
		close(resume)
	}
}

// down closes the listener and resets every connection; up listens again on the same address.
func (p *faultProxy) down() {
	p.mu.Lock()
	p.ln.Close()
	p.mu.Unlock()
	p.dropAll()
}

func (p *faultProxy) up() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.serve(ln)
	return nil
}

func (p *faultProxy) close() {
	p.down()
	p.wg.Wait()
}

// soakDuration is how long the soak's run lasts: 60 s in `make test`, SIMULATOR_SOAK (e.g. 10m)
// in `make soak`.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("SIMULATOR_SOAK")
	if v == "" {
		return 60 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 20*time.Second {
		t.Fatalf("SIMULATOR_SOAK=%q: want a duration of at least 20s", v)
	}
	return d
}

// TestSoakWorkerKillsSUTStallsAndScaling runs one type's workers as processes (the broker too)
// through a run of soakDuration while a random schedule of faults plays: a worker killed with
// SIGKILL or stopped with SIGTERM (each replaced, as its Deployment would), the SUT stalling
// for 1-3 s and then dropping every connection, the SUT down for a while and back, and scaling
// 1 -> 3 -> 1 workers. Per source it asserts every record arrived (received ⊇ expected) and
// none before its due time; per type, that the duplicates are at most the resends the workers
// reported plus what the SIGKILLed workers may have written since their last commit (the sink's
// receipts in the second before each kill, as in TestSIGKILLWorkerProcess). The seed is logged;
// SIMULATOR_SOAK_SEED replays a schedule.
func TestSoakWorkerKillsSUTStallsAndScaling(t *testing.T) {
	dur := soakDuration(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SIMULATOR_SOAK_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SIMULATOR_SOAK_SEED=%q: %v", v, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 17))
	t.Logf("soak: %s, seed %d (SIMULATOR_SOAK_SEED=%d replays the schedule)", dur, seed, seed)

	ctx, cancel := context.WithTimeout(context.Background(), dur+3*time.Minute)
	defer cancel()
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.Span = 1, 12, dur
	o.RecordsPer = int(dur/time.Second) * 20 // 240 records/s in all
	o.Seed = seed
	brokerAddr, dir, d, env := brokerEnv(t, ctx, o)
	proxy := newFaultProxy(t, env.Sink.Addr())
	if _, err := env.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: proxy.addr}); err != nil {
		t.Fatal(err)
	}

	// The workers, as a Deployment keeps them: a killed one is replaced by a new process.
	type worker struct {
		cmd    *exec.Cmd
		health string
	}
	var live []*worker
	gen := 0
	start := func() {
		t.Helper()
		gen++
		w := &worker{health: freeAddr(t)}
		w.cmd = spawn(t, fmt.Sprintf("worker%d", gen), []string{
			"SIMULATOR_KAFKA_BROKERS=" + brokerAddr, "SIMULATOR_TYPE=type1", "SIMULATOR_CONTROLLER_URL=" + env.URL,
			"SIMULATOR_LISTEN=" + w.health, "SIMULATOR_LOG_FORMAT=text",
		}, "worker", "--commit-interval", "200ms", "--session-timeout", "3s")
		waitHTTP(t, ctx, "http://"+w.health+"/readyz")
		live = append(live, w)
	}
	stop := func(sig syscall.Signal) {
		t.Helper()
		i := rng.IntN(len(live))
		w := live[i]
		live = append(live[:i], live[i+1:]...)
		if err := w.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		w.cmd.Wait()
	}
	settle := func() {
		t.Helper()
		if err := env.WaitGroupMembers(ctx, "type1", len(live)); err != nil {
			t.Fatal(err)
		}
	}
	start()
	st, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	settle() // workers join their group once a run starts

	// The schedule: each kind once (scale twice: 1 -> 3 -> 1), in random order, then random
	// ones until 5 s before the run's end. Events are apart by 3-5 s after the group settled,
	// so a kill never falls within a handover's lead (API.md: the one case that loses records).
	kinds := []string{"sigkill", "sigterm", "stall", "restart", "scale", "scale"}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	all := []string{"sigkill", "sigterm", "stall", "restart", "scale"}
	end := st.StartTime.Add(dur - 5*time.Second)
	var kills []time.Time
	done := map[string]int{}
	pause := func(lo, hi time.Duration) {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(lo + time.Duration(rng.Int64N(int64(hi-lo)))):
		}
	}
	pause(2*time.Second, 3*time.Second)
	for i := 0; time.Now().Before(end); i++ {
		kind := all[rng.IntN(len(all))]
		if i < len(kinds) {
			kind = kinds[i]
		}
		switch kind {
		case "sigkill":
			kills = append(kills, time.Now())
			stop(syscall.SIGKILL)
			settle() // the group lets the dead member go (its session times out)
			start()
		case "sigterm":
			stop(syscall.SIGTERM)
			start()
		case "stall":
			proxy.stall()
			pause(time.Second, 3*time.Second)
			proxy.dropAll()
		case "restart":
			proxy.down()
			pause(300*time.Millisecond, time.Second)
			if err := proxy.up(); err != nil {
				t.Fatalf("the SUT could not listen again: %v", err)
			}
		case "scale":
			if len(live) == 1 {
				start()
				start()
			} else {
				for len(live) > 1 {
					stop(syscall.SIGTERM)
				}
			}
		}
		done[kind]++
		settle()
		t.Logf("soak: %6.1f s %-8s -> %d workers", time.Since(st.StartTime).Seconds(), kind, len(live))
		pause(3*time.Second, 5*time.Second)
	}
	for _, k := range all {
		if done[k] == 0 {
			t.Errorf("the schedule never played %s: the run is too short (SIMULATOR_SOAK)", k)
		}
	}

	// Everything due arrives, and is committed.
	total := int64(d.RecordCount())
	if err := env.WaitCommitted(ctx, map[string]int64{"type1": total}); err != nil {
		t.Fatal(err)
	}
	missing := func() (n int, first string) {
		got := env.Sink.Receipts()
		for _, s := range d.Sources {
			seen := make([]bool, len(s.Records))
			for _, r := range got[s.ID()] {
				if int(r.Seq) < len(seen) {
					seen[r.Seq] = true
				}
			}
			for i, ok := range seen {
				if !ok {
					if n == 0 {
						first = fmt.Sprintf("%s record %d (due at +%s)", s.ID(), i, s.Records[i].Offset)
					}
					n++
				}
			}
		}
		return n, first
	}
	for {
		n, first := missing()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d records never arrived, the first %s; %d committed", n, first, total)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The workers' final summaries carry their resends: stop them gracefully.
	for len(live) > 0 {
		stop(syscall.SIGTERM)
	}

	got := env.Sink.Receipts()
	var dups, early int64
	var worst []string
	for _, s := range d.Sources {
		count := make([]int, len(s.Records))
		for _, r := range got[s.ID()] {
			if int(r.Seq) >= len(count) {
				t.Errorf("%s: a record with sequence %d, the source has %d", s.ID(), r.Seq, len(count))
				continue
			}
			count[r.Seq]++
			if due := st.StartTime.Add(s.Records[r.Seq].Offset); r.At < due.UnixNano() {
				early++
				t.Errorf("%s record %d arrived %s before its due time", s.ID(), r.Seq, time.Duration(due.UnixNano()-r.At))
			}
		}
		var srcDups int
		for _, c := range count {
			if c > 1 {
				srcDups += c - 1
			}
		}
		dups += int64(srcDups)
		if srcDups > 0 {
			worst = append(worst, fmt.Sprintf("%s %d", s.Instance, srcDups))
		}
	}
	sort.Strings(worst)
	var killBound int64
	for _, k := range kills {
		killBound += int64(env.Sink.CountBetween(k.Add(-time.Second), k.Add(100*time.Millisecond)))
	}
	var resent int64
	for {
		// Every worker not SIGKILLed published its final summary.
		v := env.Controller.Delivery(st.RunID, false)
		left := 0
		if v != nil {
			for _, w := range v.Workers {
				if w.Left {
					left++
				}
			}
		}
		if left >= gen-len(kills) {
			resent = v.Totals.Resent
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the controller saw the final summaries of %d of the %d workers stopped gracefully", left, gen-len(kills))
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("soak: %d records, %d events %v, %d connections dropped; duplicates %d (resends reported %d + SIGKILL windows %d) [%s]; early %d",
		total, len(kills)+done["sigterm"]+done["stall"]+done["restart"]+done["scale"], done, proxy.dropped, dups, resent, killBound,
		strings.Join(worst, ", "), early)
	if dups > resent+killBound {
		t.Errorf("%d duplicates, more than the %d resends the workers reported plus %d records received in the second before the %d SIGKILLs",
			dups, resent, killBound, len(kills))
	}
	rep := env.Sink.Report(sink.Expectation{Sources: sink.ExpectDataset(d), Start: st.StartTime, Span: d.Span, Loops: 1})
	if rep.Total.Lost != 0 || rep.Total.Early != 0 {
		t.Errorf("the sink's report: lost %d, early %d", rep.Total.Lost, rep.Total.Early)
	}
	t.Logf("soak: late p50 %.1f ms, p99 %.1f ms, max %.1f ms", rep.Total.LateP50ms, rep.Total.LateP99ms, rep.Total.LateMaxms)
}
