"""The spool's shipper as a process of its own, at low CPU priority, beside gunicorn's workers.

gunicorn.conf.py starts it when the prediction log is on and stops it on exit. Turning segments into
Parquet is background work: at nice 10 it takes the cores only when the workers leave them idle, and
it never holds a worker's interpreter. The workers' own shippers stand by and take over only when the
spool's oldest segment waits too long (this process died or stalled).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from prometheus_client import CollectorRegistry

from config import Settings, SettingsError
from service import quality
from service.observe.metrics import ServiceMetrics
from service.predictions import log_setup
from service.predictions.journal import SUFFIX as JOURNAL
from service.predictions.locks import owner_is_gone

log = logging.getLogger("regno")

#: Added to the process's nice value: below the workers, which serve requests.
NICENESS = 10
#: Seconds a stopping shipper waits for the workers to seal their last rows (gunicorn.conf.py's on_exit waits 30).
DRAIN_S = 15.0


def writers_alive(spool) -> bool:
    """True while a process that writes the spool (a worker, by its journal) lives."""
    return any(owner_is_gone(journal) is False for journal in spool.glob(f"journal-*{JOURNAL}"))


def drain(shipper, seconds: float = DRAIN_S) -> None:
    """Ship until the workers have sealed their last rows and are gone, or seconds pass, then once more.

    A SIGTERM to the whole process group (a terminal's Ctrl-C, `make run` stopped) reaches this process with the
    workers: one last round at once would miss what they seal on their way out, until the next start.
    """
    deadline = time.monotonic() + seconds
    while writers_alive(shipper.spool) and time.monotonic() < deadline:
        shipper.step()
        time.sleep(0.2)
    shipper.step()


def main() -> int:
    """Ship until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"regno prediction-log shipper: {error}", file=sys.stderr)
        return 2
    # Its metrics go to the folder gunicorn's workers share (PROMETHEUS_MULTIPROC_DIR), so /metrics shows them.
    metrics = ServiceMetrics(CollectorRegistry()) if settings.metrics_enabled else None
    _, shipper = log_setup.from_settings(settings, observer=metrics, index=quality.pass_index(settings))
    if shipper is None:
        return 0
    os.nice(NICENESS)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    log.info("prediction-log shipper: %s", settings.prediction_log_dir)
    while not stopping:
        shipper.step()
        time.sleep(0.5)
    drain(shipper)  # what the workers seal on their way out
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
