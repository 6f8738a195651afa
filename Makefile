# The two quick-start commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch is installed only when the environment has no torch yet.
# GPU users: `make setup TORCH_SPEC=torch` (pulls the CUDA build), or
# `make setup VENV_FLAGS=--system-site-packages` to reuse an installed CUDA torch.
TORCH_SPEC ?= torch==2.13.0
VENV_FLAGS ?=
BIN := $(VENV)/bin

.PHONY: setup run test test-fast clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(BIN)/autosel search --model tiny

test: setup
	$(BIN)/python -m pytest -q

# the inner loop: everything but the tests marked slow (searches, Ray, subprocesses, wheels)
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
