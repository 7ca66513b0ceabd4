# Pinned versions of the test tools that are built with `go install pkg@version`
# (their own module graphs; they cannot share tests/tools/go.mod). The
# Kubernetes binaries and etcd are pinned in tests/tools/go.mod instead.
# tests/localcluster reads this file too: keep the `NAME := value` form.
KWOK_VERSION := v0.8.0
KWOK_PKG := sigs.k8s.io/kwok/cmd/kwok
METRICS_SERVER_VERSION := v0.9.0
METRICS_SERVER_PKG := sigs.k8s.io/metrics-server/cmd/metrics-server
HELM_VERSION := v3.22.0
HELM_PKG := helm.sh/helm/v3/cmd/helm
