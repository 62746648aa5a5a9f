# Two commands take a fresh machine (Python 3.11 + pip) to a finished run and a passing suite:
#   make train      # venv + install + download ML-100K + train/evaluate ALS, logged to MLflow
#   make test       # venv + install + the test suite (minutes; full-length training: test-slow)
# Pass Hydra overrides with ARGS, e.g. make train ARGS="model=popular seed=7".

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?= model=als

.PHONY: train test test-slow install tune benchmark report cold-start protocols docs benchmark-eval lint lab

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

train: $(BIN)/.installed
	$(BIN)/python -m recsys.train $(ARGS)

# the default suite: unit, contract, golden and integration tests (`slow` ones left out)
test: $(BIN)/.installed
	$(BIN)/python -m pytest

# full-length training of the iterative models on ML-100K against their quality bounds
test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -m slow

# an Optuna study for every model with a search space (conf/search/); writes the winners back
tune: $(BIN)/.installed
	for model in $$(ls conf/search | sed 's/.yaml//'); do \
		$(BIN)/python -m recsys.tune model=$$model || exit 1; done

# every model (conf/model/) x 5 seeds into MLflow experiment ml-100k-msr-benchmark, then reports/;
# JOBS runs at a time through Hydra's joblib launcher (a torch model trains on one thread, so 2
# cores take 2 runs: half the wall time, the same numbers; fit times are measured beside another run)
JOBS ?= 2
benchmark: $(BIN)/.installed
	$(BIN)/python -m recsys.train -m experiment=benchmark hydra/launcher=joblib \
		hydra.launcher.n_jobs=$(JOBS)
	$(MAKE) report

# reports/, reports/literature.md and the README's results sections from the benchmark runs
report: $(BIN)/.installed
	$(BIN)/python -m recsys.report --experiment ml-100k-msr-benchmark --out reports --readme README.md
	$(BIN)/python -m recsys.literature published --experiment ml-100k-msr-benchmark --out reports \
		--readme README.md

# users never seen in training, 5 seeds: reports/cold_start.md, its figure and the README's table
cold-start: $(BIN)/.installed
	$(BIN)/python -m recsys.cold_start --readme README.md --jobs 2

# the closed-form models under every protocol x 5 seeds, and the README's protocol table
protocols: $(BIN)/.installed
	$(BIN)/python -m recsys.train -m experiment=protocols
	$(BIN)/python -m recsys.literature protocols --readme README.md

# the README's sections generated from code and config (the models table)
docs: $(BIN)/.installed
	$(BIN)/python -m recsys.docs

# JupyterLab on notebooks/ (01 needs only the data; 02 and 03 read `make benchmark`'s runs,
# demo `make train`'s): its kernel is this venv's Python, with recsys installed. No browser is
# opened (a server or container has none): open the URL with the token that Jupyter prints.
# As root (a container), Jupyter refuses to start without --allow-root.
LAB_AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(BIN)/.installed
	$(BIN)/jupyter lab --notebook-dir=notebooks --no-browser $(LAB_AS_ROOT)

benchmark-eval: $(BIN)/.installed
	$(BIN)/python experiments/benchmark_evaluation.py

lint: $(BIN)/.installed
	$(BIN)/ruff check recsys tests experiments
