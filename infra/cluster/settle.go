package cluster

import "fmt"

// The settle phase: after a worker's admission, what it holds for the
// stack must be whole again before the next worker is replaced (the
// nodes layer's roll waits for it, one worker at a time); before its
// machine goes, what it holds is handed off safely. The cluster owns the
// phase, the storage layer says what "whole" is (Settle: Ceph's OSDs), so
// the steps need nothing registered above the cluster layer: a worker's
// settle step is `<worker>-settled`, on the controller, replaced with its
// admission (a new machine), deleted before it.

// Settle is what the layers above the cluster add to a worker's settle
// phase: shell scripts for the controller, as root with AdminKubectl. A
// nil function adds nothing.
type Settle struct {
	// Joined runs after the worker (re)joined and waits until what it holds
	// is whole again; it fails, naming the node, when that takes too long.
	Joined func(node string) string
	// Leaving runs before the worker's machine is replaced or removed and
	// hands what it holds off safely; it fails, and the machine stays, when
	// that cannot be done.
	Leaving func(node string) string
}

// settlePhase is worker node's settle phase.
func settlePhase(node string, s Settle) Phase {
	p := Phase{
		Run:    fmt.Sprintf("echo %s", shq(node+": joined")),
		Update: fmt.Sprintf("echo %s", shq(node+": settled when it joined; nothing to wait for again")),
	}
	if s.Joined != nil {
		p.Run += "\n" + s.Joined(node)
	}
	if s.Leaving != nil {
		p.Undo = s.Leaving(node)
	}
	return p
}
