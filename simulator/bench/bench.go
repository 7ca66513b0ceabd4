// Package bench owns the simulator's benchmarks: Kafka -> TCP throughput and lateness of one worker
// process at several rates, the unscheduled ceiling, partition handover on scale-out, and many
// sources in one worker, printed as a table. The worker runs as a child process so its CPU time is
// measured alone; the broker runs as another child process (as Kafka runs apart from the system
// under test), and the controller and sink run in the benchmark process.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/simlab/simlab/simulator/broker"
	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/limits"
	"github.com/simlab/simlab/simulator/run"
	"github.com/simlab/simlab/simulator/sink"
)

// Options selects what to run.
type Options struct {
	Exe      string        // the simulator binary (for worker child processes)
	Duration time.Duration // replay length per rate scenario
	Rates    []int         // records/s
	Sources  int           // sources in the rate scenarios
	Many     int           // sources in the many-sources scenario
	Huge     int           // sources in the huge scenario (one worker, keyed partitions)
	Pinned   []int         // records/s of the pinned scenario (worker alone on core 1)
	Out      io.Writer
	Log      *slog.Logger
	Quick    bool // smaller sizes (smoke test)
	// Scenarios to run: floor, rates, paths, naive, ceiling, many, huge, pinned, handover (empty: all).
	Scenarios []string
}

func (o Options) want(s string) bool {
	if len(o.Scenarios) == 0 {
		return true
	}
	for _, x := range o.Scenarios {
		if x == s {
			return true
		}
	}
	return false
}

// Row is one measured scenario.
type Row struct {
	Name       string
	Records    int64
	Rate       float64 // achieved records/s (wall)
	CPU        float64 // worker CPU seconds
	PerCore    float64 // records per worker CPU second
	P50, P99   float64 // ms
	P999, Max  float64
	Lost       int64
	Early      int64
	Dup        int64
	Extra      string
	RSS        float64 // worker peak RSS, MiB
	Load       time.Duration
	sinkReport *sink.Report
}

// Run runs every scenario and prints the table.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tmp, err := os.MkdirTemp("", "simbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var rows []Row
	add := func(r Row, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", r.Name, err)
		}
		rows = append(rows, r)
		fmt.Fprintf(o.Out, "  done: %s\n", r.Name)
		return nil
	}
	top := o.Rates[len(o.Rates)-1] * int(o.Duration/time.Second)
	if o.want("floor") {
		rate := o.Rates[len(o.Rates)-1]
		for _, f := range []struct {
			per   int
			uring bool
		}{{1, false}, {8, false}, {1, true}} {
			name := fmt.Sprintf("floor: %d-byte record, 1 per write(2), %d conns, %dk/s", 100, o.Sources, rate/1000)
			if f.per > 1 {
				name = fmt.Sprintf("floor: %d records per write(2), %d conns, %dk/s", f.per, o.Sources, rate/1000)
			}
			if f.uring {
				name = fmt.Sprintf("floor: 1 record per send, each ms's sends in one io_uring_enter, %d conns, %dk/s", o.Sources, rate/1000)
			}
			if err := add(floor(ctx, o, name, rate, f.per, f.uring)); err != nil {
				return err
			}
		}
	}
	for _, rate := range o.Rates {
		if !o.want("rates") {
			break
		}
		n := rate * int(o.Duration/time.Second)
		if err := add(replay(ctx, o, tmp, fmt.Sprintf("scheduled %dk/s, %d sources", rate/1000, o.Sources), o.Sources, n/o.Sources, o.Duration, controller.PerSource, false)); err != nil {
			return err
		}
	}
	if o.want("paths") {
		// The top rate again with the older send paths, to show what each change bought.
		rate := o.Rates[len(o.Rates)-1]
		n := rate * int(o.Duration/time.Second)
		for _, v := range []struct {
			what string
			args []string
		}{
			{"write(2) per connection, no quantum", []string{"--io-uring=false", "--dispatch-quantum=0"}},
			{"io_uring, no quantum", []string{"--io-uring=true", "--dispatch-quantum=0"}},
			{"write(2) per connection, default quantum", []string{"--io-uring=false"}},
		} {
			if err := add(replaySpec(ctx, o, tmp, spec{name: fmt.Sprintf("scheduled %dk/s, %d sources, %s", rate/1000, o.Sources, v.what),
				sources: o.Sources, perSource: n / o.Sources, span: o.Duration, part: controller.PerSource, args: v.args})); err != nil {
				return err
			}
		}
	}
	for _, rate := range o.Rates {
		if !o.want("naive") {
			break
		}
		n := rate * int(o.Duration/time.Second)
		if err := add(naive(ctx, o, tmp, fmt.Sprintf("naive goroutine-per-source, no Kafka, %dk/s", rate/1000), o.Sources, n/o.Sources, o.Duration)); err != nil {
			return err
		}
	}
	if !o.want("ceiling") {
	} else if err := add(replay(ctx, o, tmp, fmt.Sprintf("ceiling (no scheduling), %d sources", o.Sources), o.Sources, top/o.Sources, o.Duration, controller.PerSource, true)); err != nil {
		return err
	}
	many := o.Many
	if !o.want("many") {
	} else if err := add(replay(ctx, o, tmp, fmt.Sprintf("%d sources, per-source partitions", many), many, 10, 10*time.Second, controller.PerSource, false)); err != nil {
		return err
	}
	if !o.want("many") {
	} else if err := add(replaySpec(ctx, o, tmp, spec{name: fmt.Sprintf("%d sources, per-source partitions, write(2) per connection", many),
		sources: many, perSource: 10, span: 10 * time.Second, part: controller.PerSource, args: []string{"--io-uring=false"}})); err != nil {
		return err
	}
	if !o.want("many") {
	} else if err := add(replay(ctx, o, tmp, fmt.Sprintf("%d sources, keyed on 32 partitions", many), many, 10, 10*time.Second, controller.Keyed, false)); err != nil {
		return err
	}
	if o.want("pinned") {
		best := 0
		for _, rate := range o.Pinned {
			n := rate * int(o.Duration/time.Second)
			row, err := replaySpec(ctx, o, tmp, spec{name: fmt.Sprintf("pinned: worker alone on core 1, broker and sink on core 0, %dk/s, %d sources", rate/1000, o.Sources),
				sources: o.Sources, perSource: n / o.Sources, span: o.Duration, part: controller.PerSource, pin: true})
			if err := add(row, err); err != nil {
				return err
			}
			if row.P99 <= 2 && row.Lost == 0 && rate > best {
				best = rate
			}
		}
		fmt.Fprintf(o.Out, "  pinned: highest rate held at p99 <= 2 ms: %d records/s\n", best)
	}
	if o.want("huge") {
		if err := add(huge(ctx, o, tmp)); err != nil {
			return err
		}
	}
	for _, part := range []string{controller.PerSource, controller.Keyed} {
		if !o.want("handover") {
			break
		}
		if err := add(handover(ctx, o, tmp, part)); err != nil {
			return err
		}
	}
	fmt.Fprintln(o.Out)
	// The floor every row is measured against: one write(2) per record, nothing else.
	var floorPerCore float64
	if len(rows) > 0 && strings.HasPrefix(rows[0].Name, "floor: ") {
		floorPerCore = rows[0].PerCore
	}
	fmt.Fprintln(o.Out, "| scenario | records | load | achieved rec/s | worker CPU s | rec/s per worker core | × floor | worker RSS MiB | late p50 ms | p99 ms | p99.9 ms | max ms | lost | early | dup | notes |")
	fmt.Fprintln(o.Out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		vs := "–"
		if floorPerCore > 0 && r.PerCore > 0 {
			vs = fmt.Sprintf("%.2f", r.PerCore/floorPerCore)
		}
		rss := "–"
		if r.RSS > 0 {
			rss = fmt.Sprintf("%.0f", r.RSS)
		}
		fmt.Fprintf(o.Out, "| %s | %d | %s | %.0f | %.2f | %.0f | %s | %s | %.2f | %.2f | %.2f | %.1f | %d | %d | %d | %s |\n",
			r.Name, r.Records, r.Load.Round(time.Millisecond), r.Rate, r.CPU, r.PerCore, vs, rss, r.P50, r.P99, r.P999, r.Max, r.Lost, r.Early, r.Dup, r.Extra)
	}
	var sched, ceil float64
	for _, r := range rows {
		if r.Name == fmt.Sprintf("scheduled %dk/s, %d sources", o.Rates[len(o.Rates)-1]/1000, o.Sources) {
			sched = r.PerCore
		}
		if r.Name == fmt.Sprintf("ceiling (no scheduling), %d sources", o.Sources) {
			ceil = r.PerCore
		}
	}
	if ceil > 0 {
		fmt.Fprintf(o.Out, "\nscheduled / ceiling (records per worker CPU second, highest rate): %.2f\n", sched/ceil)
	}
	return nil
}

func genDS(tmp, name string, sources, records int, span time.Duration) (string, *dataset.Dataset, error) {
	dir := filepath.Join(tmp, name)
	g := dataset.DefaultGenOptions()
	g.Types, g.SourcesPer, g.RecordsPer, g.Span, g.RecordSize = 1, sources, records, span, 100
	if err := dataset.Generate(dir, g); err != nil {
		return "", nil, err
	}
	d, err := dataset.Load(dir)
	return dir, d, err
}

// newEnv starts a broker child process and the controller and sink on it.
// Closing the Env stops the broker too.
func newEnv(o Options) (*run.Env, error) {
	cmd := exec.Command(o.Exe, "broker", "--listen", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the broker: %w", err)
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := broker.ParseAnnounce(line)
	if err != nil || !ok {
		stop()
		return nil, fmt.Errorf("the broker did not say where it listens (got %q): %v", line, err)
	}
	env, err := run.NewEnv(run.EnvOptions{Log: o.Log, Brokers: []string{addr}, OnClose: stop})
	if err != nil {
		stop()
		return nil, err
	}
	return env, nil
}

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	hwm  float64 // peak RSS in MiB, read just before stop
}

// peakRSS is a process's peak resident set (VmHWM) in MiB. Not rusage's maxrss: a child's maxrss
// starts at its parent's RSS when it was forked (Linux keeps the pre-exec high-water mark), and
// this process holds every received record.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// profiles numbers the worker CPU profiles of a run ({n} in SIMULATOR_BENCH_CPU_PROFILE).
var profiles int

func startWorker(o Options, env *run.Env, noWait bool, extra ...string) (*child, error) {
	if noWait {
		extra = append([]string{"--no-wait"}, extra...)
	}
	return startWorkerOn(o, env, "", extra...)
}

// startWorkerOn starts a worker child, under taskset -c cpus when cpus is set.
func startWorkerOn(o Options, env *run.Env, cpus string, extra ...string) (*child, error) {
	args := []string{"worker", "--kafka-brokers", env.Brokers[0], "--type", "type1", "--controller-url", env.URL,
		"--listen", "127.0.0.1:0", "--log-level", "warn", "--log-format", "text"}
	if p := os.Getenv("SIMULATOR_BENCH_CPU_PROFILE"); p != "" {
		profiles++
		args = append(args, "--cpu-profile", strings.ReplaceAll(p, "{n}", strconv.Itoa(profiles)))
	}
	args = append(args, extra...)
	cmd := exec.Command(o.Exe, args...)
	if cpus != "" {
		cmd = exec.Command("taskset", append([]string{"-c", cpus, o.Exe}, args...)...)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) stop() float64 {
	c.hwm = peakRSS(c.cmd.Process.Pid)
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
	if c.cmd.ProcessState == nil {
		return 0
	}
	return (c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()).Seconds()
}

// spec is one replay scenario.
type spec struct {
	name       string
	sources    int
	perSource  int
	span       time.Duration
	part       string
	partitions int // keyed partitions (default 32)
	noWait     bool
	args       []string // extra worker flags
	pin        bool     // worker alone on CPU 1; broker, controller and sink on CPU 0 (taskset)
}

// maxRSS is the child's peak resident set in MiB (read at stop).
func (c *child) maxRSS() float64 { return c.hwm }

func replay(ctx context.Context, o Options, tmp, name string, sources, perSource int, span time.Duration, part string, noWait bool) (Row, error) {
	return replaySpec(ctx, o, tmp, spec{name: name, sources: sources, perSource: perSource, span: span, part: part, noWait: noWait})
}

func replaySpec(ctx context.Context, o Options, tmp string, sp spec) (Row, error) {
	if sp.pin {
		// This process's threads (controller, sink) and, by inheritance, the broker on core 0.
		if err := exec.Command("taskset", "-a", "-p", "-c", "0", strconv.Itoa(os.Getpid())).Run(); err != nil {
			return Row{Name: sp.name}, fmt.Errorf("taskset: %w", err)
		}
		defer exec.Command("taskset", "-a", "-p", "-c", "0-"+strconv.Itoa(runtime.NumCPU()-1), strconv.Itoa(os.Getpid())).Run()
	}
	name, sources, perSource, span, part, noWait := sp.name, sp.sources, sp.perSource, sp.span, sp.part, sp.noWait
	if sp.partitions == 0 {
		sp.partitions = 32
	}
	row := Row{Name: name}
	dir, d, err := genDS(tmp, "ds-"+strconv.Itoa(len(name))+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), sources, perSource, span)
	if err != nil {
		return row, err
	}
	env, err := newEnv(o)
	if err != nil {
		return row, err
	}
	defer env.Close()
	lr, err := env.Controller.Load(ctx, dir, controller.LoadRequest{Partitioning: part, Partitions: sp.partitions, AddressOverride: env.Sink.Addr()})
	if err != nil {
		return row, err
	}
	row.Load, _ = time.ParseDuration(lr.Took)
	var w *child
	if sp.pin {
		w, err = startWorkerOn(o, env, "1", sp.args...)
	} else {
		w, err = startWorker(o, env, noWait, sp.args...)
	}
	if err != nil {
		return row, err
	}
	delay := 3 * time.Second
	if sources > 2000 {
		delay = 8 * time.Second
	}
	st, err := env.Controller.Start(ctx, controller.StartRequest{Delay: delay.String()})
	if err != nil {
		w.stop()
		return row, err
	}
	total := int64(d.RecordCount())
	row.Records = total
	wctx, cancel := context.WithTimeout(ctx, delay+span+60*time.Second)
	defer cancel()
	var first time.Time
	for env.Sink.Total() < total {
		if first.IsZero() && env.Sink.Total() > 0 {
			first = time.Now()
		}
		select {
		case <-wctx.Done():
			w.stop()
			return row, fmt.Errorf("received %d of %d", env.Sink.Total(), total)
		case <-time.After(5 * time.Millisecond):
		}
	}
	end := time.Now()
	row.CPU = w.stop()
	row.RSS = w.maxRSS()
	rep := env.Sink.Report(sink.Expectation{Sources: sink.ExpectDataset(d), Start: st.StartTime, Span: d.Span, Loops: 1})
	t := rep.Total
	row.P50, row.P99, row.P999, row.Max = t.LateP50ms, t.LateP99ms, t.LateP999ms, t.LateMaxms
	row.Lost, row.Early, row.Dup = t.Lost, t.Early, t.Duplicated
	if noWait {
		row.Rate = float64(total) / end.Sub(first).Seconds()
		row.P50, row.P99, row.P999, row.Max = 0, 0, 0, 0
		row.Early = 0
		row.Extra = "all records due at once; lateness not meaningful, early not applicable"
	} else {
		row.Rate = float64(total) / span.Seconds()
	}
	if row.CPU > 0 {
		row.PerCore = float64(total) / row.CPU
	}
	return row, nil
}

// huge runs o.Huge sources in one worker on keyed partitions, one record per source over 10 s
// (o.Huge/10 records/s). Each source is a TCP connection at both ends, so the worker and this
// process (the sink) each need o.Huge descriptors plus a reserve; where the open-files limit is
// lower, the row runs the most sources it allows and says so.
func huge(ctx context.Context, o Options, tmp string) (Row, error) {
	n := o.Huge
	limit, _ := limits.NoFile()
	note := ""
	if need := uint64(n) + 1024; limit > 0 && need > limit {
		n = int(limit) - 1024
		note = fmt.Sprintf("; %d sources asked, %d need %d open files per process, the limit here is %d: ran %d", o.Huge, o.Huge, need, limit, n)
	}
	partitions := 256
	row, err := replaySpec(ctx, o, tmp, spec{name: fmt.Sprintf("%d sources in one worker, keyed on %d partitions", n, partitions),
		sources: n, perSource: 1, span: 10 * time.Second, part: controller.Keyed, partitions: partitions})
	if err == nil {
		row.Extra = fmt.Sprintf("1 record per source%s", note)
	}
	return row, err
}

// handover measures the time from a second worker's start to a stable group with both members
// owning partitions, and the lateness of the records around it.
func handover(ctx context.Context, o Options, tmp, part string) (Row, error) {
	row := Row{Name: "handover on scale-out 1->2, 200 sources, " + part}
	dir, d, err := genDS(tmp, "ho-"+part, 200, 100, 10*time.Second)
	if err != nil {
		return row, err
	}
	env, err := newEnv(o)
	if err != nil {
		return row, err
	}
	defer env.Close()
	lr, err := env.Controller.Load(ctx, dir, controller.LoadRequest{Partitioning: part, Partitions: 32, AddressOverride: env.Sink.Addr()})
	if err != nil {
		return row, err
	}
	row.Load, _ = time.ParseDuration(lr.Took)
	w1, err := startWorker(o, env, false)
	if err != nil {
		return row, err
	}
	defer w1.stop()
	st, err := env.Controller.Start(ctx, controller.StartRequest{Delay: "3s"})
	if err != nil {
		return row, err
	}
	total := int64(d.RecordCount())
	row.Records = total
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for env.Sink.Total() < total/4 {
		select {
		case <-wctx.Done():
			return row, fmt.Errorf("stalled before scale-out")
		case <-time.After(5 * time.Millisecond):
		}
	}
	t0 := time.Now()
	w2, err := startWorker(o, env, false)
	if err != nil {
		return row, err
	}
	defer w2.stop()
	if err := env.WaitGroupMembers(wctx, "type1", 2); err != nil {
		return row, err
	}
	ho := time.Since(t0)
	for env.Sink.Total() < total {
		select {
		case <-wctx.Done():
			return row, fmt.Errorf("received %d of %d", env.Sink.Total(), total)
		case <-time.After(5 * time.Millisecond):
		}
	}
	rep := env.Sink.Report(sink.Expectation{Sources: sink.ExpectDataset(d), Start: st.StartTime, Span: d.Span, Loops: 1})
	t := rep.Total
	row.P50, row.P99, row.P999, row.Max = t.LateP50ms, t.LateP99ms, t.LateP999ms, t.LateMaxms
	row.Lost, row.Early, row.Dup = t.Lost, t.Early, t.Duplicated
	row.Rate = float64(total) / d.Span.Seconds()
	row.Extra = fmt.Sprintf("handover %.2f s (new process start -> stable group, both members assigned)", ho.Seconds())
	return row, nil
}

// floor runs the physical-floor sender (bench-floor) as a child process against a receiver that
// reads and discards; its CPU is the child's own account of its send phase.
func floor(ctx context.Context, o Options, name string, rate, perWrite int, useUring bool) (Row, error) {
	row := Row{Name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return row, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(io.Discard, c) }()
		}
	}()
	args := []string{"bench-floor", "--sut", ln.Addr().String(), "--conns", strconv.Itoa(o.Sources), "--rate", strconv.Itoa(rate),
		"--duration", o.Duration.String(), "--per-write", strconv.Itoa(perWrite)}
	if useUring {
		args = append(args, "--uring")
	}
	cmd := exec.CommandContext(ctx, o.Exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return row, err
	}
	var fr FloorResult
	if err := json.Unmarshal(out, &fr); err != nil {
		return row, fmt.Errorf("bench-floor said %q: %w", out, err)
	}
	row.Records, row.CPU, row.Rate = fr.Records, fr.CPU, float64(fr.Records)/o.Duration.Seconds()
	if fr.CPU > 0 {
		row.PerCore = float64(fr.Records) / fr.CPU
	}
	row.Extra = fmt.Sprintf("sender thread CPU inside the writes: %.2f µs per record, %.2f µs per write; %d writes in %d syscalls; "+
		"with 1 ms pacing the process spent %.2f s (%.2f µs per record); receiver discards; lateness not measured",
		1e6*fr.CPU/float64(fr.Records), 1e6*fr.CPU/float64(fr.Writes), fr.Writes, fr.Syscalls, fr.ProcessCPU, 1e6*fr.ProcessCPU/float64(fr.Records))
	return row, nil
}

// naive runs the goroutine-per-source replayer (no Kafka) as a child process against the sink.
func naive(ctx context.Context, o Options, tmp, name string, sources, perSource int, span time.Duration) (Row, error) {
	row := Row{Name: name}
	dir, d, err := genDS(tmp, "naive-"+strconv.FormatInt(time.Now().UnixNano(), 36), sources, perSource, span)
	if err != nil {
		return row, err
	}
	s, err := sink.Listen("127.0.0.1:0", dataset.FramingNewline)
	if err != nil {
		return row, err
	}
	defer s.Close()
	start := time.Now().Add(2 * time.Second)
	cmd := exec.CommandContext(ctx, o.Exe, "bench-naive", "--dataset", dir, "--sut", s.Addr(), "--start", strconv.FormatInt(start.UnixNano(), 10))
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return row, err
	}
	row.CPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	total := int64(d.RecordCount())
	row.Records = total
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for s.Total() < total {
		select {
		case <-wctx.Done():
			return row, fmt.Errorf("received %d of %d", s.Total(), total)
		case <-time.After(5 * time.Millisecond):
		}
	}
	rep := s.Report(sink.Expectation{Sources: sink.ExpectDataset(d), Start: start, Span: d.Span, Loops: 1})
	t := rep.Total
	row.P50, row.P99, row.P999, row.Max = t.LateP50ms, t.LateP99ms, t.LateP999ms, t.LateMaxms
	row.Lost, row.Early, row.Dup = t.Lost, t.Early, t.Duplicated
	row.Rate = float64(total) / span.Seconds()
	row.PerCore = float64(total) / row.CPU
	row.Extra = "baseline: CPU includes process start and dataset parsing"
	return row, nil
}
