# ai-incident-operator: every target does its own set-up on a fresh Debian 12 machine.
# Slow downloads and builds are cached under $(CACHE) and reused.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/ai-incident-operator
K8S_BIN := $(CACHE)/k8s-1.20/bin
TOOLS_BIN := $(CACHE)/tools/bin
LOCAL := .local
KUBECONFIG_LOCAL := $(LOCAL)/kubeconfig
# The harness honours KUBEBUILDER_ASSETS (etcd, kube-apiserver, kube-controller-manager).
export KUBEBUILDER_ASSETS ?= $(K8S_BIN)
export PATH := $(abspath $(BIN)):$(TOOLS_BIN):$(PATH)

.PHONY: help deps venv system-deps cluster-binaries tools thirdparty-crds cluster cluster-down crds demo demo-down \
        lint format test test-unit test-integration bench clean checkov promptfoo

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

system-deps: ## install the Debian packages (etcd, Go, Prometheus, Alertmanager, ...)
	@hack/install-system-deps.sh

$(BIN)/aiincident: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(BIN)/aiincident ## create .venv with the operator and its dev tools

cluster-binaries: system-deps ## build kube-apiserver and kube-controller-manager once (cached)
	@if [ "$(KUBEBUILDER_ASSETS)" = "$(K8S_BIN)" ]; then hack/build-kube.sh $(CACHE)/k8s-1.20 >/dev/null; fi

tools: system-deps ## fetch kubectl and helm once (cached)
	@hack/fetch-tools.sh $(CACHE)/tools >/dev/null

# checkov's pins conflict with the project's [dev] extras: it gets a venv of its own,
# pinned in pyproject.toml's `checkov` extra (tests/chartkit.py finds it there).
CHECKOV_PIN := $(shell grep -o 'checkov==[0-9.]*' pyproject.toml)
CHECKOV_HOME := $(CACHE)/tools/checkov-$(subst checkov==,,$(CHECKOV_PIN))

checkov: ## checkov in its own venv (cached), for the chart's security findings
	@if [ ! -f $(CHECKOV_HOME)/.complete ]; then \
	  echo ">> installing $(CHECKOV_PIN) into $(CHECKOV_HOME)" >&2; \
	  rm -rf $(CHECKOV_HOME) && $(PYTHON) -m venv $(CHECKOV_HOME) && \
	  $(CHECKOV_HOME)/bin/pip install -q --disable-pip-version-check '$(CHECKOV_PIN)' && \
	  echo '$(CHECKOV_PIN)' > $(CHECKOV_HOME)/.complete; fi

# The third-party CRDs the suites apply: from AIINCIDENT_THIRDPARTY_CRDS or ../shared when
# they have them, otherwise downloaded once (pinned, sha256-checked) into $(CACHE).
thirdparty-crds: venv ## the third-party CRDs for the tests (downloads only without ../shared)
	@AIINCIDENT_CACHE=$(CACHE) $(BIN)/python hack/thirdparty_crds.py fetch

# promptfoo runs the suites `aiincident export-evals` writes (tests/e2e/test_evals_promptfoo.py).
# Pinned for Node 20 (later ones need Node 22); about 3.5 minutes and 2 GB the first time.
PROMPTFOO_VERSION := 0.121.20

promptfoo: system-deps ## the promptfoo CLI from npm, once (cached), for the evaluation-suite tests
	@hack/fetch-promptfoo.sh $(CACHE)/tools $(PROMPTFOO_VERSION) >/dev/null

# The slow installs are independent once the Debian packages are in: run them together.
deps: system-deps ## everything the tests and the demo need
	@$(MAKE) --no-print-directory -j4 venv cluster-binaries tools checkov thirdparty-crds promptfoo

cluster: deps ## start the local control plane in the background; kubeconfig in .local/kubeconfig
	@$(BIN)/python -m ai_incident_operator.localcluster up $(LOCAL)/cluster >/dev/null
	@cp $(LOCAL)/cluster/kubeconfig $(KUBECONFIG_LOCAL)
	@echo "control plane ready: export KUBECONFIG=$(abspath $(KUBECONFIG_LOCAL))"

cluster-down: demo-down ## stop the local control plane and remove its data
	@$(BIN)/python -m ai_incident_operator.localcluster down $(LOCAL)/cluster 2>/dev/null || true
	@rm -f $(KUBECONFIG_LOCAL)

crds: cluster ## install the CRDs into the local control plane
	@kubectl --kubeconfig $(KUBECONFIG_LOCAL) apply -f crds/ >/dev/null
	@kubectl --kubeconfig $(KUBECONFIG_LOCAL) wait --for condition=Established --timeout=60s -f crds/ >/dev/null

demo: crds ## the main job on the local control plane: an incident, triaged and mitigated
	@hack/demo.sh $(KUBECONFIG_LOCAL) $(LOCAL)

demo-down: ## stop the demo's operator and dashboard
	@for p in operator dashboard; do if [ -f $(LOCAL)/$$p.pid ]; then kill $$(cat $(LOCAL)/$$p.pid) 2>/dev/null || true; rm -f $(LOCAL)/$$p.pid; fi; done

lint: venv ## ruff lint and format check
	@$(BIN)/ruff check operator tests benchmarks hack
	@$(BIN)/ruff format --check operator tests benchmarks hack

format: venv ## apply ruff's formatting and fixes
	@$(BIN)/ruff format operator tests benchmarks hack
	@$(BIN)/ruff check --fix operator tests benchmarks hack

test-unit: venv system-deps ## the pure core, no cluster (promtool and amtool check deploy/)
	@$(BIN)/pytest -q tests/unit

# Two processes (pytest-xdist), each with its own control plane and operators, a test
# file at a time: most of a test is waiting on the apiserver and the operator, so two
# share the 2 cores well. TEST_WORKERS=0 runs everything in one process, as on an existing
# cluster (USE_EXISTING_CLUSTER=1), where two sessions' operators would share namespaces.
TEST_WORKERS ?= $(if $(filter 1,$(USE_EXISTING_CLUSTER)),0,2)

test: deps lint ## lint, unit, integration and e2e tests against a real control plane
	@$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=15 \
	  --junitxml=test-output/junit.xml tests

bench: deps ## benchmarks; figures in bench-results/
	@$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean: cluster-down ## remove .venv and .local (the binary cache stays)
	rm -rf $(VENV) $(LOCAL) *.egg-info operator/*.egg-info

# --- Container image and kind (for machines with Docker; not part of `make test`) -------

.PHONY: image kind-e2e
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ghcr.io/ai-incident-operator/ai-incident-operator:$(VERSION)
KIND_CLUSTER ?= aiincident
KIND_KUBECONFIG := $(LOCAL)/kind-kubeconfig

image: ## build the operator image (needs Docker); IMAGE=name:tag to rename it
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

kind-e2e: system-deps venv tools ## integration and e2e suites against a kind cluster (needs Docker and kind)
	@command -v kind >/dev/null || { echo "kind is needed: https://kind.sigs.k8s.io" >&2; exit 1; }
	@kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || kind create cluster --name $(KIND_CLUSTER) --wait 120s
	@mkdir -p $(LOCAL) && kind get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)
	USE_EXISTING_CLUSTER=1 KUBECONFIG=$(abspath $(KIND_KUBECONFIG)) \
	  $(BIN)/pytest -q -p no:cacheprovider tests/integration tests/e2e
