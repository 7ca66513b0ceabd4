// Package broker owns the embedded Kafka-protocol broker (franz-go's kfake) used for local runs and
// tests: in-process for `simulator run`, or as a standalone process for `simulator broker`.
package broker

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/simlab/simlab/contract"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is a running kfake cluster on loopback.
type Broker struct{ c *kfake.Cluster }

// Start starts a single-node kfake cluster on loopback. listen is "127.0.0.1:PORT" (PORT 0
// picks one).
func Start(listen string) (*Broker, error) { return StartAdvertised(listen, "") }

// StartAdvertised starts a single-node kfake cluster listening on listen that tells clients, in
// its metadata, to connect to advertise (host:port, e.g. a Service's DNS name). With advertise,
// listen may be any host:port (e.g. ":9092" in a pod); without it, the broker binds 127.0.0.1
// only and advertises that. Only the rehearsal's stand-in for Kafka (tests/rehearse) listens
// beyond loopback: kfake keeps everything in memory, has no authentication and is not Kafka.
func StartAdvertised(listen, advertise string) (*Broker, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second),
		// kfake measures a produce that names its topic by id (produce v13+, what franz-go sends)
		// against the broker's message.max.bytes, not the topic's max.message.bytes (which it
		// stores and describes): raise the broker's limit from Kafka's ~1 MiB to the largest
		// topic limit of the contract (the state topic's), so each topic's own limit, which the
		// controller reads and sizes its batches by, is what binds.
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(contract.StateTopicMaxMessageBytes)})}
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	host, port, err := hostPort("listen", listen)
	if err != nil {
		return nil, err
	}
	if advertise == "" {
		if host != "127.0.0.1" && host != "localhost" && host != "" {
			return nil, fmt.Errorf("broker listen %q: without an advertised address the broker binds 127.0.0.1 only", listen)
		}
		listen = net.JoinHostPort("127.0.0.1", port)
	} else if _, _, err := hostPort("advertise", advertise); err != nil {
		return nil, err
	}
	// kfake binds 127.0.0.1:<port> and advertises its listener's address: bind listen instead,
	// and name advertise as the listener's address.
	opts = append(opts, kfake.ListenFn(func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, listen)
		if err != nil || advertise == "" {
			return ln, err
		}
		return advertised{Listener: ln, addr: advertise}, nil
	}))
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting kfake on %s: %w", listen, err)
	}
	return &Broker{c: c}, nil
}

// hostPort splits addr, the broker's what address, and checks its port is a number.
func hostPort(what, addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("broker %s %q: want host:port: %w", what, addr, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return "", "", fmt.Errorf("broker %s %q: bad port", what, addr)
	}
	return host, port, nil
}

// advertised is a listener whose Addr is the address clients are told to use.
type advertised struct {
	net.Listener
	addr string
}

func (a advertised) Addr() net.Addr { return advertisedAddr(a.addr) }

type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// Addrs are the broker's listen addresses.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Cluster exposes the kfake cluster (tests).
func (b *Broker) Cluster() *kfake.Cluster { return b.c }

// Close stops the broker.
func (b *Broker) Close() { b.c.Close() }

// announcePrefix and announceInfix frame the line `simulator broker` prints
// once it listens.
const announcePrefix, announceInfix = "broker listening on ", " advertised as "

// Announce is the line `simulator broker` prints once it listens on listen,
// telling clients advertised; ParseAnnounce reads it back.
func Announce(listen, advertised string) string {
	return announcePrefix + listen + announceInfix + advertised
}

// ParseAnnounce returns the advertised address of an Announce line (what a
// parent process connects its clients to), false for any other line.
func ParseAnnounce(line string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), announcePrefix)
	if !ok {
		return "", false
	}
	_, addr, ok := strings.Cut(rest, announceInfix)
	return addr, ok && addr != ""
}
