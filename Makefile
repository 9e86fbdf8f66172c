# hotelbot — `make run` starts everything on the embedded default; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

# The machine's services, used by the real-service test run (override on the command line).
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/0
BROKER_TEST_URL ?= redis://127.0.0.1:6379/1
SERVICE_ENV := DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) CELERY_BROKER_URL=$(BROKER_TEST_URL)
# The development commands set DEBUG themselves (it is off by default; without it the dev secret key
# and other public development values refuse to start: docs/security.md).
DEV_ENV := DJANGO_DEBUG=1
# The embedded run must not inherit service URLs from the caller's environment.
EMBEDDED_ENV := env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL

.PHONY: help install run migrate seed test lint typecheck test-embedded test-services coverage bench fakes clean \
	drill drill-ci load

help:
	@echo "make run    start web, worker, beat and the fake providers (embedded default, no servers)"
	@echo "make test   ruff + mypy + pytest on the embedded default and on PostgreSQL/Redis"
	@echo "make bench  reliability benchmarks (writes bench-results.json)"
	@echo "make drill  fault drill on the real stack (EMBEDDED=1: SQLite + filesystem broker); drill-report.md"
	@echo "make drill-ci  the short drill subset CI runs"
	@echo "make load   webhook and reply latency/throughput under load (writes load-results.json)"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(DEV_ENV) $(PY) manage.py migrate --noinput
	$(DEV_ENV) $(PY) manage.py setup_periodic_tasks --prune

seed: migrate
	$(DEV_ENV) $(PY) manage.py seed_demo

run: seed
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

fakes: $(STAMP)
	$(DEV_ENV) $(PY) manage.py fake_providers

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

# Line and branch coverage of both runs, combined (the second run appends); `coverage` checks the floor.
COV_FLOOR ?= 90
COV_ARGS := --cov --cov-report=

test-embedded: $(STAMP)
	$(EMBEDDED_ENV) HOTELBOT_VAR_DIR=$(CURDIR)/var/test-embedded $(BIN)/pytest $(COV_ARGS)

test-services: $(STAMP)
	$(SERVICE_ENV) HOTELBOT_VAR_DIR=$(CURDIR)/var/test-services REQUIRE_SERVICES=1 $(BIN)/pytest $(COV_ARGS) --cov-append

coverage: $(STAMP)
	$(BIN)/coverage report --include='reliability/*,messaging/*' --skip-covered --fail-under=$(COV_FLOOR)

test: lint typecheck test-embedded test-services coverage

bench: $(STAMP)
	$(PY) -m bench

# The fault drill boots its own PostgreSQL, Redis and processes on free ports (EMBEDDED=1: none).
DRILL_FLAGS := $(if $(EMBEDDED),--embedded,)
drill: $(STAMP)
	$(PY) -m drill $(DRILL_FLAGS)

drill-ci: $(STAMP)
	$(PY) -m drill --ci $(DRILL_FLAGS)

load: $(STAMP)
	$(PY) -m drill.load

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache bench-results.json .coverage \
		drill-results.json drill-report.md drill-timeline.svg load-results.json
