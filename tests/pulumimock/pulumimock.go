// Package pulumimock runs a Pulumi program under the SDK's official mock
// monitor (pulumi.WithMocks) and records every resource it registers: type,
// name, parent, dependencies, provider and inputs. Tests assert the resource
// graph from the record. No engine or provider plugin is involved: this is a
// mock of the Pulumi engine, and tests using it say so in their names.
package pulumimock

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Resource is one registered resource.
type Resource struct {
	// Type is the type token, e.g. kubernetes:apps/v1:Deployment.
	Type string
	// Name is the logical name.
	Name string
	// Custom is false for component resources.
	Custom bool
	// Parent is the parent's URN ("" for stack children).
	Parent string
	// Dependencies are the URNs of explicit and implicit dependencies.
	Dependencies []string
	// Provider is the provider reference, if any.
	Provider string
	// Inputs are the resource's inputs, secrets kept as secrets.
	Inputs resource.PropertyMap
}

// Key identifies a resource by type and name.
func (r Resource) Key() string { return r.Type + "::" + r.Name }

// StateFunc lets a test add outputs for a resource (e.g. a command's stdout).
type StateFunc func(args pulumi.MockResourceArgs) resource.PropertyMap

// Recorder is a pulumi.MockResourceMonitor that records resources.
type Recorder struct {
	mu        sync.Mutex
	resources []Resource
	// State, when set, is merged over the inputs to form each resource's outputs.
	State StateFunc
}

// NewResource records the resource and echoes its inputs as outputs.
func (r *Recorder) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	res := Resource{Type: args.TypeToken, Name: args.Name, Custom: args.Custom, Provider: args.Provider, Inputs: args.Inputs}
	if rpc := args.RegisterRPC; rpc != nil {
		res.Parent = rpc.GetParent()
		res.Dependencies = append(res.Dependencies, rpc.GetDependencies()...)
		for _, deps := range rpc.GetPropertyDependencies() {
			res.Dependencies = append(res.Dependencies, deps.GetUrns()...)
		}
	}
	r.mu.Lock()
	r.resources = append(r.resources, res)
	r.mu.Unlock()
	state := args.Inputs.Copy()
	if r.State != nil {
		for k, v := range r.State(args) {
			state[k] = v
		}
	}
	return args.Name + "-id", state, nil
}

// Call answers provider function calls with their arguments.
func (r *Recorder) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return args.Args, nil
}

// Resources returns what was recorded, sorted by key.
func (r *Recorder) Resources() []Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]Resource(nil), r.resources...)
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// OfType returns the resources of one type.
func (r *Recorder) OfType(typ string) []Resource {
	var out []Resource
	for _, res := range r.Resources() {
		if res.Type == typ {
			out = append(out, res)
		}
	}
	return out
}

// Find returns the resource with the given type and name.
func (r *Recorder) Find(typ, name string) (Resource, bool) {
	for _, res := range r.Resources() {
		if res.Type == typ && res.Name == name {
			return res, true
		}
	}
	return Resource{}, false
}

// Run runs program under mocks for project/stack and returns the record.
func Run(project, stack string, program pulumi.RunFunc, opts ...func(*Recorder)) (*Recorder, error) {
	rec := &Recorder{}
	for _, o := range opts {
		o(rec)
	}
	err := pulumi.RunErr(program, pulumi.WithMocks(project, stack, rec))
	return rec, err
}

// PlainStrings returns every string reachable in v that is NOT under a
// secret, with its path. Use it to prove a secret never appears in plain text.
func PlainStrings(path string, v resource.PropertyValue) map[string]string {
	out := map[string]string{}
	var walk func(p string, v resource.PropertyValue)
	walk = func(p string, v resource.PropertyValue) {
		switch {
		case v.IsSecret():
			return
		case v.IsOutput():
			if v.OutputValue().Secret {
				return
			}
			walk(p, v.OutputValue().Element)
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

// FindPlain reports where needle appears in plain (non-secret) inputs of any recorded resource.
func (r *Recorder) FindPlain(needle string) []string {
	var hits []string
	for _, res := range r.Resources() {
		for p, s := range PlainStrings(res.Key(), resource.NewObjectProperty(res.Inputs)) {
			if strings.Contains(s, needle) {
				hits = append(hits, p)
			}
		}
	}
	sort.Strings(hits)
	return hits
}
