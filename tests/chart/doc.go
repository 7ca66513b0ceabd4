// Package chart holds the integration tests of charts/simulator and of the
// workloads layer that installs it: the chart rendered with the exact values
// the Pulumi program computes for each committed stack, its schema rejecting
// bad values, and, on a real local control plane (tests/localcluster), the
// rendered objects applied, every Deployment Available and the HPAs scaling
// workers on simulated CPU within their partition limits. It also applies
// every Kubernetes object the program registers in existing mode.
//
// The package has no code of its own beyond this comment; run it with
//
//	go test ./tests/chart/
//
// after `make tools` (without the binaries the tests skip, or fail when CI=true).
package chart
