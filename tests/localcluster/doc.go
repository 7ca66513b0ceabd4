// Package localcluster starts and stops a local Kubernetes control plane for
// tests and for trying simlab's `existing` mode: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok (simulated nodes and pods) and
// metrics-server, all real binaries built by `make tools`, all listening on
// 127.0.0.1 on ports picked at runtime, with fresh certificates per run and
// state in one directory.
//
// It owns the process lifecycle (exactly the PIDs it started), the per-run PKI,
// the kwok stages that make simulated nodes Ready and pods Running, and the
// wiring that lets metrics-server report simulated CPU (see CPUAnnotation). It
// uses only the standard library: it talks to the API server over HTTPS and
// runs kubectl for everything else. docs/LOCAL-CLUSTER.md describes its use.
package localcluster
