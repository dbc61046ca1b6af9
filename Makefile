# `make run`: the example app under gunicorn (embedded store unless REDIS_URL is set),
# in debug mode: known demo credentials and a random JWT key, on loopback only.
# `make test`: installs everything, then lint, types, the docs and the whole test suite.
# `make docs`: the documentation site, warnings as errors, into docs/_build/html.
# `make peer-tests`: the peers' own test suites (flask-jwt-extended, Flask-Caching) on FogRedis.
# `make bench`: measures us against the peers (README, "Benchmarks"), in a venv of its own.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BENCH_VENV ?= .venv-bench

.PHONY: run test lint types docs pytest test-redis5 peer-tests install bench clean

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

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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
# Flask-Caching's (on FogRedisCache), from their sdists.
peer-tests: install
	./scripts/peer-tests

# The oldest redis-py supported, in an environment of its own.
test-redis5: $(BIN)/python
	$(PYTHON) -m venv .venv-redis5
	.venv-redis5/bin/python -m pip install -q --upgrade pip
	.venv-redis5/bin/python -m pip install -q -e ".[dev]" "redis==5.0.1"
	./scripts/ensure-redis-server
	.venv-redis5/bin/python -m pytest -q -p no:cacheprovider

$(BENCH_VENV)/bin/python:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip

# Pass options through BENCH_ARGS, e.g. BENCH_ARGS="--rounds 7 --only 1,2".
bench: $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[bench]"
	./scripts/ensure-redis-server
	./scripts/ensure-wrk
	$(BENCH_VENV)/bin/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) bench/results docs/_build docs/_generated .venv-redis5 .mypy_cache .pytest_cache .ruff_cache .coverage*
