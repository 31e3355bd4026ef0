"""The multiprocess metrics folder (service/observe/metrics_files.py): emptied at start, compacted as workers die."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from service.observe.metrics_files import archive_dead_worker, archive_file, prepare, process_name

WORKER = """
from service.observe.metrics_files import name_processes
name_processes("{pool}")
from prometheus_client import Counter, Gauge, Histogram
Counter("jobs_total", "jobs", ["kind"]).labels("a").inc({count})
Histogram("took_seconds", "took", buckets=(0.1, 1.0)).observe(0.5)
Gauge("alive", "alive", multiprocess_mode="livesum").set(1)
import os; print(os.getpid())
"""


def _worker(folder: Path, count: int, pool: str = "main") -> int:
    """Run a process of a pool that records metrics into folder and exits; its pid."""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder))
    result = subprocess.run([sys.executable, "-c", WORKER.format(count=count, pool=pool)], env=env,
                            capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
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
        archive_dead_worker(tmp_path, pid, "main")
    after = _totals(tmp_path)
    assert after[("jobs_total", (("kind", "a"),))] == 12
    assert after[("took_seconds_count", ())] == 3
    assert after[("took_seconds_bucket", (("le", "1.0"),))] == 3
    assert ("alive", ()) not in after
    assert sorted(path.name for path in tmp_path.iterdir()) == [archive_file(tmp_path, "counter", "main").name,
                                                                archive_file(tmp_path, "histogram", "main").name]


def test_two_pools_share_one_folder(tmp_path):
    """Files are named after pool and pid, so pools whose pids may repeat (containers) never share a file; a dead
    bulk worker is archived apart from the main pool's, and every count stays in the scrape."""
    main, bulk = _worker(tmp_path, 3, "main"), _worker(tmp_path, 4, "bulk")
    names = {path.name for path in tmp_path.iterdir()}
    assert f"counter_{process_name('main', main)}.db" in names and f"counter_{process_name('bulk', bulk)}.db" in names
    archive_dead_worker(tmp_path, bulk, "bulk")
    names = {path.name for path in tmp_path.iterdir()}
    assert not [name for name in names if process_name("bulk", bulk) in name and "archive" not in name]
    assert f"counter_{process_name('main', main)}.db" in names
    totals = _totals(tmp_path)
    assert totals[("jobs_total", (("kind", "a"),))] == 7
    assert totals[("alive", ())] == 1  # the main worker's live gauge; the dead bulk worker's went
