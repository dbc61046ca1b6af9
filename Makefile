# `make run`: the example app under gunicorn (embedded store unless REDIS_URL is set),
# in debug mode: known demo credentials and a random JWT key, on loopback only.
# `make test`: installs everything, then lint, types, the docs and the whole test suite.
# `make docs`: the documentation site, warnings as errors, into docs/_build/html.
# `make peer-tests`: the peers' own test suites (flask-jwt-extended, Flask-Caching, limits) on FogRedis.
# `make bench`: measures us against the peers (README, "Benchmarks"), in a venv of its own.
# `make test-matrix`: the suite on the other supported Python and redis-py versions.
# `make soak`: the chaos soak (docs/reliability.md): SOAK_SECONDS (600), SOAK_WORKER
# (gthread|gevent), SOAK_TOPOLOGY (single|sentinel); exits non-zero if a correctness check fails.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BENCH_VENV ?= .venv-bench

.PHONY: run test lint types docs pytest peer-tests test-matrix matrix-pythons install bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"

# Debug mode is what lets the app start without production secrets; it is set
# here on purpose, and only here.
run: install
	@echo "make run: debug mode, for this machine only (a server needs the README's Production checklist)."
	@echo "  users alice and admin, password: $(if $(DEMO_PASSWORD),the DEMO_PASSWORD you set,demo-password)"
	@echo "  JWT key: $(if $(JWT_SECRET_KEY),the JWT_SECRET_KEY you set,random for this run (tokens end with the server))"
	FLASK_DEBUG=1 DEMO_PASSWORD="$${DEMO_PASSWORD:-demo-password}" $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: install
	./scripts/ensure-redis-server
	$(MAKE) --no-print-directory lint types docs pytest

# lint-imports: the layers in pyproject.toml ([tool.importlinter]); imports point down only.
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

types:
	$(BIN)/mypy

# -E: read every page again, so that an unchanged page's warnings still fail the build.
docs: $(BIN)/sphinx-build
	$(BIN)/sphinx-build -E -W --keep-going -b html docs docs/_build/html

$(BIN)/sphinx-build: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"

pytest:
	$(BIN)/python -m pytest --cov --cov-report=term

# flask-jwt-extended's suite (FogRedis before and after its JWTManager) and
# Flask-Caching's (on FogRedisCache) and limits' (on FogRedis's pool), from their sdists.
peer-tests: install
	./scripts/peer-tests

# The version matrix: the Python and redis-py pairs tested besides `make test`
# (the default Python, the newest redis-py), each as py<python>-redis<redis-py>.
# The whole suite runs on the oldest and the newest pair; on the others, the
# tests that talk to a real redis-server (all but those marked `memory`).
# redis-py 7.0.x is what pip picks on Python 3.9 (7.1 and 8.x need 3.10).
MATRIX_FULL := py3.9-redis5.0.1 py3.13-redis8.1.0
MATRIX_NETWORK := py3.9-redis7.0.1 py3.10-redis6.4.0 py3.12-redis7.4.1
MATRIX := $(MATRIX_FULL) $(MATRIX_NETWORK)
# Passed to pytest in every cell, e.g. PYTEST_ARGS="-x tests/test_network.py".
PYTEST_ARGS ?=

# One venv per cell, e.g. .venv-py3.9-redis5.0.1, from the stem "3.9-redis5.0.1".
cell_python = $(firstword $(subst -redis, ,$*))
cell_redis = $(lastword $(subst -redis, ,$*))

.venv-py%/.installed: pyproject.toml
	rm -rf .venv-py$*
	python="$$(./scripts/find-python $(cell_python))" && "$$python" -m venv .venv-py$*
	.venv-py$*/bin/python -m pip install -q --upgrade pip
	.venv-py$*/bin/python -m pip install -q -e ".[dev]" "redis==$(cell_redis)"
	touch $@
.PRECIOUS: .venv-py%/.installed

# One cell: `make test-py3.9-redis5.0.1`. Its output is kept in .matrix/.
test-py%: .venv-py%/.installed
	./scripts/ensure-redis-server
	@mkdir -p .matrix
	@.venv-py$*/bin/python -c 'import platform, redis; print(f"== py$*: Python {platform.python_version()}, redis-py {redis.__version__}, $(if $(filter py$*,$(MATRIX_FULL)),whole suite,network tests) ==")'
	set -o pipefail; .venv-py$*/bin/python -m pytest -q -p no:cacheprovider \
		$(if $(filter py$*,$(MATRIX_FULL)),,-m "not memory") $(PYTEST_ARGS) 2>&1 | tee .matrix/py$*.log

# Where each Python of the matrix is; fails naming the first one missing.
matrix-pythons:
	@for version in $(sort $(foreach cell,$(MATRIX),$(firstword $(subst -redis, ,$(cell:py%=%))))); do \
		path="$$(./scripts/find-python $$version)" || exit 1; echo "Python $$version: $$path"; \
	done

# Every cell, one after the other (each starts its own servers), then a line
# per cell; fails when any cell failed or is missing its interpreter.
test-matrix:
	@rm -rf .matrix && mkdir .matrix
	@failed=0; for cell in $(MATRIX); do \
		start=$$SECONDS; \
		if $(MAKE) --no-print-directory test-$$cell; then status=ok; else status="FAILED (.matrix/$$cell.log)"; failed=1; fi; \
		echo "$$cell: $$status in $$((SECONDS - start)) s: $$(grep -E ' in [0-9.]+s' .matrix/$$cell.log 2>/dev/null | tail -n 1 | sed 's/^=* *//; s/ *=*$$//')" >> .matrix/summary; \
	done; \
	echo "== test-matrix =="; cat .matrix/summary; exit $$failed

$(BENCH_VENV)/bin/python:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip

# Pass options through BENCH_ARGS, e.g. BENCH_ARGS="--rounds 7 --only 1,2".
bench: $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[bench]"
	./scripts/ensure-redis-server
	./scripts/ensure-wrk
	$(BENCH_VENV)/bin/python -m bench $(BENCH_ARGS)

SOAK_SECONDS ?= 600
SOAK_WORKER ?= gthread
SOAK_TOPOLOGY ?= single

soak: install
	$(BIN)/python -m pip install -q "matplotlib>=3.5"
	./scripts/ensure-redis-server
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_WORKER=$(SOAK_WORKER) SOAK_TOPOLOGY=$(SOAK_TOPOLOGY) \
		$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) $(BENCH_VENV) bench/results docs/_build docs/_generated .venv-py* .matrix .mypy_cache .pytest_cache .ruff_cache .coverage*
