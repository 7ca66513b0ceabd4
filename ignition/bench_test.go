package ignition

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/simlab/simlab/infra/config"
)

// benchConfig is the dev stack scaled to n nodes (1 controller), each with a
// static address, plus one role snippet: every part of the templates renders.
func benchConfig(b *testing.B, n int) *config.Config {
	c := *stacks(b)["dev"]
	c.Workers.Count = n - 1
	lv := *c.Libvirt
	lv.Addresses = map[string]string{}
	lv.Gateway, lv.Nameservers = "10.0.0.1", []string{"10.0.0.1"}
	c.Libvirt = &lv
	for i, node := range c.Nodes() {
		lv.Addresses[node.Name] = fmt.Sprintf("10.0.%d.%d", 1+i/250, 1+i%250)
	}
	c.Ignition.Worker = []string{"variant: fcos\nversion: 1.6.0\nstorage:\n  files:\n    - path: /etc/motd.d/simlab\n      contents:\n        inline: load-test lab\n"}
	return &c
}

// BenchmarkRenderNodes renders the Ignition of 500 nodes per iteration and
// reports ms/node: "RenderNode" is the per-node API (fresh Renderer each
// call), "Renderer" shares one Renderer (role templates and snippets
// translated once).
func BenchmarkRenderNodes(b *testing.B) {
	const n = 500
	c := benchConfig(b, n)
	m := testManifest(b)
	nodes := c.Nodes()
	if len(nodes) != n {
		b.Fatalf("%d nodes", len(nodes))
	}
	b.Run("RenderNode", func(b *testing.B) {
		cpu := cpuTime()
		for b.Loop() {
			for _, node := range nodes {
				if _, err := RenderNode(c, node, m); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*n), "ms/node")
		b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N*n), "cpu-ms/node")
	})
	b.Run("Renderer", func(b *testing.B) {
		cpu := cpuTime()
		for b.Loop() {
			r, err := NewRenderer(c, m)
			if err != nil {
				b.Fatal(err)
			}
			for _, node := range nodes {
				if _, err := r.Render(node); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*n), "ms/node")
		b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N*n), "cpu-ms/node")
	})
}

// cpuTime is the process's user+system CPU time: on a machine shared with
// other jobs it measures the cost of rendering better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
