"""Where a replay's rows go: zstd Parquet by day in a staging folder, which then replaces the version's folder whole.

    ROOT/replays/<version>/day=2026-12-03/part-0.parquet    the replay rows (rows.REPLAYS), by their pass's day
    ROOT/replays/<version>/summary.json                     what the promotion gate reads
    ROOT/replays/.<version>.partial-<pid>/                   a replay being written (no reader looks there)

A version's folder holds one replay, the latest: a new run writes everything, summary included, into its
staging folder, then swaps it for the old folder, so readers see the old replay or the new one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from model.lifecycle.promotion_gate import replay_folder
from service.predictions.rows import REPLAYS
from service.replay.passes import ANSWERED
from service.replay.scoring import Answers

#: Rows in one Parquet file before the day's next part begins.
ROWS_PER_FILE = 2_000_000
_DAY_MS = 86_400_000


def staging_folder(root: Path, version: str) -> Path:
    """This process's staging folder for a replay of version, emptied."""
    folder = replay_folder(root, version).with_name(f".{version}.partial-{os.getpid()}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def replace_folder(staging: Path, root: Path, version: str) -> Path:
    """Put the staging folder in place of the version's replay folder; the folder's path.

    A folder that is not empty cannot be renamed over, so the old one is renamed aside first: between the two
    renames, a reader finds no replay of the version, never a mix of two.
    """
    target = replay_folder(root, version)
    aside = target.with_name(f".{version}.old-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    if target.exists():
        os.replace(target, aside)
    os.replace(staging, target)
    shutil.rmtree(aside, ignore_errors=True)
    return target


def replay_batch(passes, answers: Answers, version: str, threshold: float, replay_id: str):
    """The replay rows (rows.REPLAYS' schema) of a batch of passes and the candidate's answers to them."""
    import pyarrow as pa

    schema = REPLAYS.arrow_schema()
    count = passes.num_rows
    columns = {
        "ts": passes.column("ts").cast(schema.field("ts").type),
        **{name: passes.column(name) for name in ("pass_id", "camera_type", "camera_class", "regno_recognize",
                                                  "afts_regno_ai")},
        "model": pa.repeat(version, count), "threshold": pa.repeat(threshold, count),
        "positive": pa.array(answers.positive, pa.float64()), "regno": pa.array(answers.regno, pa.string()),
        "source": pa.array(answers.source, pa.string()),
        **{answered: passes.column(answered) for _, answered in ANSWERED},
        "replay_id": pa.repeat(replay_id, count),
    }
    return pa.RecordBatch.from_arrays([columns[name].cast(schema.field(name).type) for name in REPLAYS.columns],
                                      schema=schema)


class ReplayWriter:
    """Writes replay rows into folder/day=YYYY-MM-DD/part-N.parquet (zstd), a file open per day until close()."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[int, list] = {}  # day number -> [its open ParquetWriter, its part number, rows in it]
        self.rows = 0

    def write(self, batch) -> None:
        """Append a batch of rows (rows.REPLAYS' schema), each to the file of its UTC day, in any order."""
        import pyarrow as pa

        days = batch.column("ts").cast("int64").to_numpy() // _DAY_MS
        if days.size and days.min() == days.max():  # nearly always: a batch within one day
            self._append(int(days[0]), batch)
        else:
            for day in np.unique(days):
                self._append(int(day), batch.filter(pa.array(days == day)))
        self.rows += batch.num_rows

    def _append(self, day: int, rows) -> None:
        """Append rows of one day to that day's open file, opening its next part when it has none or it is full."""
        import pyarrow.parquet as pq

        file = self.files.get(day)
        if file is None or file[2] >= ROWS_PER_FILE:
            part = 0 if file is None else file[1] + 1
            if file is not None:
                file[0].close()
            partition = self.folder / f"day={np.datetime64(day, 'D')}"
            partition.mkdir(parents=True, exist_ok=True)
            file = self.files[day] = [pq.ParquetWriter(partition / f"part-{part}.parquet", rows.schema,
                                                       compression="zstd"), part, 0]
        file[0].write_batch(rows)
        file[2] += rows.num_rows

    def close(self) -> None:
        """Finish every file."""
        for writer, _, _ in self.files.values():
            writer.close()
        self.files.clear()
