// Package broker owns the embedded Kafka-protocol broker (franz-go's kfake) used for local runs and
// tests: in-process for `simulator run`, or as a standalone process for `simulator broker`.
package broker

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is a running kfake cluster on loopback.
type Broker struct{ c *kfake.Cluster }

// Start starts a single-node kfake cluster. listen is "127.0.0.1:PORT" (PORT 0 picks one); kfake
// always binds 127.0.0.1.
func Start(listen string) (*Broker, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second),
		// kfake measures a produce that names its topic by id (produce v13+, what franz-go sends)
		// against the broker's message.max.bytes, not the topic's max.message.bytes (which it
		// stores and describes): raise the broker's limit from Kafka's ~1 MiB to the largest
		// topic limit of the contract (the state topic's), so each topic's own limit, which the
		// controller reads and sizes its batches by, is what binds.
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(contract.StateTopicMaxMessageBytes)})}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("broker listen %q: %w", listen, err)
		}
		if host != "127.0.0.1" && host != "localhost" && host != "" {
			return nil, fmt.Errorf("broker listen %q: the embedded broker binds 127.0.0.1 only", listen)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("broker listen %q: bad port", listen)
		}
		if p != 0 {
			opts = append(opts, kfake.Ports(p))
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting kfake: %w", err)
	}
	return &Broker{c: c}, nil
}

// Addrs are the broker's listen addresses.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Cluster exposes the kfake cluster (tests).
func (b *Broker) Cluster() *kfake.Cluster { return b.c }

// Close stops the broker.
func (b *Broker) Close() { b.c.Close() }
