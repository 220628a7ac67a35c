# performance-agent — every target works on a fresh machine with only python3 and make.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY    ?= python3
VENV  ?= .venv
# API suites that `make test` runs a second time with every agent on PostgreSQL (tests/conftest.py).
PG_API_TESTS := tests/api/test_workflows.py tests/api/test_workflows_actions.py tests/api/test_judgements.py \
	tests/api/test_instances.py tests/api/test_system.py
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST  ?= 127.0.0.1
WORKERS ?= 2
PORT  ?= 8000
export PYTHONDONTWRITEBYTECODE := 1

help:  ## List targets
	@awk 'BEGIN{FS=":.*##"} /^[a-zA-Z0-9_-]+:.*##/{printf "  \033[36m%-14s\033[0m %s\n",$$1,$$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## Create .venv and install the package with dev tools

run: $(STAMP)  ## Serve the agent on $(HOST):$(PORT) with the embedded SQLite default (./var/)
	PERF_AGENT_HOST=$${PERF_AGENT_HOST:-$(HOST)} PERF_AGENT_PORT=$${PERF_AGENT_PORT:-$(PORT)} \
		$(BIN)/python -m performance_agent serve

lint: $(STAMP) dupcheck  ## ruff (lint + format check), mypy --strict, import layering, duplicate code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

dupcheck: $(STAMP)  ## pylint's duplicate-code check over performance_agent/ (settings in pyproject.toml)
	$(BIN)/pylint --rcfile=pyproject.toml performance_agent

fmt: $(STAMP)  ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

openapi: $(STAMP)  ## Regenerate docs/openapi.json and docs/configuration.md
	$(BIN)/python -m performance_agent openapi --output docs/openapi.json
	$(BIN)/python -m performance_agent.docs_gen write

openapi-check: $(STAMP)  ## Fail when docs/openapi.json or docs/configuration.md drift from the code
	@$(BIN)/python -m performance_agent openapi --output - | diff -u docs/openapi.json - \
		|| { echo "docs/openapi.json is stale: run 'make openapi'"; exit 1; }
	$(BIN)/python -m performance_agent.docs_gen check

check: lint  ## The fast loop (< 3 min on 2 cores): lint, types, and the unit tests in parallel (no e2e, browser, slow)
	$(BIN)/pytest -q -p no:cacheprovider -n $(WORKERS) -m "not e2e and not browser and not slow" $(ARGS)

unit: $(STAMP)  ## pytest only (no gates), e.g. make unit ARGS="-k rate"
	$(BIN)/pytest -q $(ARGS)

cov: $(STAMP)  ## pytest under coverage (subprocesses included) with the 90% gate
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -q -p no:cacheprovider $(ARGS)
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

fuzz: $(STAMP)  ## schemathesis against the agent served by uvicorn on 127.0.0.1
	$(BIN)/python scripts/run_schemathesis.py

test: lint openapi-check  ## Every gate: lint, types, drift, pytest + schemathesis under one 90% coverage gate
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -q -p no:cacheprovider $(ARGS)
	PERF_AGENT_TEST_BACKEND=postgresql $(BIN)/coverage run -m pytest -q -p no:cacheprovider $(PG_API_TESTS)
	$(BIN)/python scripts/run_schemathesis.py --coverage
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

demo: $(STAMP)  ## Guided demo on simulated vLLM/TGI/SGLang servers: analyze, optimize, roll out, roll back (< 2 min)
	$(BIN)/python -m performance_agent demo

eval: $(STAMP)  ## Labelled simulator scenarios: detector precision/recall per bottleneck (fails below 0.9)
	$(BIN)/python -m tests.eval.suite

eval-judge: $(STAMP)  ## Canary judge on 30,000 simulated rollouts vs issue 10's targets (~6 CPU-min, 2 processes; ARGS=--write)
	$(BIN)/python -m tests.eval.judge_eval $(ARGS)

bench: $(STAMP)  ## Benchmarks (ratios measured side by side); writes docs/benchmarks.md
	$(BIN)/python -m tests.bench.run_all

container:  ## Build the image (needs podman or docker; --format docker keeps HEALTHCHECK)
	podman build --format docker -f Containerfile -t performance-agent:dev .

clean:  ## Remove caches and local state
	rm -rf .pytest_cache .ruff_cache .mypy_cache htmlcov .coverage .coverage.* dist build *.egg-info var

.PHONY: help install run lint dupcheck fmt openapi openapi-check check unit cov fuzz test demo eval eval-judge bench container clean
