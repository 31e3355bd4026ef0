"""The folder where gunicorn's workers keep Prometheus metrics: emptied at start, compacted as workers die.

prometheus_client's multiprocess mode gives each process its own files and never deletes counter or
histogram files, so a recycling worker pool would pile them up without bound. When a worker dies its
files are added into one archive file per type (their totals must survive it) and removed.

The main and bulk pools share one folder, from containers that may each count process ids from 1: so under
gunicorn a process's files are named after its pool and its pid ("bulk-7", name_processes), and each master
has archives of its own named the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import values
from prometheus_client.multiprocess import mark_process_dead

from service.internals import add_metric_file

#: Metric types whose values outlive the process that counted them.
CUMULATIVE_TYPES = ("counter", "histogram", "summary")


def prepare(folder: Path) -> None:
    """Create the folder and delete what an earlier run left in it."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def process_name(pool: str, pid: int) -> str:
    """What a process of a pool names its metric files after: the pool and the pid, e.g. "bulk-7"."""
    return f"{pool}-{pid}"


def name_processes(pool: str) -> None:
    """Name this process's metric files, and its forked workers', after the pool and their pids (process_name).

    Call before any metric exists. prometheus_client asks for the name at every update, to see a fork: the name
    is made once per process.
    """
    made = {"pid": None, "name": ""}

    def identifier() -> str:
        pid = os.getpid()
        if pid != made["pid"]:
            made["pid"], made["name"] = pid, process_name(pool, pid)
        return made["name"]

    values.ValueClass = values.MultiProcessValue(identifier)


def archive_file(folder: Path, kind: str, pool: str) -> Path:
    """This master's archive of one metric type (prometheus_client reads the type from the name's first part)."""
    return folder / f"{kind}_archive-{process_name(pool, os.getpid())}.db"


def archive_dead_worker(folder: Path, pid: int, pool: str) -> None:
    """Fold a dead worker of this pool's counters and histograms into the archive files, then drop its files."""
    name = process_name(pool, pid)
    mark_process_dead(name, str(folder))  # its live gauges (workers alive, breaker state, model info) go
    for gauge in folder.glob(f"gauge_*_{name}.db"):
        gauge.unlink()  # and the others too: a gauge describes a living process (the exporter's info is one)
    for kind in CUMULATIVE_TYPES:
        dead = folder / f"{kind}_{name}.db"
        if not dead.exists():
            continue
        add_metric_file(dead, archive_file(folder, kind, pool))
        os.unlink(dead)  # after the archive holds its values, so a scrape never loses a count
