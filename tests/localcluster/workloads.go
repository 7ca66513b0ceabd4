package localcluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// DeploymentStatus is the part of a Deployment tests look at.
type DeploymentStatus struct {
	Name string
	// Replicas is spec.replicas (what the HPA or the user asked for).
	Replicas int
	// Available is status.availableReplicas; Updated is status.updatedReplicas.
	Available, Updated int
	// AvailableCondition is the status of the Available condition ("True", ...).
	AvailableCondition string
}

// Ready reports whether the Deployment is Available with all replicas up to date.
func (d DeploymentStatus) Ready() bool {
	return d.AvailableCondition == "True" && d.Available == d.Replicas && d.Updated == d.Replicas
}

type deploymentJSON struct {
	Metadata struct{ Name string }
	Spec     struct{ Replicas *int }
	Status   struct {
		AvailableReplicas, UpdatedReplicas int
		Conditions                         []struct{ Type, Status string }
	}
}

func (d deploymentJSON) status() DeploymentStatus {
	s := DeploymentStatus{Name: d.Metadata.Name, Replicas: 1, Available: d.Status.AvailableReplicas, Updated: d.Status.UpdatedReplicas}
	if d.Spec.Replicas != nil {
		s.Replicas = *d.Spec.Replicas
	}
	for _, c := range d.Status.Conditions {
		if c.Type == "Available" {
			s.AvailableCondition = c.Status
		}
	}
	return s
}

// Deployment returns the status of one Deployment.
func (c *Cluster) Deployment(ctx context.Context, namespace, name string) (DeploymentStatus, error) {
	var d deploymentJSON
	if err := c.Get(ctx, "/apis/apps/v1/namespaces/"+namespace+"/deployments/"+name, &d); err != nil {
		return DeploymentStatus{}, fmt.Errorf("deployment %s/%s: %w", namespace, name, err)
	}
	return d.status(), nil
}

// Deployments returns the status of every Deployment in namespace, by name.
func (c *Cluster) Deployments(ctx context.Context, namespace string) ([]DeploymentStatus, error) {
	var list struct{ Items []deploymentJSON }
	if err := c.Get(ctx, "/apis/apps/v1/namespaces/"+namespace+"/deployments", &list); err != nil {
		return nil, fmt.Errorf("deployments in %s: %w", namespace, err)
	}
	out := make([]DeploymentStatus, 0, len(list.Items))
	for _, d := range list.Items {
		out = append(out, d.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WaitDeploymentsReady polls until namespace has at least one Deployment and
// every one is Ready (Available, all replicas up to date), or ctx ends; the
// error then names the Deployments that are not.
func (c *Cluster) WaitDeploymentsReady(ctx context.Context, namespace string) error {
	return Poll(ctx, 250*time.Millisecond, "every Deployment in "+namespace+" Available", func(ctx context.Context) (bool, string, error) {
		ds, err := c.Deployments(ctx, namespace)
		if err != nil {
			return false, err.Error(), nil
		}
		if len(ds) == 0 {
			return false, "no Deployments", nil
		}
		var pending []string
		for _, d := range ds {
			if !d.Ready() {
				pending = append(pending, fmt.Sprintf("%s (available %d/%d, updated %d, Available=%q)",
					d.Name, d.Available, d.Replicas, d.Updated, d.AvailableCondition))
			}
		}
		return len(pending) == 0, strings.Join(pending, "; "), nil
	})
}
