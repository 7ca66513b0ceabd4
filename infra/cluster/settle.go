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
//
// Its update brings a worker back from a restart in place (a resize, which
// the drained phase prepared: drained.go): it waits for the new boot,
// uncordons the worker and resumes what it holds, before the next resized
// worker is drained. With a machine size (libvirt), its create and update
// record the size on the Node (SizeAnnotation).

// Settle is what the layers above the cluster add to a worker's settle
// and drained phases: shell scripts for the controller, as root with
// AdminKubectl. A nil function adds nothing.
type Settle struct {
	// Joined runs after the worker (re)joined and waits until what it holds
	// is whole again; it fails, naming the node, when that takes too long.
	Joined func(node string) string
	// Leaving runs before the worker's machine is replaced or removed and
	// hands what it holds off safely; it fails, and the machine stays, when
	// that cannot be done.
	Leaving func(node string) string
	// Pausing runs before the worker's machine restarts in place (before
	// its drain) and makes what it holds wait for it rather than move; it
	// fails, and the machine is not restarted, when that is not safe.
	Pausing func(node string) string
	// Resumed runs once the worker is back from that restart (uncordoned)
	// and waits until what it holds is whole again.
	Resumed func(node string) string
}

// settlePhase is worker node's settle phase; size is its machine's size
// ("" for machines the stack does not size).
func settlePhase(node, size string, s Settle) Phase {
	return settlePhaseWith(kubectl, node, size, s, restartSeconds, 5)
}

// settlePhaseWith is settlePhase with another kubectl command, timeout and
// poll interval (tests).
func settlePhaseWith(kubectl, node, size string, s Settle, timeoutSeconds, pollSeconds int) Phase {
	p := Phase{
		Run:    fmt.Sprintf("echo %s", shq(node+": joined")),
		Update: fmt.Sprintf("echo %s", shq(node+": settled when it joined; nothing to wait for again")),
	}
	if s.Joined != nil {
		p.Run += "\n(\n" + s.Joined(node) + "\n)"
	}
	if size != "" {
		p.Run += fmt.Sprintf("\n%s annotate node %s %s=%s --overwrite >/dev/null", kubectl, shq(node), SizeAnnotation, shq(size))
		resumed := ""
		if s.Resumed != nil {
			resumed = s.Resumed(node)
		}
		p.Update = settledUpdateWith(kubectl, node, size, resumed, timeoutSeconds, pollSeconds)
	}
	if s.Leaving != nil {
		p.Undo = s.Leaving(node)
	}
	return p
}
