# Set-up and the two commands the README starts with: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data

.PHONY: demo test test-fast results-table clean

# (Re)install when the package metadata changes; creates .venv if missing.
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# ptb/configs/quick_iss.flags: train -> shrink -> verify -> export, under 10 min on 2 cores.
demo: $(VENV)/.installed
	$(BIN)/python ptb/train.py --flagfile=ptb/configs/quick_iss.flags --data_dir=$(DATA)/ptb

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

# README result tables from results/<trainer>/<config>/results.json, docs/deploy.md's training
# overhead from benchmarks/results/train_overhead_<backend>[_xla].json (never typed by hand).
results-table: $(VENV)/.installed
	$(BIN)/python scripts/results.py table

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
