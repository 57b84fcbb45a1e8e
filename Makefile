# Set-up contract: `make demo` and `make test` work on a fresh machine with Python 3.11.
# TORCH picks the torch build; the default is the CPU wheel (override, e.g. TORCH=torch, on a GPU box).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev,all]"
	# the default Pfam HMMs of `biostrata annotate` (a Pfam 35.0 subset, read in place); gecco's own
	# dependencies are not needed for that, so none are installed
	$(BIN)/pip install --quiet --no-deps "gecco==0.11.0"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/biostrata demo --out demo_out --overwrite

LINTED := src tests benchmarks

test: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/pytest -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/step_time.py
	$(BIN)/python benchmarks/delta.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/domain_lm.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
