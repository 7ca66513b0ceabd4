package storage

import (
	"fmt"

	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	helmv4 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v4"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The ways the layer installs a third-party chart (ChartsOutput's kind).
const (
	// ChartsAsCharts is a helm.sh/v4:Chart: the program renders the chart
	// and every object is a resource of its own (the default).
	ChartsAsCharts = "helm.sh/v4:Chart"
	// ChartsAsReleases is a helm.sh/v3:Release, one resource whose objects
	// helm installs and tracks (config.Storage.HelmReleases). A stack
	// deployed before ChartsOutput existed had these.
	ChartsAsReleases = "helm.sh/v3:Release"
)

// ChartsOutput is the stack output that records how the charts were
// installed ({kind, releases}), so that the next `up` knows which Releases
// are to be adopted (Args.Prior).
const ChartsOutput = "storageCharts"

// PriorCharts is what the stack's previous deployment says of its charts.
type PriorCharts struct {
	// Kind is ChartsAsCharts, ChartsAsReleases, or "" for a stack never
	// deployed.
	Kind string
	// Releases are the IDs (namespace/name) of its Releases. Nil with Kind
	// ChartsAsReleases means unknown (a stack deployed before ChartsOutput):
	// every enabled chart is taken to have one.
	Releases []string
}

// PriorChartsFrom reads ChartsOutput's value from the previous deployment's
// outputs (nil: none). deployed says whether there was a previous
// deployment at all (any output): one without ChartsOutput is a stack
// deployed before it, whose charts were Releases.
func PriorChartsFrom(value any, deployed bool) (PriorCharts, error) {
	if value == nil {
		if deployed {
			return PriorCharts{Kind: ChartsAsReleases}, nil
		}
		return PriorCharts{}, nil
	}
	m, ok := value.(map[string]any)
	if !ok {
		return PriorCharts{}, fmt.Errorf("stack output %s: want a map, got %T", ChartsOutput, value)
	}
	p := PriorCharts{}
	p.Kind, _ = m["kind"].(string)
	if p.Kind != ChartsAsCharts && p.Kind != ChartsAsReleases {
		return PriorCharts{}, fmt.Errorf("stack output %s: kind %q: want %s or %s", ChartsOutput, m["kind"], ChartsAsCharts, ChartsAsReleases)
	}
	rs, _ := m["releases"].([]any)
	p.Releases = []string{}
	for _, r := range rs {
		if s, ok := r.(string); ok {
			p.Releases = append(p.Releases, s)
		}
	}
	return p, nil
}

// had says whether the previous deployment had the Release id.
func (p PriorCharts) had(id string) bool {
	if p.Kind != ChartsAsReleases {
		return false
	}
	if p.Releases == nil {
		return true
	}
	for _, r := range p.Releases {
		if r == id {
			return true
		}
	}
	return false
}

// chartSpec is one third-party chart of the layer.
type chartSpec struct {
	// resource is the Pulumi resource name (storage-rook-operator), the same
	// for the Chart and the Release, so a Release is read under its URN.
	resource string
	// release is the helm release name, namespace its namespace.
	release, namespace string
	// chart is the mirrored .tgz, version its pinned version.
	chart, version string
	// skipCrds leaves the chart's crds/ out (the layer applies the CRDs).
	skipCrds bool
	values   pulumi.Map
}

// operator is an installed chart, as what depends on it sees it.
type operator struct {
	res pulumi.Resource
	// objects are a Chart's objects: depending on them (not only on the
	// component) records each one in the dependent's state, so `destroy`
	// and removals delete the dependent first, while the operator runs.
	objects pulumi.ResourceArrayOutput
}

// after are the options of a resource that depends on op and deps.
func (b *builder) after(op operator, deps ...pulumi.Resource) []pulumi.ResourceOption {
	o := b.opts(append(deps, op.res)...)
	if op.objects != (pulumi.ResourceArrayOutput{}) {
		o = append(o, pulumi.DependsOnInputs(op.objects))
	}
	return o
}

// chart installs s as a helm.sh/v4:Chart, or a helm.sh/v3:Release with
// config.Storage.HelmReleases. When the stack's previous `up` installed it as
// a Release (Args.Prior) and it is now a Chart, the Release is read
// under its own URN and ID instead of being left out of the program: the
// engine then relinquishes it (drops it from the state at the next `up`)
// rather than deleting it, so `helm uninstall` never runs, while the Chart
// adopts the release's objects in place (server-side apply of the same
// manifests). Nothing is deleted or recreated.
func (b *builder) chart(s chartSpec, deps ...pulumi.Resource) (operator, error) {
	if b.args.Storage.HelmReleases {
		r, err := helmv3.NewRelease(b.ctx, s.resource, &helmv3.ReleaseArgs{
			Name: pulumi.String(s.release), Chart: pulumi.String(s.chart), Version: pulumi.String(s.version),
			Namespace: pulumi.String(s.namespace), SkipCrds: pulumi.Bool(s.skipCrds), Values: s.values,
		}, b.opts(deps...)...)
		if err != nil {
			return operator{}, fmt.Errorf("release %s: %w", s.release, err)
		}
		b.releases = append(b.releases, pulumi.String(s.namespace+"/"+s.release))
		return operator{res: r}, nil
	}
	c, err := helmv4.NewChart(b.ctx, s.resource, &helmv4.ChartArgs{
		Name: pulumi.String(s.release), Chart: pulumi.String(s.chart), Version: pulumi.String(s.version),
		Namespace: pulumi.String(s.namespace), SkipCrds: pulumi.Bool(s.skipCrds), Values: s.values,
	}, b.opts(deps...)...)
	if err != nil {
		return operator{}, fmt.Errorf("chart %s: %w", s.release, err)
	}
	if id := s.namespace + "/" + s.release; b.args.Prior.had(id) {
		if _, err := helmv3.GetRelease(b.ctx, s.resource, pulumi.ID(id), nil, b.child...); err != nil {
			return operator{}, fmt.Errorf("adopting release %s: %w", s.release, err)
		}
	}
	objects := c.Resources.ApplyT(func(rs []any) []pulumi.Resource {
		out := make([]pulumi.Resource, 0, len(rs))
		for _, r := range rs {
			if res, ok := r.(pulumi.Resource); ok {
				out = append(out, res)
			}
		}
		return out
	}).(pulumi.ResourceArrayOutput)
	return operator{res: c, objects: objects}, nil
}
