# simlab - a load-test lab as code. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO     ?= go
PULUMI ?= pulumi
STACK  ?= dev
# Go-built tool binaries and other caches live here, keyed by version (gitignored).
CACHE_DIR ?= $(CURDIR)/.cache
# A local file backend unless the user points Pulumi elsewhere.
PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
export PULUMI_BACKEND_URL

# Each area below appends to these lists in its own section.
TEST_DEPS      :=
BENCH_TARGETS  :=
GOLDEN_TARGETS :=
DEPS_TARGETS   :=

# --- simulator (simulator/) -------------------------------------------------
SIM_BIN  := $(CACHE_DIR)/bin/simulator
SIM_DEMO := $(CURDIR)/.demo/simulator
BENCH_TARGETS += bench-simulator
.PHONY: simulator demo-simulator bench-simulator test-simulator
simulator: ## build the simulator binary into .cache/bin/simulator
	$(GO) build -o $(SIM_BIN) ./simulator
demo-simulator: simulator ## generate a small dataset and replay it through Kafka (kfake) to the built-in sink
	@rm -rf $(SIM_DEMO) && mkdir -p $(SIM_DEMO)
	@$(SIM_BIN) generate --out $(SIM_DEMO)/dataset --types 2 --sources 20 --records 100 --span 10s
	@$(SIM_BIN) run --dataset $(SIM_DEMO)/dataset --workers 2 --report $(SIM_DEMO)/report.json
bench-simulator: simulator ## simulator benchmarks: throughput, lateness, ceiling, handover, 10k sources
	@ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); $(SIM_BIN) bench
test-simulator: chromium ## the simulator's tests only
	$(GO) test -count=1 ./simulator/...
# The delivery soak (simulator/cli/soak_test.go): worker processes SIGKILLed, SIGTERMed and
# scaled 1 -> 3 -> 1, the SUT stalling, dropping and restarting, for SOAK (60 s of it run in
# `make test`); SOAK_SEED replays a schedule the log names.
SOAK ?= 10m
.PHONY: soak
soak: ## the delivery soak for SOAK (default 10m): per source nothing lost, nothing early, duplicates within reported resends
	SIMULATOR_SOAK=$(SOAK) SIMULATOR_SOAK_SEED=$(SOAK_SEED) $(GO) test -count=1 -v -timeout 0 -run '^TestSoak' ./simulator/cli/
# A campaign on the simulator's processes (broker, controller, 2 workers per type, a sink as the
# SUT) through `simlab campaign run --controller-url`: the report lands in campaigns/local/<run>/.
SIMLAB_BIN    := $(CACHE_DIR)/bin/simlab
CAMPAIGN_DEMO := $(CURDIR)/.demo/campaign
.PHONY: demo-campaign
demo-campaign: simulator ## a campaign on local simulator processes with thresholds; writes campaigns/local/<run>/report.{json,html}
	@$(GO) build -o $(SIMLAB_BIN) ./infra/cmd/simlab
	@rm -rf $(CAMPAIGN_DEMO) && mkdir -p $(CAMPAIGN_DEMO)/datasets
	@$(SIM_BIN) generate --out $(CAMPAIGN_DEMO)/datasets/demo --types 2 --sources 20 --records 100 --span 10s >/dev/null
	@printf 'late_p99 < 50ms\nlost == 0\nsent_ratio >= 0.999\nlate_max < 2s abort-on-fail\n' > $(CAMPAIGN_DEMO)/thresholds.txt
	@set -e; pids=; trap 'kill $$pids 2>/dev/null; wait $$pids 2>/dev/null || true' EXIT; \
	  L=$(CAMPAIGN_DEMO); export SIMULATOR_LOG_FORMAT=text SIMULATOR_LOG_LEVEL=warn; \
	  $(SIM_BIN) broker --listen 127.0.0.1:19092 >$$L/broker.log 2>&1 & pids="$$pids $$!"; \
	  $(SIM_BIN) controller --kafka-brokers 127.0.0.1:19092 --listen 127.0.0.1:18080 --dataset-root $$L/datasets >$$L/controller.log 2>&1 & pids="$$pids $$!"; \
	  for i in $$(seq 50); do curl -sf http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break; sleep 0.2; done; \
	  n=0; for t in type1 type1 type2 type2; do n=$$((n+1)); \
	    $(SIM_BIN) worker --kafka-brokers 127.0.0.1:19092 --type $$t --controller-url http://127.0.0.1:18080 --listen 127.0.0.1:0 --sftp-listen 127.0.0.1:0 >$$L/worker-$$n.log 2>&1 & pids="$$pids $$!"; done; \
	  $(SIM_BIN) sink --listen 127.0.0.1:19000 --dataset $$L/datasets/demo --controller-url http://127.0.0.1:18080 --report $$L/sink.json >$$L/sink.log 2>&1 & pids="$$pids $$!"; \
	  $(SIMLAB_BIN) campaign run --controller-url http://127.0.0.1:18080 --dataset $$L/datasets/demo --sut-address 127.0.0.1:19000 \
	    --start-in 2s --thresholds $$L/thresholds.txt --out $(CURDIR)/campaigns
# The campaign report page (simulator/campaign) is tested in a real browser: Debian's chromium,
# installed here when missing (make test runs this first; the test fails, never skips, without it).
TEST_DEPS    += chromium
DEPS_TARGETS += chromium
.PHONY: chromium
chromium: ## install Debian's chromium for the campaign report's browser test, when missing (apt-get)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; echo "apt-get install chromium"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
# --- end simulator ---

# --- ignition and artifacts (ignition/, infra/artifacts/) -------------------
# docs/IGNITION.md. Tests need no network: upstreams are httptest servers.
ARTIFACTS_DIR ?= $(CURDIR)/.artifacts
ARTIFACTS_LISTEN ?= 127.0.0.1:8080
GOLDEN_TARGETS += golden-ignition
BENCH_TARGETS += bench-ignition
.PHONY: golden-ignition bench-ignition test-ignition artifacts-mirror artifacts-serve
golden-ignition: ## rewrite ignition/testdata/manifest.json and golden/<stack>-<role>.ign
	$(GO) test -count=1 -run 'TestTestdataManifest|TestGolden' ./ignition/ -args -update
bench-ignition: ## render Ignition for 500 nodes: ms/node, per-node API and shared Renderer
	@printf '| api | nodes | wall ms/node | CPU ms/node | MB/node |\n|---|---|---|---|---|\n'
	@$(GO) test -run '^$$' -bench RenderNodes -benchtime 5x -benchmem ./ignition/ | \
	  awk '/^BenchmarkRenderNodes/ { split($$1, n, "/"); sub(/-[0-9]+$$/, "", n[2]); \
	    for (i = 1; i <= NF; i++) { if ($$(i+1) == "ms/node") ms = $$i; if ($$(i+1) == "cpu-ms/node") cpu = $$i; if ($$(i+1) == "B/op") b = $$i } \
	    printf "| %s | 500 | %s | %s | %.2f |\n", n[2], ms, cpu, b / 500 / 1048576 }'
test-ignition: ## the ignition, artifacts and artifacts-CLI tests
	$(GO) test -count=1 ./ignition/... ./infra/artifacts/... && $(GO) test -count=1 -run Artifacts ./infra/cmd/simlab/
artifacts-mirror: ## download and verify the pinned artifacts into ARTIFACTS_DIR (needs internet)
	$(GO) run ./infra/cmd/simlab artifacts mirror --dir $(ARTIFACTS_DIR) --stack $(STACK)
artifacts-serve: ## serve ARTIFACTS_DIR and STACK's Ignition on ARTIFACTS_LISTEN
	$(GO) run ./infra/cmd/simlab artifacts serve --dir $(ARTIFACTS_DIR) --listen $(ARTIFACTS_LISTEN) --stack $(STACK)
# --- end ignition ---

# --- nodes and cluster (infra/nodes/, infra/cluster/) -----------------------
# The kubeadm tests use the real kubeadm that `tools` builds into .cache/bin.
GOLDEN_TARGETS += golden-cluster
.PHONY: golden-cluster test-cluster
golden-cluster: ## rewrite infra/cluster/testdata/golden/<stack>-{init,join}.yaml from the renderer
	$(GO) test -count=1 -run TestGoldenKubeadmConfigs ./infra/cluster/ -args -update
test-cluster: tools ## the nodes and cluster layers' tests (mock graph, kubeadm with the real binary)
	$(GO) test -count=1 ./infra/nodes/... ./infra/cluster/...
BENCH_TARGETS += bench-cluster
.PHONY: bench-cluster
bench-cluster: ## time the nodes+cluster program under the mock engine for 2, 50 and 200 workers
	@printf '| workers | ms per run | ms/node |\n|---|---|---|\n'
	@$(GO) test -run '^$$' -bench BenchmarkMockDeploy -benchtime 5x ./infra/cluster/ | \
	  awk '/^BenchmarkMockDeploy/ { split($$1, n, "="); sub(/-[0-9]+$$/, "", n[2]); \
	    for (i = 1; i <= NF; i++) { if ($$(i+1) == "ns/op") ns = $$i; if ($$(i+1) == "ms/node") mn = $$i } \
	    printf "| %s | %.0f | %s |\n", n[2], ns / 1e6, mn }'
# The nodes layer's libvirt commands against a real libvirtd and qemu (TCG)
# here, booting a stand-in for FCOS with the real Ignition: tests/libvirt,
# docs/LAB-SETUP.md ("Rehearsed on a real hypervisor"). Installs its apt
# packages the first time; root only (network namespace, libvirtd).
.PHONY: test-libvirt
test-libvirt: ## real libvirtd + qemu + Ignition: define, boot, check, delete (needs root; apt-installs what it needs)
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) bash tests/libvirt/run.sh
# --- end cluster ---

# --- local control plane, chart and workloads (tests/, charts/, infra/workloads/)
# local control plane (tests/tools, tests/localcluster; docs/LOCAL-CLUSTER.md)
include tests/tools/tools.mk
NODES ?= 3
# More flags for `localcluster up`, e.g. CLUSTER_FLAGS="-hpa-downscale=30s -wait-metrics".
CLUSTER_FLAGS ?=
TEST_DEPS += tools engine-tools
DEPS_TARGETS += tools engine-tools
.PHONY: tools engine-tools cluster-up cluster-down
tools: $(TOOLS_OUT) ## build the local control plane's binaries into .cache/bin (cached by version)
	@echo "tools: up to date in $(TOOLS_BIN)"
# One at a time (.NOTPARALLEL below): each is a heavy build.
engine-tools: $(ENGINE_OUT) ## build the Pulumi CLI and Kubernetes provider into .cache/bin (cached by version)
	@echo "engine-tools: up to date in $(TOOLS_BIN)"
cluster-up: tools ## start a local control plane with NODES simulated nodes (state in .cache/cluster)
	$(GO) run ./tests/localcluster/cmd/localcluster up -dir $(CACHE_DIR)/cluster -bin $(TOOLS_BIN) -nodes $(NODES) $(CLUSTER_FLAGS)
cluster-down: ## stop exactly the processes cluster-up started (by PID)
	$(GO) run ./tests/localcluster/cmd/localcluster down -dir $(CACHE_DIR)/cluster
BENCH_TARGETS += bench-cluster-up
.PHONY: bench-cluster-up
bench-cluster-up: tools ## time `make cluster-up` (NODES) until all nodes are Ready, 5 runs
	@$(GO) build -o $(CACHE_DIR)/localcluster ./tests/localcluster/cmd/localcluster
	@printf '| run | nodes | cluster-up wall (s) |\n|---|---|---|\n'
	@for i in 1 2 3 4 5; do \
	  s=$$(date +%s.%N); $(CACHE_DIR)/localcluster up -dir $(CACHE_DIR)/cluster-bench -bin $(TOOLS_BIN) -nodes $(NODES) >/dev/null || exit 1; e=$$(date +%s.%N); \
	  $(CACHE_DIR)/localcluster down -dir $(CACHE_DIR)/cluster-bench >/dev/null || exit 1; \
	  printf '| %d | %d | %.2f |\n' $$i $(NODES) $$(awk "BEGIN{print $$e - $$s}"); done
# end local control plane
# rehearsal (after tools.mk: it needs NODE_OUT). The cluster layer's own scripts on real nodes here: runc containers with
# systemd, containerd, kubelet and sshd, provisioned by the real Ignition from
# the artifact server (tests/rehearse, docs/REHEARSAL.md). Root only.
.PHONY: rehearse
rehearse: tools engine-tools $(NODE_OUT) ## real nodes (Ignition, systemd, containerd, kubeadm init/join, reset), the workloads by the real engine; needs root
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) bash tests/rehearse/run.sh
# chart (charts/simulator, infra/workloads, tests/chart; images: docs/IMAGES.md)
HELM          := $(TOOLS_BIN)/helm-$(HELM_VERSION)
SIM_IMAGE     ?= $(shell sed -n 's/^[[:space:]]*Image:[[:space:]]*"\([^"]*simulator\)",.*/\1/p' infra/config/defaults.go)
SIM_IMAGE_TAG ?= $(shell sed -n 's/^[[:space:]]*Simulator:[[:space:]]*"\([^"]*\)",.*/\1/p' infra/config/versions.go)
DOCKER        ?= docker
.PHONY: chart-lint test-chart image image-docker image-push
chart-lint: $(HELM) ## helm lint --strict charts/simulator with the pinned helm
	$(HELM) lint --strict charts/simulator
test-chart: tools ## the chart's and workloads layer's tests (render, schema, HPA on the local control plane)
	$(GO) test -count=1 -timeout 20m ./infra/workloads/... ./tests/chart/...
image: ## build the simulator image (linux/amd64+arm64, OCI layout in ARTIFACTS_DIR/images/simulator) without a container engine
	$(GO) run ./infra/cmd/simlab image build --dir $(ARTIFACTS_DIR) --stack $(STACK)
image-docker: ## the same image with docker (BuildKit): $(SIM_IMAGE):$(SIM_IMAGE_TAG)
	$(DOCKER) build -f simulator/Dockerfile -t $(SIM_IMAGE):$(SIM_IMAGE_TAG) .
image-push: image-docker ## push the docker-built simulator image
	$(DOCKER) push $(SIM_IMAGE):$(SIM_IMAGE_TAG)
# end chart
# --- end workloads ---

# --- storage (infra/storage/) -----------------------------------------------
# docs/STORAGE.md: sizing, destroy order, what to do if a finalizer blocks.
STORAGE_KUBECTL ?= kubectl
.PHONY: test-storage ceph-confirm-cleanup
test-storage: tools ## the storage layer's tests (mock graph, server-side dry-run on the local control plane)
	$(GO) test -count=1 ./infra/storage/...
ceph-confirm-cleanup: ## before `make destroy`: let Rook wipe Ceph's disks and /var/lib/rook when the CephCluster goes
	$(STORAGE_KUBECTL) -n rook-ceph patch cephcluster rook-ceph --type merge \
	  -p '{"spec":{"cleanupPolicy":{"confirmation":"yes-really-destroy-data"}}}'
# --- end storage ---

.PHONY: help test test-go test-engine lint vet fmt validate preview up destroy demo bench golden deps check-pulumi
# Tool builds are heavy (the provider alone ~5 GiB): never two at once.
.NOTPARALLEL:

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: $(TEST_DEPS) vet test-go ## vet + every test (what CI runs)

test-go:
	$(GO) test -count=1 -timeout 40m ./...

vet:
	$(GO) vet ./...

lint: vet ## gofmt must list nothing, go vet must pass
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

validate: ## validate stacks/Pulumi.$(STACK).yaml without the Pulumi CLI
	@$(GO) run ./infra/cmd/simlab validate $(STACK)
plan: ## what pulumi up would do going from FROM (the config it last ran with) to stacks/Pulumi.$(STACK).yaml
	@$(GO) run ./infra/cmd/simlab plan $(STACK) --from $(FROM)

check-pulumi:
	@command -v $(PULUMI) >/dev/null || { echo "the Pulumi CLI is needed for this target: https://www.pulumi.com/docs/install/"; exit 1; }
	@mkdir -p .pulumi-state

preview: check-pulumi validate ## pulumi preview for STACK
	$(PULUMI) stack select --create $(STACK) && $(PULUMI) preview --stack $(STACK)

up: check-pulumi validate ## pulumi up for STACK
	$(PULUMI) stack select --create $(STACK) && $(PULUMI) up --stack $(STACK)

destroy: check-pulumi ## pulumi destroy for STACK
	$(PULUMI) destroy --stack $(STACK)

demo: tools engine-tools simulator ## local control plane, `pulumi up` of the local stack (real engine), a replay, `pulumi destroy`
	$(GO) run ./tests/engine/cmd/labdemo -replay '$(MAKE) --no-print-directory demo-simulator'

test-engine: tools engine-tools ## the program through the real Pulumi engine on the local control plane (docs/ENGINE.md)
	$(GO) test -count=1 -v -run 'TestEngine|TestProvider' ./tests/engine/

bench: $(BENCH_TARGETS) ## run every benchmark and print the tables

golden: $(GOLDEN_TARGETS) ## regenerate golden files

deps: $(DEPS_TARGETS) ## install what tests need (apt packages, Go-built tools)
