package pulumimock

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"
)

// Op is what the engine would do with one resource when a stack moves from
// one program run (config) to another.
type Op string

// The operations of a Plan.
const (
	OpCreate  Op = "create"
	OpUpdate  Op = "update"
	OpReplace Op = "replace"
	OpDelete  Op = "delete"
)

// Plan maps a resource's Key (type::name) to its operation; unchanged
// resources are left out.
type Plan map[string]Op

// Names returns the names of the resources with operation op, sorted.
func (p Plan) Names(op Op) []string {
	var out []string
	for k, o := range p {
		if o == op {
			out = append(out, k[strings.LastIndex(k, "::")+2:])
		}
	}
	sort.Strings(out)
	return out
}

// String lists the plan one resource a line, sorted.
func (p Plan) String() string {
	var lines []string
	for k, o := range p {
		lines = append(lines, fmt.Sprintf("%-8s %s", o, k))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Diff computes what the engine would do going from the run old to the run
// new of the same program, from the recorded inputs alone. The rules, all of
// them (a mock cannot run a provider's Diff, so these stand in for it):
//
//   - a resource only in new is created, one only in old is deleted;
//   - a resource is replaced when a value at one of its replace paths
//     (ReplacePaths) differs, or when its provider reference differs (its
//     provider was replaced, which replaces every resource it manages);
//   - otherwise it is updated when any input differs;
//   - inputs named in the new resource's ignoreChanges are not compared.
//
// Both runs must use WithReplacementIDs, so that a replaced resource gets a
// new ID and every resource that takes that ID (or an output derived from
// it, such as a command's stdout from CommandOutputs) sees the change, as in
// a real engine.
func Diff(old, new *Recorder) Plan {
	plan := Plan{}
	before := map[string]Resource{}
	for _, r := range old.Resources() {
		before[r.Key()] = r
	}
	for _, r := range new.Resources() {
		o, ok := before[r.Key()]
		delete(before, r.Key())
		switch {
		case !ok:
			plan[r.Key()] = OpCreate
		case replaceKey(o, r.IgnoreChanges) != replaceKey(r, r.IgnoreChanges) || o.Provider != r.Provider:
			plan[r.Key()] = OpReplace
		case canonical(compared(o, r.IgnoreChanges)) != canonical(compared(r, r.IgnoreChanges)):
			plan[r.Key()] = OpUpdate
		}
	}
	for k := range before {
		plan[k] = OpDelete
	}
	return plan
}

func compared(r Resource, ignore []string) resource.PropertyValue {
	pm := r.Inputs.Copy()
	for _, k := range ignore {
		delete(pm, resource.PropertyKey(k))
	}
	return resource.NewObjectProperty(pm)
}

// kubernetesForceNew are the inputs whose change makes the Kubernetes
// provider replace an object rather than patch it: a subset of the
// provider's own list (pulumi-kubernetes provider/pkg/provider/diff.go,
// forceNewProperties), for the kinds this program creates. Every object and
// Helm release is replaced when its name or namespace changes.
var kubernetesForceNew = map[string][]string{
	"kubernetes:storage.k8s.io/v1:StorageClass":                  {"parameters", "provisioner"},
	"kubernetes:core/v1:PersistentVolume":                        {"spec.csi", "spec.nfs", "spec.hostPath", "spec.local"},
	"kubernetes:core/v1:PersistentVolumeClaim":                   {"spec.accessModes", "spec.selector", "spec.storageClassName", "spec.volumeName"},
	"kubernetes:apps/v1:Deployment":                              {"spec.selector"},
	"kubernetes:apps/v1:DaemonSet":                               {"spec.selector"},
	"kubernetes:apps/v1:StatefulSet":                             {"spec.selector", "spec.serviceName", "spec.volumeClaimTemplates"},
	"kubernetes:core/v1:Service":                                 {"spec.clusterIP"},
	"kubernetes:core/v1:Secret":                                  {"type"},
	"kubernetes:rbac.authorization.k8s.io/v1:RoleBinding":        {"roleRef"},
	"kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": {"roleRef"},
}

// ReplacePaths are the input paths of r whose change replaces it:
//
//   - the replaceOnChanges the program (or its SDK) registered: the
//     pulumi-command SDK registers "triggers[*]" for every Command, so a
//     changed trigger replaces the command (its delete, then create, run);
//   - for Kubernetes objects, metadata.name and metadata.namespace and the
//     kind's kubernetesForceNew fields; for Helm releases name and namespace;
//   - for a Kubernetes provider, its kubeconfig's clusters (the provider
//     replaces itself when the active cluster changes: a new API server or
//     CA means another cluster), context and cluster.
//
// A path "a.b" names a nested object field; a trailing "[*]" means the
// whole array.
func ReplacePaths(r Resource) []string {
	paths := []string{}
	for _, p := range r.ReplaceOnChanges {
		paths = append(paths, strings.TrimSuffix(p, "[*]"))
	}
	switch {
	case r.Type == "pulumi:providers:kubernetes":
		paths = append(paths, "kubeconfig.clusters", "context", "cluster")
	case strings.HasPrefix(r.Type, "kubernetes:helm.sh/"):
		paths = append(paths, "name", "namespace")
	case strings.HasPrefix(r.Type, "kubernetes:") && r.Custom:
		paths = append(paths, "metadata.name", "metadata.namespace")
		paths = append(paths, kubernetesForceNew[r.Type]...)
	}
	return paths
}

// ReplaceKey is a canonical rendering of r's values at its ReplacePaths: two
// versions of a resource with different keys mean a replacement.
func ReplaceKey(r Resource) string { return replaceKey(r, nil) }

// replaceKey is ReplaceKey without the paths under an ignored input: the
// engine applies ignoreChanges before it diffs, so an ignored trigger
// replaces nothing.
func replaceKey(r Resource, ignore []string) string {
	var parts []string
next:
	for _, p := range ReplacePaths(r) {
		for _, k := range ignore {
			if p == k || strings.HasPrefix(p, k+".") || strings.HasPrefix(p, k+"[") {
				continue next
			}
		}
		parts = append(parts, p+"="+canonical(valueAt(r.Inputs, p)))
	}
	return strings.Join(parts, "\n")
}

// valueAt returns the value at a dotted path, looking through secrets; a
// string that is a kubeconfig is looked into as YAML ("kubeconfig.clusters").
func valueAt(pm resource.PropertyMap, path string) any {
	var cur any = plain(resource.NewObjectProperty(pm))
	for _, part := range strings.Split(path, ".") {
		if s, ok := cur.(string); ok {
			var doc map[string]any
			if yaml.Unmarshal([]byte(s), &doc) != nil {
				return nil
			}
			cur = doc
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// plain turns a property value into plain Go values, secrets and known
// outputs unwrapped, unknowns as "<unknown>".
func plain(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return plain(v.SecretValue().Element)
	case v.IsOutput():
		if !v.OutputValue().Known {
			return "<unknown>"
		}
		return plain(v.OutputValue().Element)
	case v.IsComputed():
		return "<unknown>"
	case v.IsArray():
		out := []any{}
		for _, e := range v.ArrayValue() {
			out = append(out, plain(e))
		}
		return out
	case v.IsObject():
		out := map[string]any{}
		for k, e := range v.ObjectValue() {
			out[string(k)] = plain(e)
		}
		return out
	case v.IsResourceReference():
		ref := v.ResourceReferenceValue()
		return fmt.Sprintf("ref:%s:%v", ref.URN, plain(ref.ID))
	case v.IsNull():
		return nil
	default:
		return v.V
	}
}

// canonical is a stable text of a value (map keys sorted).
func canonical(v any) string {
	if pv, ok := v.(resource.PropertyValue); ok {
		v = plain(pv)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

// WithReplacementIDs gives every resource an ID derived from its name and
// its values at ReplacePaths, so that a resource gets a new ID exactly when
// it would be replaced; and hands that ID to the State function as args.ID
// (CommandOutputs then prints a new domain UUID, a new cluster CA, ... for a
// replaced command). Use it for runs that Diff compares.
func WithReplacementIDs() func(*Recorder) { return func(r *Recorder) { r.replacementIDs = true } }

// replacementID is the ID of a resource under WithReplacementIDs.
func replacementID(args pulumi.MockResourceArgs, replaceOnChanges, ignoreChanges []string) string {
	key := replaceKey(Resource{Type: args.TypeToken, Custom: args.Custom, Inputs: args.Inputs, ReplaceOnChanges: replaceOnChanges}, ignoreChanges)
	h := fnv.New64a()
	h.Write([]byte(key))
	return fmt.Sprintf("%s-%016x", args.Name, h.Sum64())
}
