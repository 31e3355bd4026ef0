"""What one prediction-log row holds, in a fixed column order, and how a row is built from a scored pass.

A row is a tuple while it travels (cheap to build on the request path); the writer serializes it as
one JSON array per line, and the shipper turns lines into an Arrow table with SCHEMA.
"""

from __future__ import annotations

import time

from model.engine import Scored
from model.records import FIELDS, Record

#: The columns, in row order: when, which request and pass, the ten fields, the answer, the shadow, the cache.
COLUMNS = (
    "ts", "request_id", "pass_id", "endpoint", *FIELDS,
    "model", "arm", "positive", "negative", "regno", "source",
    "shadow_model", "shadow_positive", "shadow_source",
    "cache", "latency_ms", "error_field", "error",
)
_EMPTY_RECORD = (None,) * len(FIELDS)
_TS = 0


def scored_row(request_id: str, endpoint: str, result: Scored, record: Record, latency_ms: float,
               shadow: Scored | None = None) -> tuple:
    """The row of a pass the engine scored, with the candidate's result when shadow scoring ran."""
    score = result.score
    return (time.time(), request_id, result.pass_id, endpoint, *record,
            result.slot.version, result.arm, score.positive, score.negative, result.regno, result.source,
            shadow.slot.version if shadow else None, shadow.score.positive if shadow else None,
            shadow.source if shadow else None,
            result.origin.logged, latency_ms, None, None)


def failed_row(request_id: str, endpoint: str, field: str, message: str, latency_ms: float) -> tuple:
    """The row of a pass that failed validation: no fields, no answer, the field at fault and why."""
    return (time.time(), request_id, None, endpoint, *_EMPTY_RECORD,
            None, None, None, None, None, None, None, None, None,
            None, latency_ms, field, message)


def row_day(row: list) -> str:
    """The UTC day of a row's time, YYYY-MM-DD: its Parquet partition."""
    return time.strftime("%Y-%m-%d", time.gmtime(row[_TS]))


def arrow_schema():
    """The Arrow schema of the Parquet files (pyarrow is imported only by what writes or reads them)."""
    import pyarrow as pa

    types = {
        "ts": pa.timestamp("ms", tz="UTC"), "recognition_accuracy": pa.float64(),
        "afts_regno_ai_score": pa.float64(), "afts_regno_ai_char_scores": pa.list_(pa.float64()),
        "afts_regno_ai_length_scores": pa.list_(pa.float64()), "direction": pa.int8(),
        "positive": pa.float64(), "negative": pa.float64(), "shadow_positive": pa.float64(),
        "latency_ms": pa.float64(),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in COLUMNS])


def rows_table(rows: list[list]):
    """An Arrow table of decoded rows (lists in COLUMNS order), timestamps in milliseconds."""
    import pyarrow as pa

    columns = list(zip(*rows)) if rows else [()] * len(COLUMNS)
    arrays = []
    for name, field, values in zip(COLUMNS, arrow_schema(), columns):
        if name == "ts":
            values = [int(value * 1000) for value in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=arrow_schema())
