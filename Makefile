# The two commands of the README:
#   make demo   set everything up, start the local stack, run the whole asset graph, print a summary
#   make test   set everything up, start the local stack, lint, run the whole test suite
# Configuration: LAKEHOUSE_* environment variables (see README).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLINK_VENV := streaming/.venv
BI_VENV := bi/.venv
export DAGSTER_HOME ?= $(CURDIR)/.lakehouse/dagster

.PHONY: help setup system-deps demo test test-automation lint unit ui up down status logs docs clean bench-ingest bench-cdc bench-query bench-realtime bench-bi bench-lifecycle bench-freshness

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: system-deps $(BIN)/.installed $(FLINK_VENV)/.installed $(BI_VENV)/.installed dbt_project/target/manifest.json  ## install everything (idempotent)
	@$(BIN)/lakehouse stack fetch

system-deps:  ## Java, Maven and PostgreSQL from Debian packages, when missing
	@bash scripts/system-deps.sh

$(BIN)/.installed: pyproject.toml requirements.lock
	@echo "setup: main Python environment in $(VENV) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $@

$(FLINK_VENV)/.installed: streaming/requirements.txt streaming/requirements.lock
	@echo "setup: PyFlink environment in $(FLINK_VENV) (its own: apache-flink pins conflict with the main one) ..."
	@test -x $(FLINK_VENV)/bin/python || $(PYTHON) -m venv $(FLINK_VENV)
	@$(FLINK_VENV)/bin/python -m pip install -q --upgrade pip
	@$(FLINK_VENV)/bin/python -m pip install -q -c streaming/requirements.lock -r streaming/requirements.txt
	@$(FLINK_VENV)/bin/python -c "import pyflink; print('setup: pyflink', pyflink.__file__)"
	@touch $@

$(BI_VENV)/.installed: bi/requirements.txt bi/requirements.lock
	@echo "setup: Superset environment in $(BI_VENV) (its own: Superset pins SQLAlchemy < 2 and older pandas) ..."
	@test -x $(BI_VENV)/bin/python || $(PYTHON) -m venv $(BI_VENV)
	@$(BI_VENV)/bin/python -m pip install -q --upgrade pip
	@$(BI_VENV)/bin/python -m pip install -q -c bi/requirements.lock -r bi/requirements.txt
	@$(BI_VENV)/bin/python -c "import superset, trino, pinotdb; print('setup: superset', superset.__file__)"
	@touch $@

dbt_project/target/manifest.json: $(BIN)/.installed $(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f) dbt_project/dbt_project.yml
	@cd dbt_project && ../$(BIN)/dbt parse --quiet --profiles-dir .

demo: setup  ## stack up, generate events, materialize every asset, print a summary
	@$(BIN)/lakehouse demo

up: setup  ## start the local stack
	@$(BIN)/lakehouse stack up

down:  ## stop the local stack (data is kept)
	@if [ -x $(BIN)/lakehouse ]; then $(BIN)/lakehouse stack down; fi

status:  ## each service, its port and health
	@$(BIN)/lakehouse stack status

logs:  ## last lines of every service's log
	@$(BIN)/lakehouse stack logs

lint: $(BIN)/.installed  ## ruff over the code
	@$(BIN)/ruff check lakehouse assets_tests streaming scripts benchmarks bi
	@$(BIN)/ruff format --check lakehouse assets_tests streaming scripts benchmarks bi

unit: $(BIN)/.installed  ## tests that need no running service
	@$(BIN)/pytest -m "not stack"

test: export LAKEHOUSE_STACK_WITHOUT ?= dagster-daemon
test: setup lint  ## the whole suite on the live stack (starts it if needed; no automation daemon)
	@$(BIN)/lakehouse stack up
	@$(BIN)/pytest

test-automation: export LAKEHOUSE_STACK_WITHOUT ?= dagster-daemon
test-automation: setup  ## automation end to end: a namespace's daemon keeps every layer fresh (15-30 min)
	@$(BIN)/lakehouse stack up
	@$(BIN)/pytest -m automation assets_tests/test_end_to_end.py

bench-ingest: setup  ## benchmark: Kafka -> raw Delta against a plain consume loop
	@$(BIN)/lakehouse stack up
	@$(BIN)/python benchmarks/bench_ingest.py

bench-cdc: setup  ## benchmark: CDC commit-to-silver latency, MERGE against append throughput
	@$(BIN)/lakehouse stack up
	@$(BIN)/python benchmarks/bench_cdc.py

bench-query: setup  ## benchmark: warm Trino dashboard queries on gold, Spark backfill throughput
	@$(BIN)/lakehouse stack up
	@$(BIN)/python benchmarks/bench_query.py

bench-realtime: setup  ## benchmark: Pinot dashboard queries at 50/s, event-to-queryable freshness
	@$(BIN)/lakehouse stack up
	@$(BIN)/python benchmarks/bench_realtime.py

ui: setup  ## the stack with Dagster's webserver, daemon and code server; opens the UI
	@$(BIN)/lakehouse stack up
	@$(BIN)/lakehouse ui

docs: setup  ## serve the dbt docs site the pipeline built (http://127.0.0.1:8580)
	@$(BIN)/lakehouse docs

clean: down  ## remove the environments and all local data (the download cache stays)
	rm -rf $(VENV) $(FLINK_VENV) $(BI_VENV) .lakehouse dbt_project/target

bench-bi: setup  ## benchmark: Superset chart data against the same SQL sent straight to Trino/Pinot, dashboard render time
	@$(BIN)/lakehouse stack up
	@$(BIN)/python benchmarks/bench_bi.py

bench-freshness: setup  ## benchmark: produced -> queryable in bronze, today's gold and Pinot, by automation alone
	@$(BIN)/lakehouse stack up
	@$(BIN)/python benchmarks/bench_freshness.py $(ARGS)

bench-lifecycle: setup  ## benchmark: archive/restore to the cold tier against a plain boto3 copy, PostgreSQL RTO
	@$(BIN)/lakehouse stack up
	@$(BIN)/python benchmarks/bench_lifecycle.py
