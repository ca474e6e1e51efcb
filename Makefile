# Two commands: `make run` serves the registry, `make test` passes the whole suite.
# Both create .venv/ on first use (and refresh it when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/berth serve $(ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check registry client tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports  # the layering contracts of .importlinter

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.dev-installed
	$(BIN)/pytest -m 'not slow' $(PYTEST_ARGS)

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/registry_bench.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
