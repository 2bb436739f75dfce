# Mahnwerk (SPEC §1). On a fresh machine with Python 3.11+:
#   make run    creates .venv, installs the project, migrates, starts the embedded stack
#   make test   same install step, then the whole test suite (PostgreSQL if DATABASE_URL is set)
#
# The install step re-runs only when pyproject.toml is newer than .venv/.installed, so the
# second `make run` starts in seconds.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEV_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint chaos install clean distclean lock

help:
	@echo "make run       start the embedded dev stack (Temporal, Stripe stand-in, SMTP, worker, API)"
	@echo "make test      run the test suite (PYTEST_ARGS='-k foo' to narrow it)"
	@echo "make lint      ruff check, ruff format --check, mypy"
	@echo "make chaos     the long chaos tests: more contracts, kills and faults (tests/chaos)"
	@echo "make lock      regenerate requirements.lock (the image's pinned, hashed dependencies)"
	@echo "make clean     remove caches and build output (keeps .venv and var/)"
	@echo "make distclean also remove .venv and var/ (the dev databases and keys)"

run: install
	$(BIN)/mahnwerk dev $(DEV_ARGS)

# The suite runs in parallel worker processes (pytest-xdist; one per core, at most 4): on
# the 2-core CI machine it takes about 6 minutes instead of 10. PYTEST_XDIST= runs it in one.
PYTEST_XDIST ?= -n auto --maxprocesses=4
test: install
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

chaos: install
	@if [ -d tests/chaos ]; then \
		MAHNWERK_CHAOS_LONG=1 $(BIN)/python -m pytest -q -s tests/chaos $(PYTEST_ARGS); \
	else \
		echo "no chaos tests yet (tests/chaos does not exist)"; \
	fi

install: $(STAMP)

# Re-install only when the dependencies may have changed.
$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: $(VENV) runs Python $$($(BIN)/python -c 'import platform; print(platform.python_version())'), Mahnwerk needs 3.11+: delete $(VENV) and run make again" >&2; \
		exit 1; }
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	@touch $@

# Create the virtualenv with the first Python 3.11+ found. An explicit PYTHON=… (command line
# or environment) is used as given; the default also tries the versioned names, because
# many systems' python3 is older than their python3.11.
$(BIN)/python:
	@py=; \
	if [ "$(origin PYTHON)" = "file" ]; then \
		candidates="$(PYTHON) python3.14 python3.13 python3.12 python3.11"; \
	else \
		candidates="$(PYTHON)"; \
	fi; \
	for c in $$candidates; do \
		if command -v "$$c" >/dev/null 2>&1 && \
			"$$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
			py=$$c; break; \
		fi; \
	done; \
	if [ -z "$$py" ]; then \
		found="not installed"; \
		command -v "$(PYTHON)" >/dev/null 2>&1 && found=$$("$(PYTHON)" -V 2>&1 | head -n1); \
		echo "error: Python 3.11+ is required, but $(PYTHON) is $$found; install it or run make PYTHON=python3.11" >&2; \
		exit 1; \
	fi; \
	echo "creating $(VENV) with $$py ($$($$py -V 2>&1))"; \
	"$$py" -m venv $(VENV)

# The production image installs exactly these versions, with hashes (Dockerfile). Run after
# changing [project] dependencies in pyproject.toml; commit the result. --universal: one file
# for every platform the image may be built on (amd64, arm64).
lock: install
	$(BIN)/python -m pip install --disable-pip-version-check -q uv
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" -o requirements.lock

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) var

# Benchmarks (issue 6; bench/README.md). Options through BENCH_ARGS, e.g. BENCH_ARGS="--n 10000".
.PHONY: bench-wave bench-checkout bench-parked bench-history bench-cache-memory bench-ledger \
	bench-replay
bench-wave: install
	$(BIN)/python -m bench.due_wave $(BENCH_ARGS)

bench-checkout: install
	$(BIN)/python -m bench.checkout $(BENCH_ARGS)

bench-parked: install
	$(BIN)/python -m bench.parked $(BENCH_ARGS)

bench-history: install
	$(BIN)/python -m bench.history $(BENCH_ARGS)

bench-cache-memory: install
	$(BIN)/python -m bench.cache_memory $(BENCH_ARGS)

bench-ledger: install
	$(BIN)/python -m bench.ledger_write $(BENCH_ARGS)

bench-replay: install
	$(BIN)/python -m bench.replay $(BENCH_ARGS)
