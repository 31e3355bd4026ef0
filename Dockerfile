# syntax=docker/dockerfile:1
# regno-api: gunicorn serving the scoring service, one worker per CPU it is given (WORKERS).
# Build: docker build -t regno-api .   Run: docker run -p 8000:8000 -e API_KEYS=... regno-api
# In compose and Kubernetes it listens on a unix socket in /run/regno behind nginx (service/proxy/).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# Wheels of the package and its pinned dependencies (and of Locust and MLflow's client, for the load and sync
# images). Only this
# stage has pip's build tools at work; nothing from it reaches the runtime image but the wheels it needs.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY config ./config
COPY model ./model
COPY service ./service
COPY scripts ./scripts
RUN scripts/build-wheels /wheels load,mlflow

# The service: runtime dependencies only, as a non-root user.
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BIND=0.0.0.0:8000 \
    MODEL_PATH=/opt/regno/model/regno_model.cbm
COPY scripts/install-wheels /usr/local/bin/install-wheels
# The wheels are mounted for the install, never copied into a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels install-wheels /wheels \
    && groupadd --system --gid 10001 regno \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin regno \
    && install -d -o 10001 -g 10001 /run/regno \
    && install -d -o 10001 -g 10001 /var/lib/regno /var/lib/regno/predictions /var/lib/regno/parquet \
    && install -d -o 10001 -g 10001 /models /srv/published-models
WORKDIR /app
COPY gunicorn.conf.py ./
# The bundled model, where MODEL_PATH points: mount another .cbm over it, or point MODEL_PATH elsewhere.
COPY model/regno_model.cbm /opt/regno/model/regno_model.cbm
USER 10001:10001
EXPOSE 8000
# gunicorn.conf.py puts the Prometheus multiprocess folder and the workers' heartbeat files in /dev/shm
# (tmpfs) whenever it is writable, as it is in a container.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
# Exec form: gunicorn is PID 1 and gets SIGTERM itself, so in-flight requests finish (GRACEFUL_TIMEOUT).
CMD ["gunicorn", "-c", "/app/gunicorn.conf.py", "service.wsgi:app"]

# The model syncer (regno-sync) and regno-model: the service with MLflow's client added, for a models:/ source as
# well as a folder or s3://. Only the syncer's containers run it; the api's image stays without MLflow.
FROM runtime AS sync
USER 0:0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels install-wheels /wheels mlflow
USER 10001:10001
HEALTHCHECK NONE
CMD ["regno-sync"]

# mtail with the program that counts the proxy's own answers (refusals, 502, 504) by status: nginx logs them
# to mtail's socket in the run folder it shares with the proxy. Debian's mtail, as `make serve` runs it.
FROM debian:bookworm-20241202-slim AS proxy-answers
RUN apt-get update \
    && apt-get install -y --no-install-recommends mtail=3.0.0~rc50-1+b6 \
    && rm -rf /var/lib/apt/lists/*
COPY service/proxy/proxy_answers.mtail /etc/mtail/proxy_answers.mtail
USER 10001:10001
EXPOSE 3903
HEALTHCHECK NONE
CMD ["mtail", "-progs", "/etc/mtail", "-logs", "unixgram:///run/regno/proxy-answers.sock", "-port", "3903", "-logtostderr"]

# Locust with the project's locustfile, for compose's `load` profile.
FROM runtime AS load
USER 0:0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels install-wheels /wheels load
COPY loadtest /app/loadtest
# The simulator the locustfile draws records from lives in training/, which the wheel leaves out.
COPY training /app/training
ENV PYTHONPATH=/app
USER 10001:10001
HEALTHCHECK NONE
CMD ["locust", "-f", "/app/loadtest/locustfile.py"]
