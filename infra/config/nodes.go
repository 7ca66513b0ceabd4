package config

import (
	"crypto/sha256"
	"fmt"
	"sort"
)

// Node is one machine of the stack, derived from config. Names are stable:
// adding workers never renames existing nodes.
type Node struct {
	// Name is the hostname and the resource name, e.g. dev-worker-2.
	Name string
	// Role is controller or worker.
	Role string
	// Index counts from 1 within the role.
	Index int
	// MAC is the boot NIC's address: the metal machine's, or for libvirt
	// the one LibvirtMAC derives (the domain's NIC; static networking in the
	// node's Ignition binds to it).
	MAC string
	// IP is the static address, when known from config.
	IP string
}

// Nodes lists the stack's machines, controllers first. It is empty in existing mode.
func (c *Config) Nodes() []Node {
	var out []Node
	switch c.Provider {
	case ProviderLibvirt:
		for _, role := range []string{RoleController, RoleWorker} {
			n := c.Controllers.Count
			if role == RoleWorker {
				n = c.Workers.Count
			}
			for i := 1; i <= n; i++ {
				node := Node{Name: fmt.Sprintf("%s-%s-%d", c.Cluster.Name, role, i), Role: role, Index: i}
				node.MAC = LibvirtMAC(c.Cluster.Name, node.Name)
				if c.Libvirt != nil {
					node.IP = c.Libvirt.Addresses[node.Name]
				}
				out = append(out, node)
			}
		}
	case ProviderMetal:
		if c.Metal == nil {
			return nil
		}
		idx := map[string]int{}
		for _, role := range []string{RoleController, RoleWorker} {
			for _, m := range c.Metal.Machines {
				if m.Role != role {
					continue
				}
				idx[role]++
				out = append(out, Node{Name: m.Name, Role: role, Index: idx[role], MAC: m.MAC, IP: m.IP})
			}
		}
	}
	return out
}

// LibvirtMAC derives a libvirt node's stable MAC address (QEMU's 52:54:00
// prefix) from the cluster and node names, so a recreated node keeps its
// DHCP lease. This is the one owner of it: `pulumi up`, `simlab artifacts
// serve` and `simlab artifacts ignition` all take it from Nodes.
func LibvirtMAC(cluster, node string) string {
	s := sha256.Sum256([]byte(cluster + "/" + node))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", s[0], s[1], s[2])
}

// NodesByRole returns the nodes of one role.
func (c *Config) NodesByRole(role string) []Node {
	var out []Node
	for _, n := range c.Nodes() {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

func sortStrings(s []string) { sort.Strings(s) }
