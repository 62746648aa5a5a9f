# Two commands take a fresh machine (Python 3.11 + pip) to a finished run and a passing suite:
#   make train      # venv + install + download ML-100K + train/evaluate ALS, logged to MLflow
#   make test       # venv + install + the whole test suite
# Pass Hydra overrides with ARGS, e.g. make train ARGS="model=popular seed=7".

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?= model=als

.PHONY: train test install benchmark report benchmark-eval lint

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

train: $(BIN)/.installed
	$(BIN)/python -m recsys.train $(ARGS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest

# every model x 5 seeds into MLflow experiment ml-100k-benchmark, then reports/ from those runs
benchmark: $(BIN)/.installed
	$(BIN)/python -m recsys.train -m experiment=benchmark
	$(MAKE) report

report: $(BIN)/.installed
	$(BIN)/python -m recsys.report --experiment ml-100k-benchmark --out reports

benchmark-eval: $(BIN)/.installed
	$(BIN)/python experiments/benchmark_evaluation.py

lint: $(BIN)/.installed
	$(BIN)/ruff check recsys tests experiments
