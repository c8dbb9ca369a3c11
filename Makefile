# Two set-up commands for a new user: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DASHTAM_DATA_DIR ?= $(CURDIR)/data
export DASHTAM_DATA_DIR

.PHONY: demo test ui lint clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's dependencies change.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/dashtam demo

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

ui: $(INSTALLED)
	DAGSTER_HOME="$$($(BIN)/python -m dashtam_pipeline.instance)" \
	  $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

lint: $(INSTALLED)
	$(BIN)/ruff check dashtam_pipeline dashtam_pipeline_tests

clean-data:
	rm -rf "$(DASHTAM_DATA_DIR)"/lake "$(DASHTAM_DATA_DIR)"/warehouse.duckdb "$(DASHTAM_DATA_DIR)"/dagster_home "$(DASHTAM_DATA_DIR)"/state.db
