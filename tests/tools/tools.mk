# Rules that build the local control plane's binaries into $(TOOLS_BIN) as
# <name>-<version>, skipping what exists. Included from the Makefile's
# "local control plane" section; run from the repository root.
include tests/tools/versions.mk

TOOLS_DIR := tests/tools
TOOLS_BIN ?= $(CACHE_DIR)/bin
KUBE_VERSION := $(shell awk '{for(i=1;i<NF;i++) if($$i=="k8s.io/kubernetes"){print $$(i+1); exit}}' $(TOOLS_DIR)/go.mod)
ETCD_VERSION := $(shell awk '{for(i=1;i<NF;i++) if($$i=="go.etcd.io/etcd/server/v3"){print $$(i+1); exit}}' $(TOOLS_DIR)/go.mod)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_BINS := kube-apiserver kube-controller-manager kube-scheduler kubeadm kubectl
# The version variables the servers and kubectl report (else v0.0.0).
KUBE_LDFLAGS := -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
  -X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=$(KUBE_MINOR) \
  -X $(p).gitCommit=0000000000000000000000000000000000000000 -X $(p).gitTreeState=clean \
  -X $(p).buildDate=2026-01-01T00:00:00Z)

TOOLS_OUT := $(foreach b,$(KUBE_BINS),$(TOOLS_BIN)/$(b)-$(KUBE_VERSION)) \
  $(TOOLS_BIN)/etcd-$(ETCD_VERSION) $(TOOLS_BIN)/kwok-$(KWOK_VERSION) \
  $(TOOLS_BIN)/metrics-server-$(METRICS_SERVER_VERSION) $(TOOLS_BIN)/helm-$(HELM_VERSION)

# One `go build` for the Kubernetes binaries and etcd so they share compiled
# packages (a grouped target: one recipe run makes all of them).
KUBE_OUT := $(foreach b,$(KUBE_BINS),$(TOOLS_BIN)/$(b)-$(KUBE_VERSION)) $(TOOLS_BIN)/etcd-$(ETCD_VERSION)
$(KUBE_OUT) &:
	@mkdir -p $(TOOLS_BIN)/.stage-$(KUBE_VERSION)
	@echo "tools: building $(KUBE_BINS) $(KUBE_VERSION) and etcd $(ETCD_VERSION) (cold: ~15 CPU-minutes)"
	cd $(TOOLS_DIR) && $(GO) build -buildvcs=false -trimpath -ldflags='$(KUBE_LDFLAGS)' -o $(TOOLS_BIN)/.stage-$(KUBE_VERSION)/ \
	  $(addprefix k8s.io/kubernetes/cmd/,$(KUBE_BINS)) ./etcd
	@for b in $(KUBE_BINS); do mv -f $(TOOLS_BIN)/.stage-$(KUBE_VERSION)/$$b $(TOOLS_BIN)/$$b-$(KUBE_VERSION); done
	@mv -f $(TOOLS_BIN)/.stage-$(KUBE_VERSION)/etcd $(TOOLS_BIN)/etcd-$(ETCD_VERSION)
	@rmdir $(TOOLS_BIN)/.stage-$(KUBE_VERSION)

# go install PKG@VERSION into a scratch GOBIN, then rename to <name>-<version>;
# $(4) adds -ldflags.
define go-install-tool
	@echo "tools: building $(notdir $(1)) $(2)"
	@mkdir -p $(TOOLS_BIN)/.gobin-$(notdir $(1))
	GOBIN=$(TOOLS_BIN)/.gobin-$(notdir $(1)) $(GO) install -trimpath -ldflags='-s -w $(4)' $(1)@$(2)
	@mv -f $(TOOLS_BIN)/.gobin-$(notdir $(1))/$(notdir $(1)) $(3)
	@rmdir $(TOOLS_BIN)/.gobin-$(notdir $(1))
endef

$(TOOLS_BIN)/kwok-$(KWOK_VERSION):
	$(call go-install-tool,$(KWOK_PKG),$(KWOK_VERSION),$@)

$(TOOLS_BIN)/metrics-server-$(METRICS_SERVER_VERSION):
	$(call go-install-tool,$(METRICS_SERVER_PKG),$(METRICS_SERVER_VERSION),$@)

# What helm's own Makefile sets: its version, and the Kubernetes version that
# `helm template`/`helm lint` assume (else v1.20); ours is the cluster's.
HELM_LDFLAGS := -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
  -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
  $(foreach p,helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil,\
  -X $(p).k8sVersionMajor=1 -X $(p).k8sVersionMinor=$(KUBE_MINOR))

$(TOOLS_BIN)/helm-$(HELM_VERSION):
	$(call go-install-tool,$(HELM_PKG),$(HELM_VERSION),$@,$(HELM_LDFLAGS))

# --- the real Pulumi engine (tests/engine): CLI and Kubernetes provider -----
# Each is its own module (tests/tools/pulumi, tests/tools/pulumi-kubernetes;
# go.sum committed, checksums verified). Heavy: the CLI ~8 CPU-minutes and
# 2.2 GB, the provider ~25 CPU-minutes and ~5 GiB. Make runs one recipe at a
# time unless -j is given; never build these next to another heavy build.
PULUMI_VERSION := $(shell awk '$$1=="github.com/pulumi/pulumi/pkg/v3"{print $$2; exit}' $(TOOLS_DIR)/pulumi/go.mod)
PULUMI_K8S_VERSION := $(shell awk '$$1=="github.com/pulumi/pulumi-kubernetes/sdk/v4"{print $$2; exit}' $(TOOLS_DIR)/pulumi-kubernetes/go.mod)
PULUMI_K8S_PROVIDER_MOD := github.com/pulumi/pulumi-kubernetes/provider/v4
ENGINE_OUT := $(TOOLS_BIN)/pulumi-$(PULUMI_VERSION) $(TOOLS_BIN)/pulumi-resource-kubernetes-$(PULUMI_K8S_VERSION)

$(TOOLS_BIN)/pulumi-$(PULUMI_VERSION):
	@echo "tools: building pulumi $(PULUMI_VERSION) (cold: ~8 CPU-minutes)"
	@mkdir -p $(TOOLS_BIN)
	cd $(TOOLS_DIR)/pulumi && $(GO) build -trimpath \
	  -ldflags='-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$(PULUMI_VERSION)' \
	  -o $@.tmp github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
	@mv -f $@.tmp $@

# The provider's module zip lacks the two files its command embeds (the
# module's own generate step writes them); the module cache is read-only and
# -overlay may not replace files there, so the build copies the verified
# module source (go mod download checks it against go.sum) into a scratch
# directory, writes the files with schemagen, and builds the command with our
# module's requirements (-modfile) replacing the provider by that copy.
PULUMI_K8S_BUILD := $(CACHE_DIR)/build/pulumi-kubernetes-$(PULUMI_K8S_VERSION)
$(TOOLS_BIN)/pulumi-resource-kubernetes-$(PULUMI_K8S_VERSION):
	@echo "tools: building pulumi-resource-kubernetes $(PULUMI_K8S_VERSION) (cold: ~25 CPU-minutes, ~5 GiB)"
	@rm -rf $(PULUMI_K8S_BUILD) && mkdir -p $(PULUMI_K8S_BUILD) $(TOOLS_BIN)
	cd $(TOOLS_DIR)/pulumi-kubernetes && $(GO) mod download $(PULUMI_K8S_PROVIDER_MOD) && \
	  src=$$($(GO) list -m -f '{{.Dir}}' $(PULUMI_K8S_PROVIDER_MOD)) && \
	  cp -r $$src $(PULUMI_K8S_BUILD)/provider && chmod -R u+w $(PULUMI_K8S_BUILD)/provider && \
	  $(GO) run ./schemagen -src $$src/cmd/pulumi-resource-kubernetes \
	    -out $(PULUMI_K8S_BUILD)/provider/cmd/pulumi-resource-kubernetes -version $(PULUMI_K8S_VERSION:v%=%) && \
	  cp go.mod $(PULUMI_K8S_BUILD)/build.mod && cp go.sum $(PULUMI_K8S_BUILD)/build.sum && \
	  $(GO) mod edit -modfile=$(PULUMI_K8S_BUILD)/build.mod -replace $(PULUMI_K8S_PROVIDER_MOD)=$(PULUMI_K8S_BUILD)/provider && \
	  $(GO) build -modfile=$(PULUMI_K8S_BUILD)/build.mod -trimpath \
	    -ldflags='-s -w -X $(PULUMI_K8S_PROVIDER_MOD)/pkg/version.Version=$(PULUMI_K8S_VERSION:v%=%)' \
	    -o $@.tmp $(PULUMI_K8S_PROVIDER_MOD)/cmd/pulumi-resource-kubernetes
	@mv -f $@.tmp $@
	@rm -rf $(PULUMI_K8S_BUILD)

# --- the rehearsal's node binaries (tests/rehearse): kubelet and kube-proxy --
# Same module and flags as the control plane's, built only for `make rehearse`
# (most packages are shared with the build above: ~1 CPU-minute warm).
NODE_BINS := kubelet kube-proxy
NODE_OUT := $(foreach b,$(NODE_BINS),$(TOOLS_BIN)/$(b)-$(KUBE_VERSION))
$(NODE_OUT) &:
	@mkdir -p $(TOOLS_BIN)/.stage-node-$(KUBE_VERSION)
	@echo "tools: building $(NODE_BINS) $(KUBE_VERSION)"
	cd $(TOOLS_DIR) && $(GO) build -buildvcs=false -trimpath -ldflags='$(KUBE_LDFLAGS)' -o $(TOOLS_BIN)/.stage-node-$(KUBE_VERSION)/ \
	  $(addprefix k8s.io/kubernetes/cmd/,$(NODE_BINS))
	@for b in $(NODE_BINS); do mv -f $(TOOLS_BIN)/.stage-node-$(KUBE_VERSION)/$$b $(TOOLS_BIN)/$$b-$(KUBE_VERSION); done
	@rmdir $(TOOLS_BIN)/.stage-node-$(KUBE_VERSION)
