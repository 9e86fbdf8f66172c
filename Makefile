# hotelbot — `make run` starts everything on the embedded default; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

# The machine's services, used by the real-service test run (override on the command line).
# The test sessions commit without waiting for the WAL to reach the disk (synchronous_commit=off):
# what a commit guarantees to other sessions is unchanged, only an OS crash could lose the last
# commits, and no test crashes the machine's server (those that kill one start their own). It
# halves the time of the transactional tests (each ends by truncating every table).
PG_URL ?= postgres://postgres@127.0.0.1:5432/test?options=-c%20synchronous_commit%3Doff
REDIS_TEST_URL ?= redis://127.0.0.1:6379/0
BROKER_TEST_URL ?= redis://127.0.0.1:6379/1
SERVICE_ENV := DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) CELERY_BROKER_URL=$(BROKER_TEST_URL)
# The development commands set DEBUG themselves (it is off by default; without it the dev secret key
# and other public development values refuse to start: docs/security.md).
DEV_ENV := DJANGO_DEBUG=1
# The embedded run must not inherit service URLs from the caller's environment.
EMBEDDED_ENV := env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL

.PHONY: help install run migrate seed test test-fast fmt lint typecheck test-embedded test-services coverage \
	bench bench-scale bench-cost fakes clean drill drill-ci load

help: ## this list (every target that has a double-hash comment)
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## create .venv and install requirements-dev.txt

migrate: $(STAMP) ## apply migrations and the periodic tasks (embedded default unless DATABASE_URL)
	$(DEV_ENV) $(PY) manage.py migrate --noinput
	$(DEV_ENV) $(PY) manage.py setup_periodic_tasks --prune

seed: migrate ## the demo hotel, staff and FAQ
	$(DEV_ENV) $(PY) manage.py seed_demo

run: seed ## start web, worker, beat and the fake providers (embedded default, no servers)
	@echo ""
	@echo "  web + admin:      http://127.0.0.1:8000/admin/   (credentials printed above)"
	@echo "  webhook:          http://127.0.0.1:8000/webhooks/green-api/1101000001/   (the demo hotel's own URL; docs/hotels.md)"
	@echo "  API docs:         http://127.0.0.1:8000/api/docs/"
	@echo "  health:           http://127.0.0.1:8000/health/ready/   metrics: http://127.0.0.1:8000/metrics"
	@echo "  fake Green API:   http://127.0.0.1:8701/__fake__/requests"
	@echo "  fake DeepSeek:    http://127.0.0.1:8702/__fake__/requests"
	@echo "  try it:           $(DEV_ENV) $(PY) manage.py simulate_guest \"What time is check-out?\""
	@echo ""
	rm -rf var/prometheus && mkdir -p var/prometheus  # stale metric files of an earlier run (deploy/Procfile.dev)
	$(DEV_ENV) $(BIN)/honcho start -f deploy/Procfile.dev

fakes: $(STAMP) ## only the fake Green API and DeepSeek servers
	$(DEV_ENV) $(PY) manage.py fake_providers

lint: $(STAMP) ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy on the whole project
	$(BIN)/mypy .

fmt: $(STAMP) ## ruff format + ruff check --fix (the whole project)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Line and branch coverage of both runs, combined (the second run appends); `coverage` checks the floor.
# --durations: each run ends with its 15 slowest tests (where the next minute of `make test` is).
COV_FLOOR ?= 90
COV_ARGS := --cov --cov-report= --durations=15
# `python -m pytest`: the xdist workers start with this folder on sys.path and import
# tests/xdist_worker_env.py (own Redis databases and var dir per worker) before the settings load.
PYTEST := $(PY) -m pytest
# Three workers on two cores: the drill's and the stacks' workers mostly wait on their processes.
WORKERS ?= 3
# loadgroup: the tests that start whole stacks (tests/e2e) run one after another on one worker;
# --no-loadscope-reorder: the drill and the stacks go first (tests/conftest.py: _LongGroupsFirst).
XDIST := $(if $(filter-out 0 1,$(WORKERS)),-n $(WORKERS) --dist loadgroup --no-loadscope-reorder,)

# The services run runs every test; the embedded run only those that depend on the deployment (the
# `deployment` marker, decided in tests/conftest.py; the count is printed at the end of each run).
test-embedded: $(STAMP) ## pytest on SQLite + the filesystem broker: the tests that depend on the deployment
	$(EMBEDDED_ENV) HOTELBOT_VAR_DIR=$(CURDIR)/var/test-embedded $(PYTEST) $(XDIST) -m deployment $(COV_ARGS)

test-services: $(STAMP) ## pytest on PostgreSQL + Redis: every test (coverage appended)
	$(SERVICE_ENV) HOTELBOT_VAR_DIR=$(CURDIR)/var/test-services REQUIRE_SERVICES=1 $(PYTEST) $(XDIST) \
		$(COV_ARGS) --cov-append

coverage: $(STAMP) ## the combined coverage of both runs against the floor (COV_FLOOR, 90 %)
	$(BIN)/coverage report --include='console/*,reliability/*,messaging/*' --skip-covered --fail-under=$(COV_FLOOR)

# mypy (one core, about a minute) runs beside the embedded run, whose drill and stacks mostly wait.
test: lint ## what CI runs: lint, then mypy beside the embedded run, the services run, coverage
	$(MAKE) --no-print-directory -j2 typecheck test-embedded
	$(MAKE) --no-print-directory test-services
	$(MAKE) --no-print-directory coverage

# The inner loop: no PostgreSQL, no Redis, no stacks, no processes or browsers; SQLite in memory.
FAST_MARKERS := not e2e and not redis and not drill and not slow
test-fast: $(STAMP) ## quick pytest without servers (embedded; no e2e, Redis or slow tests; ARGS=... to narrow)
	$(EMBEDDED_ENV) HOTELBOT_VAR_DIR=$(CURDIR)/var/test-fast $(PYTEST) $(XDIST) -q -m "$(FAST_MARKERS)" $(ARGS)

bench: $(STAMP) ## reliability benchmarks (writes bench-results.json)
	$(PY) -m bench

bench-cost: $(STAMP) ## one guest message's CPU, SQL, Redis, sessions and latency vs a naive bot (QUICK=1: 150 messages)
	$(PY) -m bench.cost $(if $(QUICK),--quick,)

bench-scale: $(STAMP) ## every staff page on a year of 1,000 hotels vs one hotel (throwaway PostgreSQL DBs; SCALE=0.02 quick)
	$(PY) -m bench.scale --scale $(or $(SCALE),1.0)

# The fault drill boots its own PostgreSQL, Redis and processes on free ports (EMBEDDED=1: none).
DRILL_FLAGS := $(if $(EMBEDDED),--embedded,)
drill: $(STAMP) ## fault drill on the real stack (EMBEDDED=1: SQLite + filesystem broker); drill-report.md
	$(PY) -m drill $(DRILL_FLAGS)

drill-ci: $(STAMP) ## the drill's CI subset (shortened holds; the suite runs its quick form: docs/drills.md)
	$(PY) -m drill --ci $(DRILL_FLAGS)

load: $(STAMP) ## webhook and reply latency/throughput under load (writes load-results.json)
	$(PY) -m drill.load

clean: ## remove var/, caches and result files
	rm -rf var .pytest_cache .mypy_cache .ruff_cache bench-results.json bench-scale-results.json bench-cost-results.json .coverage \
		drill-results.json drill-report.md drill-timeline.svg load-results.json
