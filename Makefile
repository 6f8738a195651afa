# The two quick-start commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch is installed only when the environment has no torch yet.
# GPU users: `make setup TORCH_SPEC=torch` (pulls the CUDA build), or
# `make setup VENV_FLAGS=--system-site-packages` to reuse an installed CUDA torch.
TORCH_SPEC ?= torch==2.13.0
VENV_FLAGS ?=
BIN := $(VENV)/bin

.PHONY: setup run results test test-fast clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# writes to runs/ (ignored): the clone stays clean
run: setup
	$(BIN)/autosel search --model tiny

# the committed results/: fresh studies of the tiny models (a new store, so nothing continues
# an older study), then the report; `git diff results/` shows what changed
RESULTS_DB := results/autosel.db
RESULTS_STORE := sqlite:///$(CURDIR)/$(RESULTS_DB)
results: setup
	rm -f $(RESULTS_DB) $(RESULTS_DB)-wal $(RESULTS_DB)-shm
	rm -f results/tiny/correspondence/sweep*.csv results/tiny/correspondence/sweep*.png results/tiny/correspondence/pareto/*.yaml
	rm -f results/tiny-dit/correspondence/sweep*.csv results/tiny-dit/correspondence/sweep*.png results/tiny-dit/correspondence/pareto/*.yaml
	$(BIN)/autosel search --model tiny --out results --storage $(RESULTS_STORE) --no-progress
	$(BIN)/autosel search --model tiny-dit --out results --storage $(RESULTS_STORE) --no-progress
	$(BIN)/autosel report --study tiny-correspondence --storage $(RESULTS_STORE) --out results/reports/tiny-correspondence

test: setup
	$(BIN)/python -m pytest -q

# the inner loop: everything but the tests marked slow (searches, Ray, subprocesses, wheels)
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
