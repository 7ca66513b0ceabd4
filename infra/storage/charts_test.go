package storage_test

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/simlab/simlab/infra/storage"
)

// charts returns the release names of the recorded resources of typ,
// registered ones (read false) or read ones (read true, by ID).
func charts(res *result, typ string, read bool) []string {
	var out []string
	for _, r := range res.rec.OfType(typ) {
		switch {
		case read && r.ReadID != "":
			out = append(out, r.ReadID)
		case !read && r.ReadID == "":
			out = append(out, r.Inputs["name"].StringValue())
		}
	}
	sort.Strings(out)
	return out
}

var allCharts = []string{"csi-driver-nfs", "rook-ceph", "strimzi"}
var allReleaseIDs = func() []string {
	ids := []string{storage.KafkaNamespace + "/strimzi", storage.NFSNamespace + "/csi-driver-nfs", storage.RookNamespace + "/rook-ceph"}
	sort.Strings(ids)
	return ids
}()

// TestMockChartsAreV4ChartsUnlessHelmReleases: the third-party charts are
// helm.sh/v4 Charts by default and helm.sh/v3 Releases with
// storage.helmReleases, under the same resource names (so a Release can be
// read under its URN when the Charts adopt it).
func TestMockChartsAreV4ChartsUnlessHelmReleases(t *testing.T) {
	a := baseArgs(3)
	a.Storage.NFS.Server = ""
	res := run(t, a)
	if got := charts(res, tChart, false); !reflect.DeepEqual(got, allCharts) {
		t.Errorf("Charts %v, want %v", got, allCharts)
	}
	if n := len(res.rec.OfType(tRelease)); n != 0 {
		t.Errorf("%d Releases on a fresh stack, want none", n)
	}

	a.Storage.HelmReleases = true
	rel := run(t, a)
	if got := charts(rel, tRelease, false); !reflect.DeepEqual(got, allCharts) {
		t.Errorf("with storage.helmReleases: Releases %v, want %v", got, allCharts)
	}
	if n := len(rel.rec.OfType(tChart)); n != 0 {
		t.Errorf("with storage.helmReleases: %d Charts, want none", n)
	}
	names := func(r *result, typ string) (out []string) {
		for _, x := range r.rec.OfType(typ) {
			out = append(out, x.Name)
		}
		sort.Strings(out)
		return out
	}
	if c, r := names(res, tChart), names(rel, tRelease); !reflect.DeepEqual(c, r) {
		t.Errorf("Chart resource names %v differ from the Release resource names %v", c, r)
	}
}

// TestMockReleasesAreAdoptedByCharts: a stack whose previous deployment had
// Releases reads each one it had (relinquishing it: no helm uninstall) while
// the Charts take its objects; one it did not have is not read.
func TestMockReleasesAreAdoptedByCharts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		prior storage.PriorCharts
		reads []string
	}{
		{"never deployed", storage.PriorCharts{}, nil},
		{"charts before", storage.PriorCharts{Kind: storage.ChartsAsCharts, Releases: []string{}}, nil},
		{"releases, deployed before the output", storage.PriorCharts{Kind: storage.ChartsAsReleases}, allReleaseIDs},
		{"releases, Kafka's only", storage.PriorCharts{Kind: storage.ChartsAsReleases, Releases: []string{storage.KafkaNamespace + "/strimzi"}}, []string{storage.KafkaNamespace + "/strimzi"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := baseArgs(3)
			a.Storage.NFS.Server = ""
			a.Prior = tc.prior
			res := run(t, a)
			if got := charts(res, tRelease, true); !reflect.DeepEqual(got, tc.reads) {
				t.Errorf("Releases read %v, want %v", got, tc.reads)
			}
			if got := charts(res, tChart, false); !reflect.DeepEqual(got, allCharts) {
				t.Errorf("Charts %v, want %v", got, allCharts)
			}
			for _, r := range res.rec.OfType(tRelease) {
				if r.ReadID == "" {
					t.Errorf("Release %s registered (managed), want only reads", r.Name)
				}
			}
		})
	}
}

// TestMockBackToReleasesIsRefused: helm cannot adopt a Chart's objects, so
// storage.helmReleases on a stack whose charts are Charts fails before any
// resource is registered, naming the key.
func TestMockBackToReleasesIsRefused(t *testing.T) {
	a := baseArgs(3)
	a.Storage.HelmReleases = true
	a.Prior = storage.PriorCharts{Kind: storage.ChartsAsCharts, Releases: []string{}}
	res, err := runErr(a)
	if err == nil || !strings.Contains(err.Error(), "simlab:storage.helmReleases") {
		t.Fatalf("err = %v, want a refusal naming simlab:storage.helmReleases", err)
	}
	if res != nil && res.rec != nil && len(res.rec.Resources()) != 0 {
		t.Errorf("%d resources registered before the refusal", len(res.rec.Resources()))
	}
	// From Releases to Releases is the same layout: allowed.
	a.Prior = storage.PriorCharts{Kind: storage.ChartsAsReleases}
	if _, err := runErr(a); err != nil {
		t.Errorf("Releases kept as Releases: %v", err)
	}
}

func TestPriorChartsFrom(t *testing.T) {
	for _, tc := range []struct {
		name     string
		value    any
		deployed bool
		want     storage.PriorCharts
		err      string
	}{
		{"never deployed", nil, false, storage.PriorCharts{}, ""},
		{"deployed before the output", nil, true, storage.PriorCharts{Kind: storage.ChartsAsReleases}, ""},
		{"charts", map[string]any{"kind": storage.ChartsAsCharts, "releases": []any{}}, true, storage.PriorCharts{Kind: storage.ChartsAsCharts, Releases: []string{}}, ""},
		{"releases", map[string]any{"kind": storage.ChartsAsReleases, "releases": []any{"kafka/strimzi"}}, true, storage.PriorCharts{Kind: storage.ChartsAsReleases, Releases: []string{"kafka/strimzi"}}, ""},
		{"unknown kind", map[string]any{"kind": "helm.sh/v5:Thing"}, true, storage.PriorCharts{}, `kind "helm.sh/v5:Thing"`},
		{"not a map", "helm.sh/v4:Chart", true, storage.PriorCharts{}, "want a map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := storage.PriorChartsFrom(tc.value, tc.deployed)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), storage.ChartsOutput) {
					t.Fatalf("err = %v, want one naming %s and containing %q", err, storage.ChartsOutput, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
