package broker

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A broker listening on every address tells clients the advertised name, and clients that
// follow it (here "localhost", resolving to loopback) produce and consume.
func TestAdvertisedAddressIsWhatClientsAreTold(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	adv := "localhost:" + strconv.Itoa(port)
	b, err := StartAdvertised(":"+strconv.Itoa(port), adv)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.Addrs(); len(got) != 1 || got[0] != adv {
		t.Fatalf("Addrs() = %v, want [%s]", got, adv)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:"+strconv.Itoa(port)), kgo.DefaultProduceTopic("t"),
		kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Host != "localhost" || md.Brokers[0].Port != int32(port) {
		t.Fatalf("metadata brokers = %+v, want localhost:%d", md.Brokers, port)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	if n := fs.NumRecords(); n != 1 {
		t.Fatalf("consumed %d records, want 1", n)
	}
}

// Without an advertised address the broker stays on loopback, whatever host the listen
// address leaves empty.
func TestWithoutAdvertiseTheBrokerBindsLoopback(t *testing.T) {
	b, err := Start(":0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	host, _, err := net.SplitHostPort(b.Addrs()[0])
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Start(\":0\") listens on %v (%v), want 127.0.0.1", b.Addrs(), err)
	}
}

func TestBadAddressesAreRefusedByName(t *testing.T) {
	for _, c := range []struct{ listen, advertise, want string }{
		{"0.0.0.0:9092", "", "binds 127.0.0.1 only"},
		{":0", "kafka", `advertise "kafka"`},
		{":0", "kafka:x", `advertise "kafka:x": bad port`},
		{"nohost", "kafka:9092", `listen "nohost"`},
	} {
		var err error
		if c.advertise == "" {
			_, err = Start(c.listen)
		} else {
			_, err = StartAdvertised(c.listen, c.advertise)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("listen %q advertise %q: err %v, want it to say %q", c.listen, c.advertise, err, c.want)
		}
	}
}

// The line `simulator broker` prints is the one the benchmarks parse: the
// bench read "broker listening on 127.0.0.1:0 advertised as ..." whole as
// its address once the line grew the advertised part.
func TestAnnounceParsesBack(t *testing.T) {
	line := Announce("127.0.0.1:0", "127.0.0.1:37337") + "\n"
	if addr, ok := ParseAnnounce(line); !ok || addr != "127.0.0.1:37337" {
		t.Errorf("ParseAnnounce(%q) = %q, %v; want the advertised address", line, addr, ok)
	}
	for _, bad := range []string{"", "broker listening on 127.0.0.1:0", "panic: boom"} {
		if addr, ok := ParseAnnounce(bad); ok {
			t.Errorf("ParseAnnounce(%q) = %q, true; want false", bad, addr)
		}
	}
}
