"""The pass index: what the log says about each recent pass, for labels to find by pass id or request id.

A SQLite file beside the spool (PREDICTION_LOG_DIR/passes.sqlite), shared by every process of the host:
each worker's log writer adds the passes of the batch it has just written to its segment (off the request
path), and POST /reg/feedback looks passes up and marks them labelled. WAL mode lets the workers read
while one writes; marking a pass labelled is one INSERT that only one process can win, so a pass counts
once however many workers its labels reach. The mark holds what its label counted (labels.py's mark), so
that a correction, which swaps the mark in one transaction, can take exactly that back. The log itself stays
the record; this is its index.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple, Protocol

import orjson
import redis

from service.predictions.rows import LABEL_TAG, PREDICTIONS

#: Milliseconds a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_MS = 5000
_COLUMN = {name: index for index, name in enumerate(PREDICTIONS.columns)}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS passes (
    pass_id TEXT PRIMARY KEY, request_id TEXT, ts REAL, model TEXT, arm TEXT, positive REAL,
    ai TEXT, camera TEXT, regno TEXT, source TEXT, shadow_model TEXT, shadow_positive REAL, shadow_source TEXT,
    key_name TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS passes_by_request ON passes (request_id);
CREATE INDEX IF NOT EXISTS passes_by_time ON passes (ts);
CREATE TABLE IF NOT EXISTS labelled (pass_id TEXT PRIMARY KEY, ts REAL, mark TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS labelled_by_time ON labelled (ts);
"""
#: Columns added since the first index file: (table, column), added to an older file when it is opened.
_ADDED_COLUMNS = (("passes", "key_name TEXT"), ("labelled", "mark TEXT"))
_FACTS = ("pass_id", "request_id", "ts", "model", "arm", "positive", "ai", "camera", "regno", "source",
          "shadow_model", "shadow_positive", "shadow_source", "key_name")
# A pass logged again (a resent pass, or its shadow score arriving after it) keeps the shadow it had.
_UPSERT = f"""
INSERT INTO passes ({", ".join(_FACTS)}) VALUES ({", ".join("?" * len(_FACTS))})
ON CONFLICT (pass_id) DO UPDATE SET
    request_id = excluded.request_id, ts = excluded.ts, model = excluded.model, arm = excluded.arm,
    positive = excluded.positive, ai = excluded.ai, camera = excluded.camera, regno = excluded.regno,
    source = excluded.source, shadow_model = coalesce(excluded.shadow_model, passes.shadow_model),
    shadow_positive = coalesce(excluded.shadow_positive, passes.shadow_positive),
    shadow_source = coalesce(excluded.shadow_source, passes.shadow_source), key_name = excluded.key_name
"""


class PassFacts(NamedTuple):
    """What the log holds about one answered pass, as far as its label needs."""

    pass_id: str
    request_id: str
    #: When it was answered, seconds since the epoch.
    ts: float
    model: str
    #: "current" or "canary".
    arm: str
    positive: float
    #: The AI's plate and the camera's.
    ai: str
    camera: str
    #: The plate picked and its source field.
    regno: str
    source: str
    #: The candidate's version, positive score and picked source when shadow scoring ran, else None.
    shadow_model: str | None
    shadow_positive: float | None
    shadow_source: str | None
    #: The name of the scoring key the pass was answered to; None for a pass logged before names were.
    key_name: str | None = None


#: The prediction row's column of each PassFacts field.
_ROW_COLUMNS = tuple(_COLUMN[name] for name in (
    "pass_id", "request_id", "ts", "model", "arm", "positive", "afts_regno_ai", "regno_recognize", "regno",
    "source", "shadow_model", "shadow_positive", "shadow_source", "key_name"))


def facts_of(row: list) -> tuple | None:
    """The index's tuple of a decoded prediction row; None for a label or a row without an answer."""
    if not row or row[0] == LABEL_TAG or row[_COLUMN["pass_id"]] is None or row[_COLUMN["model"]] is None:
        return None
    # A row written before a column was added is shorter: the column reads as None.
    return tuple(row[column] if column < len(row) else None for column in _ROW_COLUMNS)


class PassIndex(Protocol):
    """Where labels find their passes: SqlitePassIndex on one host, redis_passes.RedisPassIndex across replicas."""

    def add_lines(self, data: bytes) -> int:
        """Index the passes in a batch of log lines (the writer's on_written hook); how many were indexed."""

    def find(self, pass_ids: list[str]) -> dict[str, PassFacts]:
        """The indexed passes among these ids."""

    def passes_of_request(self, request_id: str, limit: int = 2) -> list[str]:
        """The pass ids one request answered (at most limit)."""

    def claim(self, pass_id: str, mark: str) -> bool:
        """Mark the pass labelled with mark (what its label counted); False when it already was."""

    def replace(self, pass_id: str, mark: str) -> str | None:
        """A correction: swap the pass's mark for this one, at once; the mark it had, None if unlabelled (no change)."""

    def release(self, pass_id: str, previous: str | None = None) -> None:
        """Undo a claim (previous None) or a replace (previous: the mark it returned) whose label was not stored."""

    def remove_older_than(self, days: int) -> int:
        """Forget passes more than days old; how many."""


#: What a failing index raises (a locked or broken file, Redis away), for callers to answer "try again".
INDEX_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, redis.RedisError, OSError)


class SqlitePassIndex:
    """The host's pass index in one SQLite file; one connection per thread that uses it."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as connection:
            connection.executescript(_SCHEMA)
            _add_columns(connection)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a forked worker opens its own: a connection must not cross a fork)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")  # the log is the record: the index may lag a crash
            local.connection, local.pid = connection, os.getpid()
        return local.connection

    def add_lines(self, data: bytes) -> int:
        """Index the passes in a batch of log lines (the writer's on_written hook); how many were indexed."""
        facts = [fact for fact in (facts_of(orjson.loads(line)) for line in data.splitlines()) if fact is not None]
        if facts:
            connection = self._connection()
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(_UPSERT, facts)
        return len(facts)

    def find(self, pass_ids: list[str]) -> dict[str, PassFacts]:
        """The indexed passes among these ids."""
        found: dict[str, PassFacts] = {}
        connection = self._connection()
        for start in range(0, len(pass_ids), 500):  # SQLite's limit on bound parameters
            chunk = pass_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in connection.execute(f"SELECT {', '.join(_FACTS)} FROM passes WHERE pass_id IN ({marks})",
                                          chunk):
                found[row[0]] = PassFacts(*row)
        return found

    def passes_of_request(self, request_id: str, limit: int = 2) -> list[str]:
        """The pass ids one request answered (at most limit: more than one is already ambiguous)."""
        rows = self._connection().execute("SELECT pass_id FROM passes WHERE request_id = ? LIMIT ?",
                                          (request_id, limit))
        return [row[0] for row in rows]

    def claim(self, pass_id: str, mark: str) -> bool:
        """Mark the pass labelled; False when it already was (another label, in any process, came first)."""
        cursor = self._connection().execute("INSERT OR IGNORE INTO labelled (pass_id, ts, mark) VALUES (?, ?, ?)",
                                            (pass_id, time.time(), mark))
        return cursor.rowcount == 1

    def replace(self, pass_id: str, mark: str) -> str | None:
        """Swap the pass's mark in one transaction; the mark it had ("" from an older file), None if unlabelled."""
        connection = self._connection()
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute("SELECT coalesce(mark, '') FROM labelled WHERE pass_id = ?", (pass_id,)).fetchone()
            if row is not None:
                connection.execute("UPDATE labelled SET mark = ? WHERE pass_id = ?", (mark, pass_id))
        return None if row is None else row[0]

    def release(self, pass_id: str, previous: str | None = None) -> None:
        """Undo a claim or a replace whose label could not be stored, so that a retry is not refused."""
        if previous is None:
            self._connection().execute("DELETE FROM labelled WHERE pass_id = ?", (pass_id,))
        else:
            self._connection().execute("UPDATE labelled SET mark = ? WHERE pass_id = ?", (previous, pass_id))

    def remove_older_than(self, days: int) -> int:
        """Forget passes and labelled marks more than days old (0 keeps everything); the passes removed."""
        if days <= 0:
            return 0
        cutoff = time.time() - days * 86400
        connection = self._connection()
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            removed = connection.execute("DELETE FROM passes WHERE ts < ?", (cutoff,)).rowcount
            connection.execute("DELETE FROM labelled WHERE ts < ?", (cutoff,))
        return removed


def _add_columns(connection: sqlite3.Connection) -> None:
    """Add the columns an index file made by an older version lacks (another process may be adding them too)."""
    for table, column in _ADDED_COLUMNS:
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if column.split()[0] not in present:
            try:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            except sqlite3.OperationalError as error:
                if "duplicate column" not in str(error):
                    raise
