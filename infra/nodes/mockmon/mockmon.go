// Package mockmon is a mock Pulumi resource monitor for the nodes and
// cluster layers' tests. Under pulumi.WithMocks it records every registered
// resource with its inputs, outputs, parent, dependencies and resource
// options, and, like the engine (which the SDK's mocks leave out), marks the
// outputs named in additionalSecretOutputs as secrets. Tests using it are
// mocks of the Pulumi engine and say so in their names (TestMock...).
package mockmon

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The project and stack every Run uses.
const (
	project = "simlab"
	stack   = "test"
)

// Resource is one registered resource.
type Resource struct {
	Type, Name, URN, Parent string
	Custom                  bool
	// Dependencies are the URNs of explicit and property dependencies.
	Dependencies []string
	// Inputs and Outputs keep secrets as secrets.
	Inputs, Outputs resource.PropertyMap
	// IgnoreChanges, ReplaceOnChanges and DeleteBeforeReplace are the options sent.
	IgnoreChanges, ReplaceOnChanges []string
	DeleteBeforeReplace             bool
}

// Key identifies a resource by type and name.
func (r Resource) Key() string { return r.Type + "::" + r.Name }

// DependsOn reports whether r lists a dependency on the resource other.
func (r Resource) DependsOn(other Resource) bool {
	for _, d := range r.Dependencies {
		if d == other.URN {
			return true
		}
	}
	return false
}

// Outputs returns extra outputs for a resource (e.g. a command's stdout).
type Outputs func(args pulumi.MockResourceArgs) resource.PropertyMap

// Monitor records resources; it implements pulumi.MockResourceMonitor.
type Monitor struct {
	mu   sync.Mutex
	res  []Resource
	outs Outputs
}

// NewResource records the resource; its outputs are its inputs plus Outputs.
func (m *Monitor) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	r := Resource{Type: args.TypeToken, Name: args.Name, Custom: args.Custom, Inputs: args.Inputs}
	state := args.Inputs.Copy()
	if m.outs != nil {
		for k, v := range m.outs(args) {
			state[k] = v
		}
	}
	if rpc := args.RegisterRPC; rpc != nil {
		r.Parent = rpc.GetParent()
		r.Dependencies = append(r.Dependencies, rpc.GetDependencies()...)
		for _, d := range rpc.GetPropertyDependencies() {
			r.Dependencies = append(r.Dependencies, d.GetUrns()...)
		}
		r.IgnoreChanges = rpc.GetIgnoreChanges()
		r.ReplaceOnChanges = rpc.GetReplaceOnChanges()
		r.DeleteBeforeReplace = rpc.GetDeleteBeforeReplace()
		for _, k := range rpc.GetAdditionalSecretOutputs() {
			if v, ok := state[resource.PropertyKey(k)]; ok && !v.IsSecret() {
				state[resource.PropertyKey(k)] = resource.MakeSecret(v)
			}
		}
		// The URN as the SDK's mock monitor computes it.
		parentType := tokens.Type("")
		if p := resource.URN(r.Parent); p != "" && p.QualifiedType() != resource.RootStackType {
			parentType = p.QualifiedType()
		}
		r.URN = string(resource.NewURN(tokens.QName(stack), tokens.PackageName(project), parentType,
			tokens.Type(r.Type), r.Name))
	}
	r.Outputs = state
	m.mu.Lock()
	m.res = append(m.res, r)
	m.mu.Unlock()
	return args.Name + "-id", state, nil
}

// Call answers provider functions with their arguments.
func (m *Monitor) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return args.Args, nil
}

// Resources returns what was recorded, sorted by key.
func (m *Monitor) Resources() []Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := append([]Resource(nil), m.res...)
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Find returns the resource of a type and name.
func (m *Monitor) Find(typ, name string) (Resource, bool) {
	for _, r := range m.Resources() {
		if r.Type == typ && r.Name == name {
			return r, true
		}
	}
	return Resource{}, false
}

// Select returns the resources of a type whose name ends with suffix.
func (m *Monitor) Select(typ, suffix string) []Resource {
	var out []Resource
	for _, r := range m.Resources() {
		if r.Type == typ && strings.HasSuffix(r.Name, suffix) {
			out = append(out, r)
		}
	}
	return out
}

// Run runs program under the mock monitor.
func Run(program pulumi.RunFunc, outs Outputs) (*Monitor, error) {
	m := &Monitor{outs: outs}
	err := pulumi.RunErr(program, pulumi.WithMocks(project, stack, m))
	return m, err
}

// PlainStrings returns every string in v not under a secret, by path.
func PlainStrings(path string, v resource.PropertyValue) map[string]string {
	out := map[string]string{}
	var walk func(p string, v resource.PropertyValue)
	walk = func(p string, v resource.PropertyValue) {
		switch {
		case v.IsSecret():
		case v.IsOutput():
			if !v.OutputValue().Secret {
				walk(p, v.OutputValue().Element)
			}
		case v.IsString():
			out[p] = v.StringValue()
		case v.IsArray():
			for i, e := range v.ArrayValue() {
				walk(fmt.Sprintf("%s[%d]", p, i), e)
			}
		case v.IsObject():
			for k, e := range v.ObjectValue() {
				walk(p+"."+string(k), e)
			}
		}
	}
	walk(path, v)
	return out
}

// FindPlain reports where needle appears in a plain-text input or output.
func (m *Monitor) FindPlain(needle string) []string {
	var hits []string
	for _, r := range m.Resources() {
		for _, side := range []struct {
			name string
			pm   resource.PropertyMap
		}{{"inputs", r.Inputs}, {"outputs", r.Outputs}} {
			for p, s := range PlainStrings(r.Key()+"."+side.name, resource.NewObjectProperty(side.pm)) {
				if strings.Contains(s, needle) {
					hits = append(hits, p)
				}
			}
		}
	}
	sort.Strings(hits)
	return hits
}

// IsSecret reports whether the property at key of pm is a secret.
func IsSecret(pm resource.PropertyMap, key string) bool {
	v, ok := pm[resource.PropertyKey(key)]
	if !ok {
		return false
	}
	return v.IsSecret() || (v.IsOutput() && v.OutputValue().Secret)
}

// String returns the string at key of pm, looking through secrets.
func String(pm resource.PropertyMap, key string) string {
	v, ok := pm[resource.PropertyKey(key)]
	if !ok {
		return ""
	}
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput():
			v = v.OutputValue().Element
		case v.IsString():
			return v.StringValue()
		default:
			return ""
		}
	}
}
