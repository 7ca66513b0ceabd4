package storage

import (
	"fmt"
	"strconv"

	admissionv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/admissionregistration/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The API server refuses a Ceph shrink in every provider mode: two
// ValidatingAdmissionPolicies (CEL, admissionregistration.k8s.io/v1,
// Kubernetes ≥ 1.30), bound to Rook's namespace, deny an update of a
// CephBlockPool that lowers spec.replicated.size or moves spec.failureDomain
// from host to osd, and of the CephCluster that lowers spec.mon.count,
// unless the new object carries AllowShrinkAnnotation: "true" (the program
// sets it while simlab:storage.ceph.allowShrink is true). The guard
// (storage-ceph-guard) refuses the same on libvirt and metal before
// anything else changes; in existing mode, which runs no pulumi-command,
// the policies are the refusal: `pulumi up` fails on the first Ceph object
// it would shrink, with the policy's message naming the key, and the live
// objects keep their sizing. A shrink by hand (kubectl edit) is refused
// the same way.

// AllowShrinkAnnotation on a CephCluster or CephBlockPool lets an update
// shrink it past the no-shrink policies.
const AllowShrinkAnnotation = "simlab.io/allow-shrink"

// shrinkRefusal ends every no-shrink policy's message.
const shrinkRefusal = ": refused by the simlab no-shrink policy; set simlab:storage.ceph.allowShrink: true to do it anyway " +
	"(the OSDs of a removed worker are drained first), then remove it (docs/DAY2.md)"

// noShrinkPolicy is one policy: its name, the resource it watches and its
// validations (CEL expression, message expression).
type noShrinkPolicy struct {
	name, resource string
	rules          [][2]string
}

// noShrinkPolicies are the policies Ceph's sizing is checked against.
var noShrinkPolicies = []noShrinkPolicy{
	{"simlab-ceph-pool-no-shrink", "cephblockpools", [][2]string{
		{"!has(oldObject.spec.replicated) || (has(object.spec.replicated) && object.spec.replicated.size >= oldObject.spec.replicated.size)",
			"'CephBlockPool ' + object.metadata.name + ': replicated.size ' + string(oldObject.spec.replicated.size) + ' -> ' + " +
				"(has(object.spec.replicated) ? string(object.spec.replicated.size) : 'none') + " + cel(" (fewer copies of every object)"+shrinkRefusal)},
		{"!has(oldObject.spec.failureDomain) || oldObject.spec.failureDomain != 'host' || (has(object.spec.failureDomain) && object.spec.failureDomain == 'host')",
			"'CephBlockPool ' + object.metadata.name + ': failureDomain host -> ' + " +
				"(has(object.spec.failureDomain) ? object.spec.failureDomain : 'none') + " + cel(" (copies on one host)"+shrinkRefusal)},
	}},
	{"simlab-ceph-cluster-no-shrink", "cephclusters", [][2]string{
		{"!has(oldObject.spec.mon) || !has(oldObject.spec.mon.count) || (has(object.spec.mon) && has(object.spec.mon.count) && object.spec.mon.count >= oldObject.spec.mon.count)",
			"'CephCluster ' + object.metadata.name + ': mon.count ' + string(oldObject.spec.mon.count) + ' -> ' + " +
				"(has(object.spec.mon) && has(object.spec.mon.count) ? string(object.spec.mon.count) : 'none') + " + cel(" (fewer monitors)"+shrinkRefusal)},
	}},
}

// cel is s as a CEL string literal.
func cel(s string) string { return strconv.Quote(s) }

// notAcknowledged is the policies' match condition: the new object does
// not carry AllowShrinkAnnotation: "true".
const notAcknowledged = "!(has(object.metadata.annotations) && '" + AllowShrinkAnnotation + "' in object.metadata.annotations && " +
	"object.metadata.annotations['" + AllowShrinkAnnotation + "'] == 'true')"

// shrinkPolicies registers the no-shrink policies and their bindings; the
// CephCluster and the pools depend on what it returns.
func (b *builder) shrinkPolicies(deps ...pulumi.Resource) ([]pulumi.Resource, error) {
	var out []pulumi.Resource
	for _, p := range noShrinkPolicies {
		var validations admissionv1.ValidationArray
		for _, r := range p.rules {
			validations = append(validations, admissionv1.ValidationArgs{
				Expression: pulumi.String(r[0]), MessageExpression: pulumi.String(r[1]),
				Message: pulumi.String("a Ceph sizing shrink" + shrinkRefusal), Reason: pulumi.String("Forbidden"),
			})
		}
		policy, err := admissionv1.NewValidatingAdmissionPolicy(b.ctx, b.name+"-"+p.name, &admissionv1.ValidatingAdmissionPolicyArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(p.name), Labels: labels("ceph")},
			Spec: &admissionv1.ValidatingAdmissionPolicySpecArgs{
				FailurePolicy: pulumi.String("Fail"),
				MatchConstraints: &admissionv1.MatchResourcesArgs{
					ResourceRules: admissionv1.NamedRuleWithOperationsArray{admissionv1.NamedRuleWithOperationsArgs{
						ApiGroups: pulumi.StringArray{pulumi.String("ceph.rook.io")}, ApiVersions: pulumi.StringArray{pulumi.String("*")},
						Operations: pulumi.StringArray{pulumi.String("UPDATE")}, Resources: pulumi.StringArray{pulumi.String(p.resource)},
					}},
				},
				MatchConditions: admissionv1.MatchConditionArray{admissionv1.MatchConditionArgs{
					Name: pulumi.String("not-acknowledged"), Expression: pulumi.String(notAcknowledged),
				}},
				Validations: validations,
			},
		}, b.opts(deps...)...)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", p.name, err)
		}
		binding, err := admissionv1.NewValidatingAdmissionPolicyBinding(b.ctx, b.name+"-"+p.name+"-binding", &admissionv1.ValidatingAdmissionPolicyBindingArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(p.name), Labels: labels("ceph")},
			Spec: &admissionv1.ValidatingAdmissionPolicyBindingSpecArgs{
				PolicyName:        pulumi.String(p.name),
				ValidationActions: pulumi.StringArray{pulumi.String("Deny")},
				MatchResources: &admissionv1.MatchResourcesArgs{
					NamespaceSelector: &metav1.LabelSelectorArgs{
						MatchLabels: pulumi.StringMap{"kubernetes.io/metadata.name": pulumi.String(RookNamespace)},
					},
				},
			},
		}, b.opts(policy)...)
		if err != nil {
			return nil, fmt.Errorf("policy binding %s: %w", p.name, err)
		}
		out = append(out, binding)
	}
	return out, nil
}

// shrinkAnnotations is what the CephCluster and the pools carry while
// simlab:storage.ceph.allowShrink is true.
func (b *builder) shrinkAnnotations(m pulumi.StringMap) pulumi.StringMap {
	if !b.args.Storage.Ceph.AllowShrink {
		return m
	}
	if m == nil {
		m = pulumi.StringMap{}
	}
	m[AllowShrinkAnnotation] = pulumi.String("true")
	return m
}
