"""regno-replay on a simulated week of the log: passes per second and peak memory, against two baselines.

    python -m loadtest.bench.replay [--passes 5000000] [--workers 0]

Builds a week of passes straight into the log's Parquet layout: the simulator's DISTINCT records, scored once
by the bundled model (the answers the log holds) and written as the log writes them (scored_row, orjson, the
shipper's Arrow conversion), then tiled with their own pass ids and times spread evenly over 7 days. One pass
in RESEND_EVERY is logged twice (a resent record, replayed once), one row in FAIL_EVERY failed validation
(skipped), and LABELLED_SHARE of the passes have a label in labels/. The candidate is the bundled model again,
published to a folder source with a pick threshold of its own (CANDIDATE_THRESHOLD), so some picks flip.

Then, in the same run: DuckDB's read of the week's passes alone (the replay's query, no scoring); the scoring
engine alone on one batch in one process (times the cores: what scoring could reach with no reading or
writing); regno-replay itself on the first day and on the whole week, as a separate process, its memory and
its workers' sampled from /proc while it runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson

from loadtest.bench.record import machine
from loadtest.servers import ROOT, children, memory
from model import BUNDLED_MODEL
from model.engine import ScoringEngine
from model.records import parse_record
from model.registry import CANDIDATE, publish, write_pointer
from model.routing import ModelSlot, Routing
from model.scorer import Scorer
from service.predictions.rows import LABELS, PREDICTIONS, failed_row, scored_row
from training.simulate import simulate

#: Distinct simulated records; the week repeats them with other pass ids and times.
DISTINCT = 50_000
DAYS = 7
WEEK_START = datetime(2026, 11, 30, tzinfo=timezone.utc)
#: One pass in RESEND_EVERY is logged a second time, RESEND_AFTER_MS later.
RESEND_EVERY, RESEND_AFTER_MS = 50, 5_000
#: One row in FAIL_EVERY failed validation.
FAIL_EVERY = 200
LABELLED_SHARE = 0.3
CANDIDATE_VERSION, CANDIDATE_THRESHOLD = "bench-candidate", 0.6
SEED = 20261207
_DAY_MS = 86_400_000


def _distinct_rows(count: int) -> tuple[object, list[str]]:
    """The log's Arrow table of count simulated passes scored by the bundled model, and their true plates."""
    passes = simulate(count, SEED)
    records = [parse_record(one.record) for one in passes]
    scorer = Scorer.load(BUNDLED_MODEL)
    results = ScoringEngine(0.5).score(records, Routing(ModelSlot.of(scorer, 32)))
    # As the log writes a row: the tuple, one JSON line, decoded and turned into Arrow by the shipper.
    rows = [orjson.loads(orjson.dumps(scored_row("bench", "batch", result, record, 1.0)))
            for result, record in zip(results, records)]
    return PREDICTIONS.arrow_table(rows), [one.plate for one in passes]


def _failed_rows(count: int):
    """The log's Arrow table of count rows that failed validation."""
    row = orjson.loads(orjson.dumps(failed_row("bench", "batch", "time_check", "must be a timestamp", 1.0)))
    return PREDICTIONS.arrow_table([row] * count)


def _set(table, name: str, values):
    """table with column name replaced by values (an Arrow array, cast to the column's type)."""
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(name), values.cast(table.schema.field(name).type))


def _write_by_day(table, folder: Path, name: str) -> None:
    """Write a table of rows as zstd Parquet, one file per UTC day of its ts, as the log lays its files out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    days = table.column("ts").cast(pa.int64()).to_numpy() // _DAY_MS
    for day in np.unique(days):
        partition = folder / f"day={np.datetime64(int(day), 'D')}"
        partition.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(days == day)), partition / f"{name}.parquet", compression="zstd")


def build_week(root: Path, passes: int, distinct: int = DISTINCT) -> dict:
    """A week of `passes` passes (plus resent and failed rows, and labels) under root; what was written."""
    import pyarrow as pa

    distinct = min(distinct, passes)
    base, plates = _distinct_rows(distinct)
    true_regno = pa.array(plates)
    spacing_ms = DAYS * _DAY_MS / passes
    start_ms = int(WEEK_START.timestamp() * 1000)
    written = {"passes": 0, "rows": 0, "failed": 0, "labels": 0}
    for tile, first in enumerate(range(0, passes, distinct)):
        count = min(distinct, passes - first)
        numbers = np.arange(first, first + count)
        ts = pa.array(start_ms + (numbers * spacing_ms).astype(np.int64), pa.timestamp("ms", tz="UTC"))
        ids = pa.array([f"{number:016x}" for number in numbers])
        rows = _set(_set(base.slice(0, count), "ts", ts), "pass_id", ids)
        resent_at = np.flatnonzero(numbers % RESEND_EVERY == 0)
        resent = rows.take(resent_at)
        resent = _set(_set(resent, "ts", pa.array(ts.to_numpy()[resent_at].astype(np.int64) + RESEND_AFTER_MS,
                                                     pa.timestamp("ms", tz="UTC"))), "cache", pa.repeat("hit-l1",
                                                                                                         len(resent_at)))
        failed_at = np.flatnonzero(numbers % FAIL_EVERY == 1)
        failed = _set(_failed_rows(len(failed_at)), "ts", ts.take(pa.array(failed_at)))
        day_rows = pa.concat_tables([rows, resent, failed])
        _write_by_day(day_rows, root, f"bench-{tile:05d}")
        labelled_at = np.flatnonzero((numbers * 7919) % 1000 < LABELLED_SHARE * 1000)
        _write_by_day(_labels(rows.take(labelled_at), true_regno.take(pa.array(labelled_at)), first),
                      root / LABELS.folder, f"bench-{tile:05d}")
        written["passes"] += count
        written["rows"] += day_rows.num_rows
        written["failed"] += len(failed_at)
        written["labels"] += len(labelled_at)
    return written


def _labels(passes, true_regno, first: int):
    """The label rows (LABELS' schema) of logged passes and their true plates, each arriving a minute after its pass."""
    import pyarrow as pa
    import pyarrow.compute as pc

    count = passes.num_rows
    arrived = pa.array(passes.column("ts").cast(pa.int64()).to_numpy() + 60_000, pa.timestamp("ms", tz="UTC"))
    columns = {
        "ts": arrived, "pass_id": passes.column("pass_id"), "request_id": passes.column("request_id"),
        "pass_ts": passes.column("ts"), "true_regno": true_regno, "label_source": pa.repeat("bench", count),
        "labelled_at": arrived, "label": pc.equal(passes.column("afts_regno_ai"), true_regno),
        **{name: passes.column(name) for name in ("model", "arm", "positive", "regno", "source")},
        "pick_correct": pc.equal(passes.column("regno"), true_regno),
        "camera_correct": pc.equal(passes.column("regno_recognize"), true_regno),
        "label_id": pa.array([f"bench-label-{first}-{index}" for index in range(count)]),
        "key_name": pa.repeat("bench", count),
    }
    schema = LABELS.arrow_schema()
    return pa.table([columns[name].cast(field.type) if name in columns else pa.nulls(count, field.type)
                     for name, field in zip(LABELS.columns, schema)], schema=schema)


def read_only(root: Path, window) -> tuple[int, float]:
    """DuckDB's read of the window's passes alone, as the replay reads them: (passes, seconds)."""
    from service.predictions.query import connect
    from service.replay.passes import pass_batches, prepare

    started = time.perf_counter()
    connection = connect(root)
    with tempfile.TemporaryDirectory(prefix="regno-replay-bench-") as spill:
        prepare(connection, window, Path(spill))
        passes = sum(batch.num_rows for batch in pass_batches(connection, window))
    return passes, time.perf_counter() - started


def engine_only(root: Path, window) -> tuple[int, float]:
    """The scoring engine alone, one process, on the first batch of the window's passes: (passes, seconds)."""
    from service.predictions.query import connect
    from service.replay.passes import pass_batches
    from service.replay.scoring import records_of

    from service.replay.passes import prepare

    connection = connect(root)
    with tempfile.TemporaryDirectory(prefix="regno-replay-bench-") as spill:
        prepare(connection, window, Path(spill))
        batch = next(pass_batches(connection, window))
    scorer = Scorer.load(BUNDLED_MODEL)
    scorer.probe()
    engine, routing = ScoringEngine(CANDIDATE_THRESHOLD), Routing(ModelSlot.of(scorer, 32))
    started = time.perf_counter()
    engine.score(records_of(batch), routing)
    return batch.num_rows, time.perf_counter() - started


class Sampler(threading.Thread):
    """Samples the RSS of a process and of its children every period until it ends: the peaks, in kB."""

    def __init__(self, pid: int, period_s: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.period_s = pid, period_s
        self.parent = self.workers = self.total = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sample until stopped or the process is gone."""
        while not self.stopped.wait(self.period_s):
            try:
                parent = memory(self.pid)[0]
                workers = [memory(child)[0] for child in children(self.pid)]
            except (FileNotFoundError, ProcessLookupError, KeyError):
                continue
            self.parent = max(self.parent, parent)
            self.workers = max([self.workers, *workers])
            self.total = max(self.total, parent + sum(workers))


def run_replay(args: list[str], env: dict) -> tuple[float, Sampler, str]:
    """regno-replay as its own process: (seconds, its memory's peaks, its JSON summary); fails loudly if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "service.replay.main", *args, "--json"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    sampler = Sampler(process.pid)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"regno-replay exited {process.returncode}: {err.decode()[-2000:]}")
    return seconds, sampler, out.decode()


def main(argv: list[str] | None = None) -> int:
    """Build the week, measure the baselines and the replay, print the table."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=5_000_000, help="passes in the week (default 5,000,000)")
    parser.add_argument("--workers", type=int, default=0, help="regno-replay's --workers (0: one per core)")
    args = parser.parse_args(argv)
    from service.report.data import Window

    with tempfile.TemporaryDirectory(prefix="regno-replay-bench-") as temporary:
        folder = Path(temporary)
        root, source = folder / "parquet", folder / "models"
        started = time.perf_counter()
        written = build_week(root, args.passes)
        built_s = time.perf_counter() - started
        publish(BUNDLED_MODEL, source, CANDIDATE_VERSION, {"threshold": CANDIDATE_THRESHOLD})
        write_pointer(source, CANDIDATE, CANDIDATE_VERSION)
        week = Window(WEEK_START, WEEK_START + timedelta(days=DAYS))
        first_day = Window(WEEK_START, WEEK_START + timedelta(days=1))
        read_passes, read_s = read_only(root, week)
        engine_passes, engine_s = engine_only(root, week)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        common = ["--source", str(source), "--version", "candidate", "--dir", str(root), "--workers", str(args.workers)]
        runs = {}
        for name, window in (("first day", first_day), ("whole week", week)):
            seconds, peaks, summary = run_replay([*common, "--from", window.start.isoformat(), "--to",
                                                  window.end.isoformat()], env)
            runs[name] = (orjson.loads(summary), seconds, peaks)
    cores = len(os.sched_getaffinity(0))
    print(f"Measured {time.strftime('%Y-%m-%d')} on {machine()}")
    print(f"The week: {written['passes']:,} passes in {written['rows']:,} rows ({written['failed']:,} failed "
          f"validation, one pass in {RESEND_EVERY} resent), {written['labels']:,} labels; built in {built_s:.0f} s\n")
    print("| what | passes | seconds | passes/s | peak RSS MiB: process / a worker / all |")
    print("|---|---:|---:|---:|---|")
    print(f"| baseline: DuckDB reads the week's passes (the replay's query, no scoring) | {read_passes:,} | "
          f"{read_s:.1f} | {read_passes / read_s:,.0f} | - |")
    print(f"| baseline: the scoring engine alone, 1 process, one batch | {engine_passes:,} | {engine_s:.2f} | "
          f"{engine_passes / engine_s:,.0f} (x {cores} cores: {cores * engine_passes / engine_s:,.0f}) | - |")
    for name, (summary, seconds, peaks) in runs.items():
        print(f"| regno-replay, {name} | {summary['passes']:,} | {seconds:.1f} | {summary['passes'] / seconds:,.0f} | "
              f"{peaks.parent / 1024:,.0f} / {peaks.workers / 1024:,.0f} / {peaks.total / 1024:,.0f} |")
    summary = runs["whole week"][0]
    print(f"\nThe week's replay: {summary['skipped']:,} rows skipped, flips {summary['flips']['to_ai']:,} to the AI "
          f"and {summary['flips']['to_camera']:,} to the camera, verdict: {summary['verdict_words']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
