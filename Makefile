# The two commands a fresh machine needs are `make demo` and `make test`; the rest are for daily work.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export MLOPS_HOME := $(CURDIR)
export UV_COMPILE_BYTECODE := 1
export UV_LINK_MODE := copy
PY := $(CURDIR)/.venv/bin/python
SVC := $(PY) -m mlops_dev.services
UV = $(shell command -v uv 2>/dev/null || echo "$(CURDIR)/.run/uv/bin/uv")

.PHONY: help install apt-packages setup lint test test-fast demo production stop status airflow deploy suite reproduce reprocess bench bench-report bench-ingest bench-serving bench-drift bench-score bench-shadow bench-memory clean compose-up compose-down compose-smoke

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(CURDIR)/.run/uv/bin/uv:
	@echo "[install] uv not found: installing it into .run/uv"
	@python3 -m venv $(CURDIR)/.run/uv && $(CURDIR)/.run/uv/bin/pip install --quiet uv

.venv/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(MAKE) --no-print-directory $(CURDIR)/.run/uv/bin/uv
	@echo "[install] syncing the locked environment into .venv (bytecode compiled)"
	@$(UV) sync --frozen --compile-bytecode --quiet
	@touch $@

install: .venv/.installed  ## create/refresh .venv from uv.lock

# Every Debian package the test suite installs, in one apt transaction started in the background as
# `make test` begins, so the downloads overlap the uv sync, the DB migration and the unit tests instead
# of a test waiting for each in turn. The installers inside the suite (serving/docker/apt-install.sh and
# its callers) are unchanged: they wait for this transaction's dpkg lock and then find their package, or
# install it themselves if this one failed (its log: .run/apt-packages.log). Not root: nothing starts.
TEST_APT_PACKAGES := docker.io iptables haproxy debootstrap chromium chromium-driver prometheus prometheus-alertmanager docker-compose redis-server

apt-packages:
	@mkdir -p .run; missing=$$(for p in $(TEST_APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "[install] apt, in the background (log .run/apt-packages.log):" $$missing; \
	    rm -f .run/apt-packages.pid; \
	    MLOPS_APT_BACKGROUND=1 setsid nohup bash serving/docker/apt-install.sh $$missing > .run/apt-packages.log 2>&1 < /dev/null & \
	    echo $$! > .run/apt-packages.pid; \
	fi

setup: install  ## install + start the embedded PostgreSQL + create/migrate the Airflow metadata DB + apply airflow_settings.yaml
	@$(SVC) setup

lint: install  ## ruff (with Airflow's AIR rules) and mypy
	@$(PY) -m ruff check .
	@$(PY) -m mypy include/mlops_pipeline
	@$(PY) -m mypy serving/mlops_serving

test: apt-packages setup lint  ## install, then lint and run every test
	@$(PY) -m pytest --durations=30

test-fast: install  ## unit tests only (no services)
	@$(PY) -m pytest -m "not integration and not docker"

demo: setup  ## install, start PostgreSQL, MLflow and Airflow; the scheduler runs the loop (backfills, first trigger, drift -> retrain -> canary); print a summary
	@$(PY) -m mlops_dev.demo

production: install  ## start PostgreSQL (migrated, as `make setup`) and the production shape on this machine: CeleryExecutor on Redis with two workers, S3 (moto), MLflow on PostgreSQL; `make stop` ends it
	@$(PY) -m mlops_dev.production up

stop:  ## stop everything `make demo` or `make production` started (serving containers and router included; PostgreSQL last)
	@test -x $(PY) && ($(PY) -m mlops_pipeline.deploy teardown >/dev/null 2>&1 || echo "[stop] no serving namespace to tear down") || true
	@test -x $(PY) && $(PY) -m mlops_dev.production down || true
	@test -x $(PY) && $(SVC) stop || true

status:  ## which local services run (PostgreSQL, Airflow, MLflow)
	@$(SVC) status

airflow: install  ## any Airflow CLI command in the project's environment: make airflow ARGS="dags list"
	@$(SVC) exec -- airflow $(ARGS)

deploy: install  ## run mlops_deploy through Airflow and follow it: make deploy ARGS="deploy|promote|rollback [--version N]" (or status|audit|teardown)
	@$(PY) -m mlops_dev.deploy $(ARGS)

suite: install  ## bootstrap an expectation suite: make suite ARGS="--start 2026-01-01 --days 14"
	@$(PY) -m mlops_pipeline suite $(ARGS)

reproduce: install  ## retrain a registered version from its pinned data versions, compare the model bytes: make reproduce ARGS="--version N"
	@$(PY) -m mlops_pipeline reproduce $(ARGS)

bench: bench-ingest bench-serving bench-drift bench-score bench-shadow bench-memory  ## every benchmark (results under tests/benchmarks/results/), then make bench-report
	@$(MAKE) --no-print-directory bench-report

bench-report: install  ## every goal met, missed or not measured from the results files, and the README's benchmark tables regenerated from them
	@$(PY) tests/benchmarks/goals.py
	@$(PY) tests/benchmarks/report.py

reprocess: install  ## after fixing a suite or the source: backfill mlops_ingest's failed (quarantined) days of a range and report each day: make reprocess ARGS="--from 2026-01-01 --to 2026-01-31 [--dataset NAME]"
	@$(PY) -m mlops_dev.reprocess $(ARGS)

bench-ingest: setup  ## DAG parse times vs `import airflow.sdk`, and a 90-day backfill on the real scheduler
	@$(PY) tests/benchmarks/bench_ingest.py

bench-serving: install  ## mlflow models serve vs bare FastAPI vs ours (± batching, ± HAProxy) with wrk
	@bash serving/docker/apt-install.sh --check wrk --check haproxy wrk haproxy
	@$(PY) tests/benchmarks/bench_serving.py

bench-drift: install  ## the monitor vs Evidently on everything, 1M rows x 20 features
	@$(PY) tests/benchmarks/bench_drift.py

bench-score: install  ## batch scoring (mlops_score's scorer) vs mlflow.pyfunc predict, 1M rows, time and peak memory
	@$(PY) tests/benchmarks/bench_score.py

bench-memory: setup  ## PSS of the embedded stack by service, and the embedded MLflow vs `mlflow server` with its own defaults
	@$(PY) tests/benchmarks/bench_memory.py

bench-shadow: install  ## what stable's clients pay while a shadow gets a copy of their traffic (client p50/p99, mirror on vs off)
	@$(PY) tests/benchmarks/bench_shadow.py

# docker-compose.yaml for real on this host. Where the official images cannot be pulled, their
# offline equivalents are built from the project's Debian base (include/compose/offline/). A .env with
# fresh secrets is written when there is none. Not part of `make test`: it needs many minutes.
compose-up: install  ## bring up docker-compose.yaml (offline-built images), wait until every service is healthy: make compose-up [ARGS="--project P"]
	@bash serving/docker/apt-install.sh --check docker-compose docker-compose
	@$(PY) -m mlops_dev.compose up $(ARGS)

compose-down:  ## stop what `make compose-up` started and delete its volumes: make compose-down [ARGS="--project P"]
	@$(PY) -m mlops_dev.compose down $(ARGS)

compose-smoke: install  ## the compose stack's smoke test: up as project mlops-smoke, ingest on the Celery worker, MLflow, Prometheus; then down
	@bash serving/docker/apt-install.sh --check docker-compose docker-compose
	@$(PY) -m pytest tests/compose/smoke_compose_stack.py --durations=0

clean: stop  ## remove local state (lake, Airflow home, the PostgreSQL cluster under .run, MLflow data, logs); keeps .venv
	rm -rf lake .airflow mlruns .run
