"""The log's Parquet layout: zstd files partitioned by UTC day, written whole or not at all, and retention.

    ROOT/day=2026-12-03/<name>.parquet          the predictions
    ROOT/labels/day=2026-12-03/<name>.parquet   the labels, by the day they arrived
    ROOT/replays/<version>/day=2026-12-03/part-0.parquet   a candidate's replay of the passes (regno-replay)

A file is named after what it came from (a segment, or a JetStream message), so shipping the same thing
twice writes the same file again instead of a second copy. DuckDB reads the folder with no server
(service/predictions/query.py).
"""

from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson

from service.predictions.rows import PREDICTIONS, REPLAYS, TABLES, Table, row_day, split_tables

_DAY = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
#: Seconds between two retention passes of a running shipper or sink.
RETENTION_EVERY_S = 3600.0
#: What may appear in a file name; anything else in a source's name becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def decode_lines(lines: list[bytes]) -> list[list]:
    """Rows from JSON lines; a torn last line (a crash mid-write, before its fsync) is left out."""
    rows = []
    for line in lines:
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return rows


def table_root(root: Path, table: Table) -> Path:
    """The folder of a table's day partitions."""
    return root / table.folder if table.folder else root


def write_rows(root: Path, name: str, rows: list[list]) -> list[Path]:
    """Write rows as one zstd Parquet file per table and day they fall on, atomically; the paths written."""
    import pyarrow.parquet as pq

    by_day: dict[tuple[Table, str], list[list]] = defaultdict(list)
    for table, table_rows in split_tables(rows).items():
        for row in table_rows:
            by_day[(table, row_day(row))].append(row)
    written = []
    for (table, day), day_rows in sorted(by_day.items(), key=lambda item: (item[0][0].name, item[0][1])):
        folder = table_root(root, table) / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_UNSAFE.sub('_', name)}.parquet"
        temporary = path.with_name(f".{path.name}.tmp")
        pq.write_table(table.arrow_table(day_rows), temporary, compression="zstd")
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)  # readers see the whole file or none
        written.append(path)
    return written


def remove_older_than(root: Path, days: int, today: date) -> list[str]:
    """Remove the day partitions more than days before today; the days removed (none when days is 0)."""
    if days <= 0 or not root.is_dir():
        return []
    oldest_kept = today - timedelta(days=days - 1)
    removed = []
    for folder in sorted(root.iterdir()):
        match = _DAY.match(folder.name)
        if match and date.fromisoformat(match.group(1)) < oldest_kept:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(match.group(1))
    return removed


def remove_expired(root: Path, days: int) -> list[str]:
    """Retention now: remove every table's day partitions more than days before today (UTC); the days removed."""
    today = datetime.now(timezone.utc).date()
    removed = set()
    for table in TABLES:
        removed.update(remove_older_than(table_root(root, table), days, today))
    return sorted(removed)


def parquet_glob(root: Path, table: Table = PREDICTIONS) -> str:
    """The glob DuckDB reads a table of the log with."""
    return str(table_root(root, table) / "day=*" / "*.parquet")


def replays_glob(root: Path) -> str:
    """The glob of every version's replay rows; a folder whose name starts with "." is a replay being written."""
    return str(table_root(root, REPLAYS) / "[!.]*" / "day=*" / "*.parquet")
