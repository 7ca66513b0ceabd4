package controller

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/simlab/simlab/simulator/broker"
	"github.com/simlab/simlab/simulator/dataset"
	"github.com/simlab/simlab/simulator/state"
)

// TestRestartedControllerRecoversState checks that the controller keeps nothing locally: a new
// controller on the same Kafka sees the stage, the run and the manifests, and a repeated load of the
// same dataset stays a no-op.
func TestRestartedControllerRecoversState(t *testing.T) {
	b, err := broker.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	root := t.TempDir()
	o := dataset.DefaultGenOptions()
	o.Types, o.SourcesPer, o.RecordsPer = 2, 3, 5
	if err := dataset.Generate(filepath.Join(root, "ds"), o); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Brokers: b.Addrs(), Names: state.Names{Prefix: "r"}, DatasetRoot: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c1ctx, c1stop := context.WithCancel(ctx)
	c1, err := New(c1ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go c1.Run(c1ctx)
	if _, err := c1.Load(ctx, filepath.Join(root, "ds"), LoadRequest{}); err != nil {
		t.Fatal(err)
	}
	st1, err := c1.Start(ctx, StartRequest{Delay: "1h", Repeat: true, Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	c1stop()
	c1.Close()

	c2, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	go c2.Run(ctx)
	s, err := c2.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Stage != state.StageRunning || s.RunID != st1.RunID || !s.StartTime.Equal(st1.StartTime) || s.Loops != 2 || len(s.Types) != 2 || s.Types["type1"].Records != 15 {
		t.Fatalf("recovered status %+v, want run %s running with 2 types of 15 records", s, st1.RunID)
	}
	if m := c2.Reader().Manifest("type2"); m == nil || len(m.Sources) != 3 || len(m.Partitions) != 3 {
		t.Fatalf("manifest not recovered: %+v", m)
	}
	if _, err := c2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c2.Load(ctx, filepath.Join(root, "ds"), LoadRequest{})
	if err != nil || !r.Unchanged {
		t.Fatalf("reload after restart: %+v %v", r, err)
	}
}
