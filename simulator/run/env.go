// Package run owns the all-in-one mode: an embedded broker, the controller with its HTTP API on
// loopback, N workers and the sink in one process, used by `simulator run`, `make demo`, the
// end-to-end tests and the benchmarks.
package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/simulator/broker"
	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/sink"
	"github.com/simlab/simlab/simulator/state"
	"github.com/simlab/simlab/simulator/worker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Env is a broker, a controller, a sink and any number of workers on loopback.
type Env struct {
	Broker     *broker.Broker
	Brokers    []string
	Names      state.Names
	Controller *controller.Controller
	URL        string // controller base URL
	Sink       *sink.Sink
	Log        *slog.Logger

	ctx     context.Context
	cancel  context.CancelFunc
	srv     *http.Server
	mu      sync.Mutex
	workers []*handle
	bg      sync.WaitGroup
	onClose func()
}

type handle struct {
	w      *worker.Worker
	typ    string
	cancel context.CancelFunc
	done   chan struct{}
}

// EnvOptions configures NewEnv.
type EnvOptions struct {
	Framing string       // sink framing (default newline)
	Log     *slog.Logger // default: discard
	Brokers []string     // use these instead of an embedded broker
	OnClose func()       // called last by Close (e.g. to stop an external broker)
	// SinkIsTheSUT gives the controller the sink as its SUT address (its --sut-address), so a
	// load without address_override sends there.
	SinkIsTheSUT bool
}

// NewEnv starts the broker (unless given), the sink, and the controller with its HTTP API.
func NewEnv(o EnvOptions) (*Env, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Env{Names: state.Names{Prefix: contract.DefaultTopicPrefix}, Log: o.Log, ctx: ctx, cancel: cancel, Brokers: o.Brokers, onClose: o.OnClose}
	fail := func(err error) (*Env, error) { e.Close(); return nil, err }
	if len(e.Brokers) == 0 {
		b, err := broker.Start("127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		e.Broker, e.Brokers = b, b.Addrs()
	}
	s, err := sink.Listen("127.0.0.1:0", o.Framing)
	if err != nil {
		return fail(err)
	}
	e.Sink = s
	cc := controller.Config{Brokers: e.Brokers, Names: e.Names, DatasetRoot: "/", Log: o.Log.With("c", "controller")}
	if o.SinkIsTheSUT {
		cc.SUTAddress = s.Addr()
	}
	c, err := controller.New(ctx, cc)
	if err != nil {
		return fail(err)
	}
	e.Controller = c
	e.bg.Add(1)
	go func() { defer e.bg.Done(); _ = c.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	e.srv = &http.Server{Handler: c.Handler()}
	go e.srv.Serve(ln)
	e.URL = "http://" + ln.Addr().String()
	if err := c.Reader().WaitUntil(ctx, func(state.Stage) bool { return true }); err != nil {
		return fail(err)
	}
	return e, nil
}

// AddWorker starts a worker of a type and returns its index.
func (e *Env) AddWorker(typ string, mod func(*worker.Config)) int {
	cfg := worker.Config{Brokers: e.Brokers, Names: e.Names, Type: typ, ControllerURL: e.URL, Log: e.Log.With("c", "worker", "type", typ)}
	if mod != nil {
		mod(&cfg)
	}
	w := worker.New(cfg)
	ctx, cancel := context.WithCancel(e.ctx)
	h := &handle{w: w, typ: typ, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(h.done); _ = w.Run(ctx) }()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.workers = append(e.workers, h)
	return len(e.workers) - 1
}

// StopWorker stops worker i gracefully (as on SIGTERM) and waits until it left the group.
func (e *Env) StopWorker(i int) {
	e.mu.Lock()
	h := e.workers[i]
	e.mu.Unlock()
	if h == nil {
		return
	}
	h.cancel()
	<-h.done
}

// Close stops everything.
func (e *Env) Close() {
	e.mu.Lock()
	ws := append([]*handle(nil), e.workers...)
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, h := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); h.cancel(); <-h.done }()
	}
	wg.Wait()
	if e.srv != nil {
		e.srv.Close()
	}
	e.cancel()
	e.bg.Wait()
	if e.Controller != nil {
		e.Controller.Close()
	}
	if e.Sink != nil {
		e.Sink.Close()
	}
	if e.Broker != nil {
		e.Broker.Close()
	}
	if e.onClose != nil {
		e.onClose()
	}
}

// WaitGroupMembers waits until the type's consumer group has n members with a stable assignment
// (needs the embedded broker).
func (e *Env) WaitGroupMembers(ctx context.Context, typ string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	group := e.Names.Group(typ)
	for {
		gs, err := adm.DescribeGroups(ctx, group)
		if err == nil {
			g, ok := gs[group]
			if n == 0 && (!ok || g.Err != nil || len(g.Members) == 0) {
				return nil
			}
			if ok && g.Err == nil && len(g.Members) == n && g.State == "Stable" {
				assigned := 0
				for _, m := range g.Members {
					if ca, ok := m.Assigned.AsConsumer(); ok {
						for _, t := range ca.Topics {
							assigned += len(t.Partitions)
						}
					}
				}
				if n == 0 || assigned > 0 {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d members in %s: %w", n, group, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitCommitted waits until the committed progress of every type reaches want records (all loops),
// or ctx ends.
func (e *Env) WaitCommitted(ctx context.Context, want map[string]int64) error {
	for {
		st, err := e.Controller.Status(ctx)
		if err != nil {
			return err
		}
		ok := true
		for typ, n := range want {
			if st.Types[typ].Committed < n {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for commits: %w (status %+v)", ctx.Err(), st.Types)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Worker returns worker i.
func (e *Env) Worker(i int) *worker.Worker {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.workers[i].w
}
