# One gate for developers and CI: `make test` = lint + types + the whole pytest suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# wildcard: jobs/ and bench/ may not exist yet, and ruff fails on a missing path.
SRC := $(wildcard wfray tests jobs bench)

.PHONY: venv lint typecheck test demo fmt

venv: $(STAMP)

# Reinstall only when the dependency list changes; the editable install tracks code edits.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)

typecheck: venv
	$(BIN)/mypy wfray

test: venv lint typecheck
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/python -m jobs.demo

fmt: venv
	$(BIN)/ruff format $(SRC)
	$(BIN)/ruff check --fix $(SRC)
