# Two commands do all set-up on a fresh machine: `make test` and `make demo`.
# Every target bootstraps what it needs (virtualenv, pip, npm) and is idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
# Flower, for bench-round's side-by-side round: its own virtualenv (flwr pins older fastapi/starlette/uvicorn)
FLOWER_VENV := .venv-flower
STAMP_FLOWER := $(FLOWER_VENV)/.installed

.PHONY: lint test demo bench bench-gas bench-round bench-fl bench-shapley bench-dp bench-fairness compile chain setup browser clean

setup: $(STAMP_PY) $(STAMP_NPM) browser

# The explorer's browser test drives Debian's headless Chromium; install it when we may (root with apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) ; } || \
	  echo "chromium is not installed and cannot be installed here: the browser test will be skipped"

$(STAMP_PY): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: it takes the local CPU wheel instead of several GB of CUDA packages
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(STAMP_FLOWER): bench/flower-requirements.txt
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOWER_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(FLOWER_VENV)/bin/python -m pip install --quiet -r bench/flower-requirements.txt
	touch $@

$(STAMP_NPM): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The packages get every rule; tests and benchmarks every rule but line length (long test names and tables).
lint: setup
	$(PY) -m ruff check fedcore ledger node aggregator fedledger fedsets
	$(PY) -m ruff check --extend-ignore E501 bench tests
	$(PY) -m mypy fedcore ledger node aggregator fedledger fedsets

# one torch thread per process: the suite runs many processes (nodes, services, chains) on few cores
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

demo: setup
	$(VENV)/bin/fedledger demo

chain: setup
	$(VENV)/bin/fedledger chain up

compile: setup
	$(VENV)/bin/fedledger contracts compile

bench: bench-gas bench-round bench-fl bench-shapley bench-dp bench-fairness

bench-gas: setup
	$(PY) -m bench.gas

bench-round: setup $(STAMP_FLOWER)
	$(PY) -m bench.round --flower-python $(FLOWER_VENV)/bin/python

bench-fl: setup
	$(PY) -m bench.heart

bench-shapley: setup
	$(PY) -m bench.shapley

# reads bench/results/heart.json (the default strategy's tuned settings): run after bench-fl
bench-dp: setup
	nice $(PY) -m bench.dp --workers 1

bench-fairness: setup
	$(PY) -m bench.fairness

clean:
	rm -rf $(VENV) $(FLOWER_VENV) node_modules .pytest_cache
