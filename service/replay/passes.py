"""The window's passes, as a replay reads them from the log: one row per pass, its first answer, in Arrow batches.

A pass answered more than once (a resent record) is replayed once, with the first answer the log holds for it
(the earliest row), as the report counts it. Rows that failed validation have no record to replay: they are
counted as skipped.

Grouping every row by pass would hold the whole window in DuckDB's memory (or spill all of it to disk). So the
passes logged more than once are found first, by a hash of their id (16 bytes a pass, in a temporary table of
those alone); the passes logged once, nearly all of them, then stream straight from the files, and only the
resent ones are grouped. A hash shared by two passes only sends both to the grouping, which goes by the id
itself. DuckDB's memory ceiling makes it spill rather than grow, so memory stays flat in the window's size; the
rows come in batches of bounded size, roughly in time order (a day's rows need not be together).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from model.records import FIELDS
from service.report.data import IN_WINDOW, Window

#: Passes in one Arrow batch: one engine call in a worker.
BATCH_ROWS = 20_000
#: DuckDB's memory ceiling for the replay's queries; past it, it spills to its temporary folder.
MEMORY_LIMIT = "256MB"
#: The answer the log holds, as replay rows name its columns.
ANSWERED = (("model", "answered_model"), ("arm", "answered_arm"), ("positive", "answered_positive"),
            ("regno", "answered_regno"), ("source", "answered_source"))
#: The temporary table of the hashes of the window's passes logged more than once.
RESENT = "replay_resent"

_SCORED = "error IS NULL AND model IS NOT NULL AND pass_id IS NOT NULL"
_COLUMNS = ", ".join(["ts", "pass_id", *FIELDS, *(f"{column} AS {answered}" for column, answered in ANSWERED)])
_STRUCT = ", ".join(["ts", "pass_id", *FIELDS, *(f"{answered} := {column}" for column, answered in ANSWERED)])

RESENT_SQL = f"""
CREATE OR REPLACE TEMP TABLE {RESENT} AS
SELECT hash(pass_id) AS pass_hash, count(*) AS answers FROM predictions WHERE {IN_WINDOW} AND {_SCORED}
GROUP BY pass_hash HAVING count(*) > 1
"""

COUNTS_SQL = f"""
SELECT count(*) FILTER (WHERE {_SCORED}) - (SELECT coalesce(sum(answers - 1), 0) FROM {RESENT}) AS passes,
       count(*) FILTER (WHERE error IS NOT NULL) AS skipped
FROM predictions WHERE {IN_WINDOW}
"""

ONCE_SQL = f"""
SELECT {_COLUMNS} FROM predictions
WHERE {IN_WINDOW} AND {_SCORED} AND hash(pass_id) NOT IN (SELECT pass_hash FROM {RESENT})
"""

# One arg_min of the whole row, not one per column: with two rows of a pass at the same millisecond, every
# column still comes from the same row.
RESENT_PASSES_SQL = f"""
SELECT first_answer.* FROM (
    SELECT arg_min(struct_pack({_STRUCT}), (ts, request_id)) AS first_answer FROM predictions
    WHERE {IN_WINDOW} AND {_SCORED} AND hash(pass_id) IN (SELECT pass_hash FROM {RESENT})
    GROUP BY pass_id
) ORDER BY first_answer.ts
"""


def prepare(connection, window: Window, spill: Path, memory_limit: str = MEMORY_LIMIT) -> tuple[int, int]:
    """Cap DuckDB's memory, find the window's resent passes; (passes to replay, rows that failed validation).

    The count of passes is exact unless two passes' ids share a hash (one in 2**64 per pair): it only sizes the
    progress bar; the summary counts the rows written.
    """
    connection.execute(f"SET memory_limit = '{memory_limit}'")
    connection.execute(f"SET temp_directory = '{str(spill).replace(chr(39), chr(39) * 2)}'")
    connection.execute("SET preserve_insertion_order = false")  # any order will do: the rows go by day anyway
    parameters = window.parameters()
    connection.execute(RESENT_SQL, parameters)
    passes, skipped = connection.execute(COUNTS_SQL, parameters).fetchall()[0]
    return passes, skipped


def pass_batches(connection, window: Window, rows: int = BATCH_ROWS) -> Iterator:
    """The window's passes (after prepare()), first answer each, as Arrow record batches of at most rows passes."""
    for sql in (ONCE_SQL, RESENT_PASSES_SQL):
        # sql(), not execute(): DuckDB streams a relation's rows into Arrow without an extra copy of each batch.
        for batch in connection.sql(sql, params=window.parameters()).to_arrow_reader(rows):
            if batch.num_rows:
                yield batch
