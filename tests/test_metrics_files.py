"""The multiprocess metrics folder (service/observe/metrics_files.py): emptied at start, compacted as workers die."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from service.observe.metrics_files import archive_dead_worker, archive_file, prepare

WORKER = """
from prometheus_client import Counter, Gauge, Histogram
Counter("jobs_total", "jobs", ["kind"]).labels("a").inc({count})
Histogram("took_seconds", "took", buckets=(0.1, 1.0)).observe(0.5)
Gauge("alive", "alive", multiprocess_mode="livesum").set(1)
import os; print(os.getpid())
"""


def _worker(folder: Path, count: int) -> int:
    """Run a process that records metrics into folder and exits; its pid."""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder))
    result = subprocess.run([sys.executable, "-c", WORKER.format(count=count)], env=env, capture_output=True,
                            text=True, check=True)
    return int(result.stdout)


def _totals(folder: Path) -> dict[tuple, float]:
    """What a scrape of folder would show."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in registry.collect() for sample in family.samples}


def test_prepare_empties_an_old_folder(tmp_path):
    """Files an earlier run left are deleted; other files are not touched."""
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("keep")
    prepare(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_dead_workers_are_folded_into_the_archive(tmp_path):
    """Totals survive dead workers, live gauges go, and the folder holds archives only, however many died."""
    pids = [_worker(tmp_path, count) for count in (3, 4, 5)]
    before = _totals(tmp_path)
    assert before[("jobs_total", (("kind", "a"),))] == 12
    assert before[("alive", ())] == 3
    for pid in pids:
        archive_dead_worker(tmp_path, pid)
    after = _totals(tmp_path)
    assert after[("jobs_total", (("kind", "a"),))] == 12
    assert after[("took_seconds_count", ())] == 3
    assert after[("took_seconds_bucket", (("le", "1.0"),))] == 3
    assert ("alive", ()) not in after
    assert sorted(path.name for path in tmp_path.iterdir()) == [archive_file(tmp_path, "counter").name, archive_file(tmp_path, "histogram").name]
