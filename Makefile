# Two set-up commands for a new user: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DASHTAM_DATA_DIR ?= $(CURDIR)/data
export DASHTAM_DATA_DIR

.PHONY: demo test test-dates test-at ui lint clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's dependencies change.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/dashtam demo

# The whole suite on two workers (the deployment test, with its own PostgreSQL, daemon and
# webserver, runs alone after it: its daemon's timing suffers beside the rest), then the
# date-sensitive tier (tests marked `dates`) at
# each of the instants in dashtam_pipeline_tests/at_date.py: a weekend, a market holiday,
# the day after one, a year end that is already the next day in UTC, New York's spring
# daylight-saving jump, and a date years ahead. A test that only passes this week fails here.
test: $(INSTALLED)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not deployment"
	$(BIN)/python -m pytest -q -m deployment -p no:cacheprovider
	@$(MAKE) --no-print-directory test-dates

DATES ?= weekend holiday after_holiday year_end dst_spring years_ahead
# Each instant moves the wall clock of every Python process of the run
# (dashtam_pipeline_tests/at_date.py, time-machine); `timeout` ends a run that hangs.
test-dates: $(INSTALLED)
	@for when in $(DATES); do \
	  timeout --kill-after=30 900 $(BIN)/python -m dashtam_pipeline_tests.at_date $$when -- \
	    $(BIN)/python -m pytest -q -n 2 --dist loadgroup -m dates -p no:cacheprovider || exit 1; \
	done

# The whole suite at one instant, e.g. `make test-at AT=2030-02-28T23:30:00Z` (or a name
# from at_date.FROZEN_DATES such as AT=holiday).
test-at: $(INSTALLED)
	$(BIN)/python -m dashtam_pipeline_tests.at_date "$(AT)" -- $(BIN)/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider

ui: $(INSTALLED)
	DAGSTER_HOME="$$($(BIN)/python -m dashtam_pipeline.instance)" \
	  $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

lint: $(INSTALLED)
	$(BIN)/ruff check dashtam_pipeline dashtam_pipeline_tests

clean-data:
	rm -rf "$(DASHTAM_DATA_DIR)"/lake "$(DASHTAM_DATA_DIR)"/warehouse.duckdb "$(DASHTAM_DATA_DIR)"/dagster_home "$(DASHTAM_DATA_DIR)"/state.db "$(DASHTAM_DATA_DIR)"/state.db-wal "$(DASHTAM_DATA_DIR)"/state.db-shm
