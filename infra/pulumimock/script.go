package pulumimock

import (
	"fmt"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Command is one pulumi-command resource (command:remote:Command or
// command:local:Command) as the program declared it: the scripts, stdin and
// environment the provider would run, and for a remote command where it
// connects. Tests that execute a program's commands for real take them from
// here, so no script is written twice.
type Command struct {
	// Name is the resource's logical name; Remote says which provider runs it.
	Name   string
	Remote bool
	// Create, Update and Delete are the scripts ("" when not set).
	Create, Update, Delete string
	// Stdin is piped to Create and Update.
	Stdin string
	// Environment is exported to every script.
	Environment map[string]string
	// Host, Port and User are the SSH connection of a remote command.
	Host string
	Port int
	User string
	// URN and Dependencies order the commands.
	URN          string
	Dependencies []string
}

// Commands returns every pulumi-command resource, dependencies first (a
// topological order of the recorded dependencies; ties by name), which is an
// order the engine could create them in; delete in the reverse order.
func (r *Recorder) Commands() []Command {
	var cmds []Command
	for _, res := range r.Resources() {
		if res.Type != "command:remote:Command" && res.Type != "command:local:Command" {
			continue
		}
		c := Command{Name: res.Name, Remote: res.Type == "command:remote:Command",
			Create: String(res.Inputs, "create"), Update: String(res.Inputs, "update"), Delete: String(res.Inputs, "delete"),
			Stdin: String(res.Inputs, "stdin"), Environment: map[string]string{}, URN: res.URN, Dependencies: res.Dependencies}
		if env, ok := unwrap(res.Inputs["environment"]); ok && env.IsObject() {
			for k, v := range env.ObjectValue() {
				if s, ok := unwrap(v); ok && s.IsString() {
					c.Environment[string(k)] = s.StringValue()
				}
			}
		}
		if conn, ok := unwrap(res.Inputs["connection"]); ok && conn.IsObject() {
			pm := conn.ObjectValue()
			c.Host, c.User = String(pm, "host"), String(pm, "user")
			if p, ok := unwrap(pm["port"]); ok && p.IsNumber() {
				c.Port = int(p.NumberValue())
			}
		}
		cmds = append(cmds, c)
	}
	byURN := map[string]int{}
	for i, c := range cmds {
		byURN[c.URN] = i
	}
	// Kahn's algorithm over dependencies among the commands (others, such
	// as components, do not order commands).
	indeg := make([]int, len(cmds))
	users := make([][]int, len(cmds))
	for i, c := range cmds {
		for _, d := range c.Dependencies {
			if j, ok := byURN[d]; ok && j != i {
				indeg[i]++
				users[j] = append(users[j], i)
			}
		}
	}
	var ready, out []int
	for i := range cmds {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		sort.Slice(ready, func(a, b int) bool { return cmds[ready[a]].Name < cmds[ready[b]].Name })
		i := ready[0]
		ready = ready[1:]
		out = append(out, i)
		for _, u := range users[i] {
			if indeg[u]--; indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(out) != len(cmds) {
		panic(fmt.Sprintf("pulumimock: a dependency cycle among %d commands", len(cmds)-len(out)))
	}
	sorted := make([]Command, len(out))
	for k, i := range out {
		sorted[k] = cmds[i]
	}
	return sorted
}

// unwrap looks through secrets and outputs to the value.
func unwrap(v resource.PropertyValue) (resource.PropertyValue, bool) {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput():
			if !v.OutputValue().Known {
				return v, false
			}
			v = v.OutputValue().Element
		case v.IsNull():
			return v, false
		default:
			return v, true
		}
	}
}
