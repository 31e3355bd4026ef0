"""gunicorn settings, read through config/, and the hooks the service needs; nothing else lives here."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from config import Settings, SettingsError
from service.http.worker_errors import worker_class as _worker_class

try:
    _settings = Settings.from_env()
except SettingsError as _error:
    sys.exit(f"regno-api cannot start: {_error}")

# The bulk pool (POOL=bulk) serves batches, explanations and labels beside the main pool, on the same host and
# folders: the main pool alone runs the first model sync, the syncer and the log's shipper, and empties the metrics
# folder the two pools share.
_bulk = _settings.pool == "bulk"
# prometheus_client picks its multiprocess mode when it is first imported, so the folder must be in the
# environment before the app (and the library) load, in the master, before any worker exists.
_metrics_dir_is_ours = _settings.prometheus_multiproc_dir is None
# Every metric update writes to these memory-mapped files: on tmpfs (/dev/shm) they never touch a disk.
_shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
_metrics_dir = _settings.prometheus_multiproc_dir or Path(tempfile.mkdtemp(prefix="regno-metrics-", dir=_shm))
_metrics_dir.mkdir(parents=True, exist_ok=True)  # emptied in on_starting, which runs once, not on reloads
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)
# The pools share that folder from containers that may each count pids from 1: files named after pool and pid.
from service.observe.metrics_files import name_processes  # noqa: E402 - only once the folder is in the environment

name_processes(_settings.pool)
# The workers' heartbeat files are touched every few seconds: on tmpfs too, when there is one.
worker_tmp_dir = _shm
# Processes the master starts beside the workers (the prediction log's shipper), stopped in on_exit.
_children: list = []

# A remote model source: the first sync runs before the app (and its model) loads, as the pod's init
# container does; it waits, saying so once, while there is no verified model to serve.
if _settings.model_source and not _bulk and subprocess.run([sys.executable, "-m", "service.lifecycle.sync_main",
                                              "--until-ready"]).returncode != 0:
    sys.exit("regno-api cannot start: no verified model from MODEL_SOURCE (regno-sync said why above)")

wsgi_app = "service.wsgi:app"
bind = [_settings.pool_bind]
workers = _settings.pool_workers
# gunicorn's own refusals (a request it cannot parse, or over its limits) in the envelope, not its HTML page.
worker_class = _worker_class(_settings.worker_class, _settings.threads)
threads = _settings.threads
if _settings.forwarded_hops:
    # Behind the proxy, gunicorn reads whatever nginx passed: nginx alone enforces the limits, and answers over them
    # in the envelope. nginx takes a request line or a header line up to 8 kB, 32 kB of header lines in all
    # (large_client_header_buffers 4 8k in service/proxy/nginx.conf.j2) and counts bytes, not fields: 32 kB holds
    # 8,192 four-byte fields ("a:\r\n"), and nginx adds its own. Alone, gunicorn keeps its stricter defaults.
    limit_request_line = 8190  # gunicorn's largest; a line in nginx's 8 kB buffer is at most that with its CRLF
    limit_request_fields = 32768 // 4 + 64
    limit_request_field_size = 2 * 8192  # nginx passes "Name:value" on as "Name: value", a byte longer
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# Preloading loads the model once in the master; the forked workers share its memory pages.
preload_app = _settings.preload
loglevel = _settings.log_level.lower()
accesslog = None  # the app writes its own JSON access line
# The control socket sits at one fixed path per user, which clashes between instances; nothing here uses it.
control_socket_disable = True


def on_starting(server):
    """Empty the metrics folder of an earlier run's files; without preload, also check the app can load (one line if not)."""
    from service.observe.metrics_files import prepare

    if _bulk:
        from service.lifecycle.bulk_pool import lower_priority

        lower_priority(_settings.bulk_nice)  # the workers inherit it
    if _metrics_dir_is_ours or not _bulk:
        prepare(_metrics_dir)
    if not preload_app:
        from service import create_app_or_exit

        create_app_or_exit(shared_metrics=True)  # loads and checks only; no prediction runs in the master


def when_ready(server):
    """Freeze what the master loaded (the model first): forked workers then share those pages, as the GC never writes them.

    Then, in the main pool, start the prediction log's shipper, a process of its own at low priority, when the log
    is on, and the model syncer when models come from a source (one per host, not one per worker).
    """
    import gc

    gc.collect()
    gc.freeze()
    if _bulk:
        return
    if _settings.prediction_log_on:
        _children.append(subprocess.Popen([sys.executable, "-m", "service.predictions.ship_main"]))
    if _settings.model_source:
        _children.append(subprocess.Popen([sys.executable, "-m", "service.lifecycle.sync_main"]))


def post_worker_init(worker):
    """Start the worker's own Sentry client, warm-up prediction and gauges: none of them survive a fork."""
    from service import start_worker

    start_worker(worker.wsgi)


def post_request(worker, req, environ, resp):
    """In the bulk pool, give back the memory a request took, after its answer has gone."""
    if _bulk:
        from service.lifecycle.bulk_pool import release_memory

        release_memory()


def worker_exit(server, worker):
    """Write this worker's queued prediction-log rows and Sentry events before it goes."""
    from service import stop_worker

    stop_worker(worker.wsgi)


def child_exit(server, worker):
    """Fold a dead worker's metric files into the archive, so worker recycling does not pile files up."""
    from service.observe.metrics_files import archive_dead_worker

    archive_dead_worker(_metrics_dir, worker.pid, _settings.pool)


def on_exit(server):
    """Stop the shipper (it ships what the workers sealed on their way out) and the syncer; remove our metrics dir."""
    for child in _children:
        child.terminate()
        try:
            child.wait(30)
        except Exception:  # noqa: BLE001 - a shipper that will not stop is killed; its segments ship next time
            child.kill()
    if _metrics_dir_is_ours:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
