"""The log's Parquet layout: zstd files partitioned by UTC day, written whole or not at all, and retention.

    ROOT/day=2026-12-03/<name>.parquet

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

from service.predictions.rows import row_day, rows_table

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


def write_rows(root: Path, name: str, rows: list[list]) -> list[Path]:
    """Write rows as one zstd Parquet file per day they fall on, atomically; the paths written."""
    import pyarrow.parquet as pq

    by_day: dict[str, list[list]] = defaultdict(list)
    for row in rows:
        by_day[row_day(row)].append(row)
    written = []
    for day, day_rows in sorted(by_day.items()):
        folder = root / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_UNSAFE.sub('_', name)}.parquet"
        temporary = path.with_name(f".{path.name}.tmp")
        pq.write_table(rows_table(day_rows), temporary, compression="zstd")
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
    """Retention now: remove the day partitions more than days before today (UTC); the days removed."""
    return remove_older_than(root, days, datetime.now(timezone.utc).date())


def parquet_glob(root: Path) -> str:
    """The glob DuckDB reads the log with."""
    return str(root / "day=*" / "*.parquet")
