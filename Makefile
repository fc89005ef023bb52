# Biplane: `make run` starts the whole stack, `make test` runs every check. Both install what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS ?= control,worker,frontend,dev
# torch: on a machine without CUDA take the pinned CPU build first (an open range pulls a multi-GB CUDA build).
TORCH_CPU ?= torch==2.13.0
# Infra linters whose pinned dependencies clash with the project's (checkov pins old packaging, networkx, ...) live
# in their own venv. checkov is pinned exactly: a new release adds checks, and tests/infra/test_k8s.py runs them all.
TOOLS_VENV ?= .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
CHECKOV ?= checkov==3.3.30

.PHONY: help install tools system run demo test lint typecheck pytest soak codegen bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c 'import torch' 2>/dev/null; then \
		echo "no CUDA here: installing the CPU build $(TORCH_CPU)"; $(PIP) install -q $(TORCH_CPU); fi
	$(PIP) install -q -e '.[$(EXTRAS)]'
	@touch $@

install: $(STAMP) ## create .venv and install Biplane with every extra

$(TOOLS_STAMP): Makefile
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install -q '$(CHECKOV)'
	@touch $@

tools: $(TOOLS_STAMP) ## install checkov into .venv-tools (the Kubernetes manifests' scan)

system: ## install missing system packages (redis-server)
	@infra/dev/system-deps.sh

run: system install ## start Redis, S3, control and worker in the foreground (Ctrl-C stops all)
	$(PY) -m infra.dev.devstack

demo: system install ## a studio job on generated samples into ./demo-output/ (starts the stack if needed)
	$(VENV)/bin/biplane demo

lint: install ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install ## mypy
	$(VENV)/bin/mypy

pytest: system install tools ## the test suite (real Redis, S3 and processes), two test processes, one per core
	$(PY) -m pytest -n 2 --dist loadfile

test: lint typecheck pytest ## everything CI runs

soak: system install ## longer runs: 10 kill/resume rounds, 1,000+ schemathesis cases, 200 hostile ids a route, 16 big bodies, 3 empty-Redis restarts
	KILL_ROUNDS=10 SCHEMATHESIS_EXAMPLES=100 HOSTILE_EXAMPLES=200 BODY_PARALLEL=16 REDIS_RESTARTS=3 \
		$(PY) -m pytest -n 2 --dist loadfile tests/reliability tests/security tests/worker/test_training_jobs.py

codegen: install ## regenerate common/models from common/schemas
	$(PY) codegen/generate.py

bench: system install ## benchmarks (print figures; never part of make test)
	$(PIP) install -q -e '.[$(EXTRAS),bench]'
	$(PY) -m bench

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache
