package pulumimock_test

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/pulumimock"
)

// program registers a "machine" whose trigger is size, a "job" keyed on the
// machine's ID, a "file" with content (ignored when ignore; the machine's
// trigger when ignoreTrigger), and a
// Kubernetes ConfigMap named name.
func program(size int, content, name string, ignore bool, extra bool, ignoreTrigger ...bool) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		var machine, job, file, cm, more pulumi.CustomResourceState
		mopts := []pulumi.ResourceOption{pulumi.ReplaceOnChanges([]string{"triggers[*]"})}
		if len(ignoreTrigger) > 0 && ignoreTrigger[0] {
			mopts = append(mopts, pulumi.IgnoreChanges([]string{"triggers"}))
		}
		if err := ctx.RegisterResource("test:index:Machine", "machine", pulumi.Map{
			"triggers": pulumi.Array{pulumi.Int(size)}, "note": pulumi.String("x"),
		}, &machine, mopts...); err != nil {
			return err
		}
		if err := ctx.RegisterResource("test:index:Job", "job", pulumi.Map{
			"triggers": pulumi.Array{machine.ID()},
		}, &job, pulumi.ReplaceOnChanges([]string{"triggers[*]"})); err != nil {
			return err
		}
		opts := []pulumi.ResourceOption{}
		if ignore {
			opts = append(opts, pulumi.IgnoreChanges([]string{"content"}))
		}
		if err := ctx.RegisterResource("test:index:File", "file", pulumi.Map{"content": pulumi.String(content)}, &file, opts...); err != nil {
			return err
		}
		if err := ctx.RegisterResource("kubernetes:core/v1:ConfigMap", "cm", pulumi.Map{
			"metadata": pulumi.Map{"name": pulumi.String(name)}, "data": pulumi.Map{"k": pulumi.String(content)},
		}, &cm); err != nil {
			return err
		}
		if extra {
			return ctx.RegisterResource("test:index:File", "extra", pulumi.Map{}, &more)
		}
		return nil
	}
}

func plan(t *testing.T, old, new pulumi.RunFunc) pulumimock.Plan {
	t.Helper()
	a, err := pulumimock.Run("p", "s", old, pulumimock.WithReplacementIDs())
	if err != nil {
		t.Fatal(err)
	}
	b, err := pulumimock.Run("p", "s", new, pulumimock.WithReplacementIDs())
	if err != nil {
		t.Fatal(err)
	}
	return pulumimock.Diff(a, b)
}

func TestDiffRules(t *testing.T) {
	base := program(1, "a", "cm", false, false)
	cases := []struct {
		name string
		new  pulumi.RunFunc
		want string
	}{
		{"nothing changed", program(1, "a", "cm", false, false), ""},
		{"a trigger replaces, and what takes the new ID", program(2, "a", "cm", false, false),
			"replace  test:index:Job::job\nreplace  test:index:Machine::machine"},
		{"another input updates", program(1, "b", "cm", false, false),
			"update   kubernetes:core/v1:ConfigMap::cm\nupdate   test:index:File::file"},
		{"ignoreChanges is not compared", program(1, "b", "cm", true, false), "update   kubernetes:core/v1:ConfigMap::cm"},
		{"an ignored trigger replaces nothing (nor what takes the ID)", program(2, "a", "cm", false, false, true), ""},
		{"a Kubernetes name replaces", program(1, "a", "other", false, false), "replace  kubernetes:core/v1:ConfigMap::cm"},
		{"added and removed", program(1, "a", "cm", false, true), "create   test:index:File::extra"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old := base
			if strings.HasPrefix(c.name, "an ignored trigger") {
				old = program(1, "a", "cm", false, false, true)
			}
			if got := plan(t, old, c.new).String(); got != c.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
	if got := plan(t, program(1, "a", "cm", false, true), base); got.String() != "delete   test:index:File::extra" ||
		strings.Join(got.Names(pulumimock.OpDelete), ",") != "extra" {
		t.Errorf("removing a resource: %s", got)
	}
}
