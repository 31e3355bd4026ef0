# regno-api: gunicorn serving the scoring service, one worker per CPU it is given (WORKERS).
# Build: docker build -t regno-api .   Run: docker run -p 8000:8000 -e API_KEYS=... regno-api
# In compose and Kubernetes it listens on a unix socket in /run/regno behind nginx (service/proxy/).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# Wheels of the package, its pinned dependencies and every extra an image below installs. Only this stage has pip's
# build tools at work; nothing from it reaches an image but the wheels that image installs.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY scripts/build-wheels ./scripts/
# The pinned dependencies first, from the package's metadata alone: this layer is rebuilt only when a pin moves.
RUN scripts/build-wheels /wheels log,report,s3,mlflow,load
COPY config ./config
COPY model ./model
COPY service ./service
# Then the package itself, over the empty one the line above made.
RUN python -m pip wheel --quiet --no-deps --wheel-dir /wheels .

# The service: what serving imports and nothing else (install-wheels prunes CatBoost's plotting and pandas, and
# packaged test suites), as a non-root user. The Parquet, DuckDB and chart tools are in the tools image.
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BIND=0.0.0.0:8000 \
    MODEL_PATH=/opt/regno/model/regno_model.cbm
COPY scripts/install-wheels scripts/prune-site-packages /usr/local/bin/
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
# Asks gunicorn where BIND says it listens, a TCP port or compose's and the pod's unix socket.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "service.probe", "/health/live"]
# Exec form: gunicorn is PID 1 and gets SIGTERM itself, so in-flight requests finish (GRACEFUL_TIMEOUT).
CMD ["gunicorn", "-c", "/app/gunicorn.conf.py", "service.wsgi:app"]

# The model syncer (regno-sync) and regno-model: the service with MLflow's client and boto3 added, for a models:/
# or s3:// source as well as a folder. Only the syncer's containers run it; the api's image has neither.
FROM runtime AS sync
USER 0:0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels install-wheels /wheels mlflow,s3
USER 10001:10001
# Healthy while the syncer's passes keep coming (each one rewrites its status file), the source reachable or not.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 CMD ["regno-sync", "--check"]
CMD ["regno-sync"]

# The prediction log's tools: regno-log-sink (JetStream to Parquet), regno-log and regno-report, with pyarrow,
# DuckDB and matplotlib, which the api never imports.
FROM runtime AS tools
USER 0:0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels install-wheels /wheels log,report
USER 10001:10001
# Healthy while the sink's consumer is connected and fetching; no port of its own.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["regno-log-sink", "--check"]
CMD ["regno-log-sink"]

# mtail with the program that counts the proxy's own answers (refusals, 502, 504) by status: nginx logs them
# to mtail's socket in the run folder it shares with the proxy. Debian's mtail, as `make serve` runs it.
FROM debian:bookworm-20241202-slim AS proxy-answers
RUN apt-get update \
    && apt-get install -y --no-install-recommends mtail=3.0.0~rc50-1+b6 \
    && rm -rf /var/lib/apt/lists/*
COPY service/proxy/proxy_answers.mtail /etc/mtail/proxy_answers.mtail
USER 10001:10001
EXPOSE 3903
# mtail answers on its port (Debian's slim base has no wget; bash opens the connection).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3903"]
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
