package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/controller"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/state"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// loadedA loads dataset A (1 type, 3 sources, 20 records each) and returns it and its fingerprint.
func loadedA(t *testing.T, ctx context.Context, e *Env) (*dataset.Dataset, string) {
	t.Helper()
	dir, d := gen(t, small(1, 3, 20, time.Second))
	r, err := e.Controller.Load(ctx, dir, controller.LoadRequest{AddressOverride: e.Sink.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	return d, r.Fingerprint
}

// stillA checks that dataset A is what is loaded, whole, and that it plays exactly.
func stillA(t *testing.T, ctx context.Context, e *Env, d *dataset.Dataset, fp string) {
	t.Helper()
	st, err := e.Controller.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Controller.Reader().Stage(); st.Stage != state.StageLoaded || got.Fingerprint != fp || st.Types["type1"].Records != int64(d.RecordCount()) {
		t.Fatalf("after the failed load: stage %s, fingerprint %.16s (want A's %.16s), types %+v", st.Stage, got.Fingerprint, fp, st.Types)
	}
	if m := e.Controller.Reader().Manifest("type1"); m == nil || m.Fingerprint != fp {
		t.Fatalf("type1's manifest is not A's: %+v", m)
	}
	if n := topicRecords(t, ctx, e, "type1"); n < int64(d.RecordCount()) {
		t.Fatalf("the topic holds %d records, fewer than A's %d", n, d.RecordCount())
	}
	e.AddWorker("type1", nil)
	run, err := e.Controller.Start(ctx, controller.StartRequest{Delay: "300ms"})
	if err != nil {
		t.Fatalf("starting A after the failed load: %v", err)
	}
	checkReport(t, finish(t, ctx, e, d, run), int64(d.RecordCount()), 0)
}

// TestLoadOverTheTopicLimitLeavesTheLoadedDatasetAlone: with A loaded and its topic's
// max.message.bytes lowered to 4096 (as an operator-managed topic might have it), loading B with
// one 10,000-byte record fails with a problem naming the file, line and source and the limit;
// A is still loaded, whole, and plays exactly. (It used to leave the stage empty.)
func TestLoadOverTheTopicLimitLeavesTheLoadedDatasetAlone(t *testing.T) {
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 60*time.Second)
	dA, fpA := loadedA(t, ctx, e)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	limit := "4096"
	resp, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, e.Names.RecordsTopic("type1"))
	if err == nil {
		_, err = resp.On(e.Names.RecordsTopic("type1"), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	dirB, _ := gen(t, small(1, 3, 10, time.Second))
	recs := filepath.Join(dirB, "type1", "ne00002", "records")
	b, err := os.ReadFile(recs)
	if err != nil {
		t.Fatal(err)
	}
	line := bytes.Count(b, []byte{'\n'}) + 1
	b = dataset.AppendRecord(b, 500*time.Millisecond, bytes.Repeat([]byte{'x'}, 10000))
	if err := os.WriteFile(recs, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = e.Controller.Load(ctx, dirB, controller.LoadRequest{AddressOverride: e.Sink.Addr()})
	var ve *dataset.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 {
		t.Fatalf("want one problem for the oversize record, got %v", err)
	}
	p := ve.Problems[0]
	if p.File != "type1/ne00002/records" || p.Line != line || !strings.Contains(p.Msg, "source type1/ne00002") ||
		!strings.Contains(p.Msg, "accepts at most 4096") || !strings.Contains(p.Msg, "sim.records.type1") {
		t.Fatalf("problem %q: want type1/ne00002/records:%d naming the source, the topic and its limit 4096", p, line)
	}
	stillA(t, ctx, e, dA, fpA)
}

// TestLoadFailingMidWriteLeavesTheLoadedDatasetAlone: the broker refuses B's records while they
// are being written (a produce error, after the load has begun writing): the load fails naming
// a record's file, line and source, and A is still loaded, whole, and plays exactly.
func TestLoadFailingMidWriteLeavesTheLoadedDatasetAlone(t *testing.T) {
	e := newEnv(t, EnvOptions{})
	ctx := ctxFor(t, 60*time.Second)
	dA, fpA := loadedA(t, ctx, e)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := e.Names.RecordsTopic("type1")
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	id := td[topic].ID
	// Refuse the first produce request to the records topic (once; the state topic is untouched).
	e.Broker.Cluster().ControlKey(kmsg.Produce.Int16(), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.ProduceRequest)
		ours := false
		for _, rt := range req.Topics {
			if rt.Topic == topic || rt.TopicID == id {
				ours = true
			}
		}
		if !ours {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.InvalidRecord.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	dirB, _ := gen(t, small(1, 3, 30, time.Second))
	_, err = e.Controller.Load(ctx, dirB, controller.LoadRequest{AddressOverride: e.Sink.Addr()})
	if err == nil || !strings.Contains(err.Error(), "type1/ne0000") || !strings.Contains(err.Error(), "/records:") ||
		!strings.Contains(err.Error(), "unchanged") {
		t.Fatalf("want a load error naming a record's file:line and source, got %v", err)
	}
	stillA(t, ctx, e, dA, fpA)
}
