"""The folder where gunicorn's workers keep Prometheus metrics: emptied at start, compacted as workers die.

prometheus_client's multiprocess mode gives each process its own files and never deletes counter or
histogram files, so a recycling worker pool would pile them up without bound. When a worker dies its
files are added into one archive file per type (their totals must survive it) and removed. Each gunicorn
master has archives of its own (named after it), so the main and bulk pools can share one folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from service.internals import add_metric_file

#: Metric types whose values outlive the process that counted them.
CUMULATIVE_TYPES = ("counter", "histogram", "summary")


def prepare(folder: Path) -> None:
    """Create the folder and delete what an earlier run left in it."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def archive_file(folder: Path, kind: str) -> Path:
    """This master's archive of one metric type (prometheus_client reads the type from the name's first part)."""
    return folder / f"{kind}_archive-{os.getpid()}.db"


def archive_dead_worker(folder: Path, pid: int) -> None:
    """Fold a dead worker's counters and histograms into the archive files, then drop its files."""
    mark_process_dead(pid, str(folder))  # its live gauges (workers alive, breaker state, model info) go
    for gauge in folder.glob(f"gauge_*_{pid}.db"):
        gauge.unlink()  # and the others too: a gauge describes a living process (the exporter's info is one)
    for kind in CUMULATIVE_TYPES:
        dead = folder / f"{kind}_{pid}.db"
        if not dead.exists():
            continue
        add_metric_file(dead, archive_file(folder, kind))
        os.unlink(dead)  # after the archive holds its values, so a scrape never loses a count
