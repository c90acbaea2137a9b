# Two commands set up a fresh machine:  `make run`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install system-deps run run-full test test-e2e lint bench ui

$(BIN)/himari: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned (2.13.0 CPU wheel); any other torch requirement pulls GBs of CUDA packages.
	$(BIN)/pip install -q -e '.[train,dev,cluster]'
	touch $(BIN)/himari

install: $(BIN)/himari

run: install            ## materialize everything on the built-in default (1h synthetic, both variants)
	$(BIN)/himari run

run-full: install       ## the `full` profile: 5-minute bars 2020-2025
	$(BIN)/himari run --profile full

system-deps:            ## Debian chromium + postgresql for the browser and PostgreSQL tests (as root)
	bash scripts/install_system_deps.sh

test: install system-deps  ## the whole test suite (what CI runs)
	$(BIN)/ruff check himari_pipeline himari_pipeline_tests benchmarks
	$(BIN)/python -m pytest -q -n 2 --dist loadfile   # two workers; a file stays on one worker (module fixtures)

test-e2e: install       ## only the end-to-end controls: planted significant, null not (~4 min)
	$(BIN)/python -m pytest -q -m e2e himari_pipeline_tests/test_e2e_controls.py

lint: install
	$(BIN)/ruff check himari_pipeline himari_pipeline_tests benchmarks
	$(BIN)/ruff format --check himari_pipeline himari_pipeline_tests benchmarks

bench: install          ## speed and memory measurements against their references
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

ui: install
	$(BIN)/himari ui
