package localcluster

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Readiness is a STAND-IN for the status reporting of Strimzi's and Rook's
// operators, which cannot run here (kwok nodes run no containers): it marks
// each Kafka cluster Ready and each CephCluster Ready with HEALTH_OK, as the
// operators do once their pods run, Delay after the object first appears (an
// operator takes that long), so `pulumi up`'s waits on them
// (pulumi.com/waitFor, infra/storage) are exercised with the real engine and
// provider. What it leaves unproven: that the real operators get there with
// simlab's specs, and how long they take.
type Readiness struct {
	// Delay is how long after an object appears it is marked ready.
	Delay time.Duration

	mu      sync.Mutex
	seen    map[string]time.Time // path -> first seen
	readyAt map[string]time.Time // path -> marked ready
}

// readyKinds are the custom resources the stand-in marks ready, with the
// status each operator reports when healthy.
var readyKinds = []struct {
	list   string
	status map[string]any
}{
	{"/apis/kafka.strimzi.io/v1beta2/kafkas", map[string]any{
		"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "StandInOperator"}},
	}},
	{"/apis/ceph.rook.io/v1/cephclusters", map[string]any{
		"phase": "Ready", "ceph": map[string]any{"health": "HEALTH_OK"},
	}},
}

// Run marks objects ready until ctx ends (poll every 100 ms). A kind whose
// CRD is not installed (yet) is skipped.
func (r *Readiness) Run(ctx context.Context, c *Cluster) {
	r.mu.Lock()
	if r.seen == nil {
		r.seen, r.readyAt = map[string]time.Time{}, map[string]time.Time{}
	}
	r.mu.Unlock()
	for {
		for _, k := range readyKinds {
			var list struct {
				Items []map[string]any `json:"items"`
			}
			if err := c.Get(ctx, k.list, &list); err != nil {
				continue // the CRD is not there yet, or the API server restarts
			}
			for _, obj := range list.Items {
				meta, _ := obj["metadata"].(map[string]any)
				ns, _ := meta["namespace"].(string)
				name, _ := meta["name"].(string)
				path := k.list[:len(k.list)-len(lastSegment(k.list))] + "namespaces/" + ns + "/" + lastSegment(k.list) + "/" + name
				r.mu.Lock()
				first, ok := r.seen[path]
				if !ok {
					first = time.Now()
					r.seen[path] = first
				}
				_, done := r.readyAt[path]
				r.mu.Unlock()
				if done || time.Since(first) < r.Delay {
					continue
				}
				obj["status"] = k.status
				if err := c.Do(ctx, http.MethodPut, path+"/status", obj, nil); err != nil {
					continue // changed meanwhile (a conflict), or the API server restarts: next round
				}
				r.mu.Lock()
				r.readyAt[path] = time.Now()
				r.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ReadyAt is when the object at path (e.g.
// /apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkas/simlab) was marked
// ready; false if it was not.
func (r *Readiness) ReadyAt(path string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.readyAt[path]
	return t, ok
}

func lastSegment(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
