package controller

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/simlab/simlab/simulator/delivery"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ensureReportsTopic creates the workers' reports topic (contract.ReportsTopicSuffix) if needed.
func (c *Controller) ensureReportsTopic(ctx context.Context) error {
	topic := c.cfg.Names.ReportsTopic()
	maxBytes := strconv.Itoa(contract.ReportsTopicMaxMessageBytes)
	retention := strconv.Itoa(contract.ReportsTopicRetentionMs)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.adm.CreateTopic(ctx, contract.ReportsTopicPartitions, -1,
			map[string]*string{"max.message.bytes": &maxBytes, "retention.ms": &retention}, topic)
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		c.cfg.Log.Warn("creating reports topic, retrying", "topic", topic, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// readReports folds every summary on the reports topic, from its start, into the aggregator
// until ctx ends. A restarted controller so rebuilds every run's delivery totals.
func (c *Controller) readReports(ctx context.Context) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.cfg.Brokers...), kgo.ConsumeTopics(c.cfg.Names.ReportsTopic()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.FetchMaxPartitionBytes(contract.ReportsTopicMaxMessageBytes), kgo.FetchMaxBytes(4*contract.ReportsTopicMaxMessageBytes))
	if err != nil {
		c.cfg.Log.Error("reports consumer: delivery totals unavailable", "err", err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			s, err := delivery.Decode(r.Value)
			if err != nil {
				c.cfg.Log.Warn("skipping a record on the reports topic", "offset", r.Offset, "err", err)
				return
			}
			c.agg.Add(s)
		})
	}
}

// Delivery is the workers' delivery aggregate of a run (nil: no summary seen).
func (c *Controller) Delivery(run string, withSources bool) *delivery.View {
	return c.agg.View(run, withSources)
}
