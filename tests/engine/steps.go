package engine

import (
	"sort"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

// Steps records what an engine operation did to each resource, from its
// event stream: op ("create", "update", "same", ...) -> sorted "type::name".
type Steps struct {
	ch   chan events.EngineEvent
	done chan struct{}
	mu   sync.Mutex
	ops  map[apitype.OpType][]string
	// warnings are the engine's and the providers' warning diagnostics.
	warnings []string
}

// NewSteps starts recording; pass Channel() to the operation's EventStreams
// option, and read the result after the operation returned.
func NewSteps() *Steps {
	s := &Steps{ch: make(chan events.EngineEvent), done: make(chan struct{}), ops: map[apitype.OpType][]string{}}
	go func() {
		defer close(s.done)
		for e := range s.ch {
			s.record(e)
		}
	}()
	return s
}

// Channel is where the operation sends its events (it closes it when done).
func (s *Steps) Channel() chan<- events.EngineEvent { return s.ch }

func (s *Steps) record(e events.EngineEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case e.ResourcePreEvent != nil:
		m := e.ResourcePreEvent.Metadata
		s.ops[m.Op] = append(s.ops[m.Op], m.Type+"::"+urnName(m.URN))
	case e.DiagnosticEvent != nil && e.DiagnosticEvent.Severity == "warning":
		s.warnings = append(s.warnings, strings.TrimSpace(e.DiagnosticEvent.Message))
	}
}

// wait blocks until the event stream is closed.
func (s *Steps) wait() { <-s.done }

// Of returns the resources an op touched, sorted ("type::name").
func (s *Steps) Of(op apitype.OpType) []string {
	s.wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.ops[op]...)
	sort.Strings(out)
	return out
}

// Ops returns the number of resources per op.
func (s *Steps) Ops() map[apitype.OpType]int {
	s.wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[apitype.OpType]int{}
	for op, rs := range s.ops {
		out[op] = len(rs)
	}
	return out
}

// Warnings returns the warning diagnostics.
func (s *Steps) Warnings() []string {
	s.wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.warnings...)
}

// urnName is the resource name, the URN's last "::" field.
func urnName(urn string) string {
	if i := strings.LastIndex(urn, "::"); i >= 0 {
		return urn[i+2:]
	}
	return urn
}
