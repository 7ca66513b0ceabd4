package state

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Reader tails the state topic and keeps the latest value of every key.
type Reader struct {
	names   Names
	brokers []string
	log     *slog.Logger

	mu        sync.Mutex
	stage     Stage
	manifests map[string]*Manifest
	ready     bool
	changed   chan struct{} // closed and replaced on every change
}

// NewReader returns a reader of the state topic under names.
func NewReader(brokers []string, names Names, log *slog.Logger) *Reader {
	return &Reader{names: names, brokers: brokers, log: log, stage: Stage{Stage: StageEmpty},
		manifests: map[string]*Manifest{}, changed: make(chan struct{})}
}

// Stage returns the latest stage.
func (r *Reader) Stage() Stage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stage
}

// Manifest returns the manifest of a type, or nil.
func (r *Reader) Manifest(typ string) *Manifest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifests[typ]
}

// Ready reports whether the topic was read up to the end it had when the reader started.
func (r *Reader) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// Changed returns a channel closed at the next change (of the stage, a manifest, or readiness).
func (r *Reader) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Reader) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// WaitUntil blocks until fn(stage) holds, or ctx ends.
func (r *Reader) WaitUntil(ctx context.Context, fn func(Stage) bool) error {
	for {
		ch := r.Changed()
		if r.Ready() && fn(r.Stage()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Run tails the topic until ctx ends.
func (r *Reader) Run(ctx context.Context) error {
	topic := r.names.StateTopic()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.FetchMaxBytes(contract.StateTopicMaxMessageBytes), kgo.FetchMaxPartitionBytes(contract.StateTopicMaxMessageBytes))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var target int64 = -1
	for target < 0 {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			if o, ok := ends.Lookup(topic, 0); ok && o.Err == nil {
				target = o.Offset
				break
			} else if ok && !errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
				r.log.Warn("state topic end offset", "err", o.Err)
			} else {
				target = 0 // no state topic yet: nothing to catch up on
			}
		} else {
			r.log.Warn("listing state topic end offset", "err", err)
		}
		if target >= 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if target == 0 {
		r.mu.Lock()
		r.ready = true
		r.notify()
		r.mu.Unlock()
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fs.EachError(func(t string, p int32, err error) {
			r.log.Debug("state fetch", "err", err)
		})
		r.mu.Lock()
		changed := false
		fs.EachRecord(func(rec *kgo.Record) {
			changed = true
			r.apply(rec)
			if !r.ready && rec.Offset+1 >= target {
				r.ready = true
			}
		})
		if changed {
			r.notify()
		}
		r.mu.Unlock()
	}
}

func (r *Reader) apply(rec *kgo.Record) {
	key := string(rec.Key)
	switch {
	case key == KeyStage:
		var s Stage
		if rec.Value == nil {
			r.stage = Stage{Stage: StageEmpty}
		} else if err := json.Unmarshal(rec.Value, &s); err != nil {
			r.log.Error("bad stage record in state topic", "offset", rec.Offset, "err", err)
		} else {
			r.stage = s
		}
	case len(key) > len(ManifestPrefix) && key[:len(ManifestPrefix)] == ManifestPrefix:
		typ := key[len(ManifestPrefix):]
		if rec.Value == nil {
			delete(r.manifests, typ)
			return
		}
		var m Manifest
		if err := json.Unmarshal(rec.Value, &m); err != nil {
			r.log.Error("bad manifest record in state topic", "offset", rec.Offset, "err", err)
			return
		}
		r.manifests[typ] = &m
	}
}

// Types returns the loaded types.
func (r *Reader) Types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.stage.Types...)
}
