// Package pulumimock runs a Pulumi program under the SDK's official mock
// monitor (pulumi.WithMocks) and records every resource it registers: type,
// name, parent, dependencies, provider and inputs. Tests assert the resource
// graph from the record, and `simlab plan` (infra/plan) computes what a config
// change would do from two records (Diff). Like the engine (which the SDK's mocks leave out),
// it marks the outputs named in additionalSecretOutputs as secrets. No engine
// or provider plugin is involved: this is a mock of the Pulumi engine, and
// tests using it say so in their names (TestMock...).
package pulumimock

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
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
	// URN is the resource's URN as the SDK's mock monitor computes it.
	URN string
	// Inputs and Outputs keep secrets as secrets.
	Inputs, Outputs resource.PropertyMap
	// ReadID is the ID a read resource (a Get... function) was read with;
	// empty for a registered one.
	ReadID string
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

// StateFunc lets a test add outputs for a resource (e.g. a command's stdout).
type StateFunc func(args pulumi.MockResourceArgs) resource.PropertyMap

// Recorder is a pulumi.MockResourceMonitor that records resources.
type Recorder struct {
	mu             sync.Mutex
	resources      []Resource
	project, stack string
	// State, when set, is merged over the inputs to form each resource's outputs.
	State StateFunc
	// replacementIDs: see WithReplacementIDs.
	replacementIDs bool
	// previous: see WithPreviousOutputs.
	previous resource.PropertyMap
}

// WithPreviousOutputs makes every StackReference read outputs, as a
// stack's reference to itself reads its previous deployment's (a State
// may still add to them).
func WithPreviousOutputs(outputs map[string]any) func(*Recorder) {
	return func(r *Recorder) { r.previous = resource.NewPropertyMapFromMap(outputs) }
}

// WithState sets the Recorder's State (see Run).
func WithState(f StateFunc) func(*Recorder) { return func(r *Recorder) { r.State = f } }

// NewResource records the resource; its outputs are its inputs merged with State's.
func (r *Recorder) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	res := Resource{Type: args.TypeToken, Name: args.Name, Custom: args.Custom, Provider: args.Provider, Inputs: args.Inputs}
	if args.ReadRPC != nil {
		res.ReadID = args.ID
	}
	id := args.Name + "-id"
	if r.replacementIDs && args.RegisterRPC != nil {
		id = replacementID(args, args.RegisterRPC.GetReplaceOnChanges(), args.RegisterRPC.GetIgnoreChanges())
		args.ID = id
	}
	state := args.Inputs.Copy()
	if args.TypeToken == "pulumi:pulumi:StackReference" {
		// A stack with no previous deployment has no outputs (a State may add some).
		prev := r.previous
		if prev == nil {
			prev = resource.PropertyMap{}
		}
		state["outputs"] = resource.NewObjectProperty(prev)
	}
	if r.State != nil {
		for k, v := range r.State(args) {
			state[k] = v
		}
	}
	if rpc := args.RegisterRPC; rpc != nil {
		res.Parent = rpc.GetParent()
		res.Dependencies = append(res.Dependencies, rpc.GetDependencies()...)
		for _, deps := range rpc.GetPropertyDependencies() {
			res.Dependencies = append(res.Dependencies, deps.GetUrns()...)
		}
		res.IgnoreChanges = rpc.GetIgnoreChanges()
		res.ReplaceOnChanges = rpc.GetReplaceOnChanges()
		res.DeleteBeforeReplace = rpc.GetDeleteBeforeReplace()
		for _, k := range rpc.GetAdditionalSecretOutputs() {
			if v, ok := state[resource.PropertyKey(k)]; ok && !v.IsSecret() {
				state[resource.PropertyKey(k)] = resource.MakeSecret(v)
			}
		}
		parentType := tokens.Type("")
		if p := resource.URN(res.Parent); p != "" && p.QualifiedType() != resource.RootStackType {
			parentType = p.QualifiedType()
		}
		res.URN = string(resource.NewURN(tokens.QName(r.stack), tokens.PackageName(r.project), parentType,
			tokens.Type(res.Type), res.Name))
	}
	res.Outputs = state
	r.mu.Lock()
	r.resources = append(r.resources, res)
	r.mu.Unlock()
	return id, state, nil
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

// Select returns the resources of a type whose name ends with suffix.
func (r *Recorder) Select(typ, suffix string) []Resource {
	var out []Resource
	for _, res := range r.OfType(typ) {
		if strings.HasSuffix(res.Name, suffix) {
			out = append(out, res)
		}
	}
	return out
}

// Run runs program under mocks for project/stack and returns the record.
func Run(project, stack string, program pulumi.RunFunc, opts ...func(*Recorder)) (*Recorder, error) {
	rec := &Recorder{project: project, stack: stack}
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

// FindPlain reports where needle appears in a plain (non-secret) input or
// output of any recorded resource.
func (r *Recorder) FindPlain(needle string) []string {
	var hits []string
	for _, res := range r.Resources() {
		for _, side := range []struct {
			name string
			pm   resource.PropertyMap
		}{{"inputs", res.Inputs}, {"outputs", res.Outputs}} {
			for p, s := range PlainStrings(res.Key()+"."+side.name, resource.NewObjectProperty(side.pm)) {
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

// Reveal returns v with every secret (and secret output) replaced by its plain value: what the
// provider sends the API server. Tests that apply recorded inputs for real use it.
func Reveal(v resource.PropertyValue) resource.PropertyValue {
	switch {
	case v.IsSecret():
		return Reveal(v.SecretValue().Element)
	case v.IsOutput():
		return Reveal(v.OutputValue().Element)
	case v.IsArray():
		out := make([]resource.PropertyValue, 0, len(v.ArrayValue()))
		for _, e := range v.ArrayValue() {
			out = append(out, Reveal(e))
		}
		return resource.NewArrayProperty(out)
	case v.IsObject():
		out := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			out[k] = Reveal(e)
		}
		return resource.NewObjectProperty(out)
	}
	return v
}
