"""What the log's rows hold, in a fixed column order: a scored pass (PREDICTIONS) and a label of one (LABELS).

A row is a tuple while it travels (cheap to build on the request path); the writer serializes it as
one JSON array per line, and the shipper turns lines into Arrow tables. A label row starts with
LABEL_TAG, so both kinds share one journal, spool, shipper and sink, and a label is as durable as a row.
New columns go at the end: a row written before one was added is shorter, and reads as null there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from model.engine import Scored
from model.lifecycle.promotion_gate import REPLAYS_FOLDER
from model.records import FIELDS, MAX_LABEL_CHARS, MAX_LIST_CHARS, MAX_PLATE_CHARS, Record

#: The first element of a label's line; a prediction row's first element is its time, a number.
LABEL_TAG = "label"
_EMPTY_RECORD = (None,) * len(FIELDS)
#: Most bytes of JSON a line takes beside its record's fields: the time, the ids, the endpoint, model versions of
#: up to 255 bytes, the picked plate, the scores, the cache, the latency, a failure's field and message (which
#: quotes 40 characters at most); a label's line, with its pass's facts, takes less.
ROW_COLUMNS_BYTES = 2048
#: Most bytes of JSON a valid record's fields take in a line: a score list of MAX_LIST_CHARS becomes at most
#: 3.8 times longer ("1e15," is written "1000000000000000.0,"), a plate's character at most 4 bytes of UTF-8, a
#: camera's 6 (a control character's \u escape); the time, two numbers and the commas take under 256.
RECORD_MAX_BYTES = 2 * 4 * MAX_LIST_CHARS + 2 * 4 * MAX_PLATE_CHARS + 2 * 6 * MAX_LABEL_CHARS + 256
#: A record's fields take at most this many times more bytes in its line than in a request body (the same
#: score lists again; the body also spells out every field's name, which the line does not).
RECORD_EXPANSION = 4


@dataclass(frozen=True)
class Table:
    """One kind of row: its columns in order, their Arrow types (string when not named), its folder."""

    name: str
    columns: tuple[str, ...]
    #: Column -> Arrow type name ("timestamp", "float64", "int8", "bool", "float64_list"); others are strings.
    types: tuple[tuple[str, str], ...]
    #: Its folder under the Parquet root ("" for the root itself).
    folder: str

    def arrow_schema(self):
        """The Arrow schema of the table's Parquet files (pyarrow is imported only by what writes or reads them)."""
        import pyarrow as pa

        arrow = {"timestamp": pa.timestamp("ms", tz="UTC"), "float64": pa.float64(), "int8": pa.int8(),
                 "bool": pa.bool_(), "float64_list": pa.list_(pa.float64())}
        types = dict(self.types)
        return pa.schema([(name, arrow[types[name]] if name in types else pa.string()) for name in self.columns])

    def arrow_table(self, rows: list[list]):
        """An Arrow table of decoded rows (lists in column order); timestamps, in seconds, become milliseconds."""
        import pyarrow as pa

        schema = self.arrow_schema()
        width = len(self.columns)
        rows = [row if len(row) >= width else [*row, *[None] * (width - len(row))] for row in rows]
        columns = list(zip(*rows)) if rows else [()] * width
        arrays = []
        for field, values in zip(schema, columns):
            if pa.types.is_timestamp(field.type):
                values = [None if value is None else int(value * 1000) for value in values]
            arrays.append(pa.array(values, type=field.type))
        return pa.Table.from_arrays(arrays, schema=schema)


#: A scored pass: when, which request and pass, the ten fields, the answer, the shadow, the cache, and the name
#: of the scoring key it was answered to (never the key).
PREDICTIONS = Table(
    "predictions",
    ("ts", "request_id", "pass_id", "endpoint", *FIELDS,
     "model", "arm", "positive", "negative", "regno", "source",
     "shadow_model", "shadow_positive", "shadow_source",
     "cache", "latency_ms", "error_field", "error", "key_name"),
    (("ts", "timestamp"), ("recognition_accuracy", "float64"), ("afts_regno_ai_score", "float64"),
     ("afts_regno_ai_char_scores", "float64_list"), ("afts_regno_ai_length_scores", "float64_list"),
     ("direction", "int8"), ("positive", "float64"), ("negative", "float64"), ("shadow_positive", "float64"),
     ("latency_ms", "float64")),
    "",
)
#: A pass's true plate: when it arrived, the pass, the truth and where it came from, and the pass's answer
#: as the log has it (so quality needs no second look at the predictions): was each plate right. Then the
#: label's own id, the id of the label it corrects (null for a first label), the name of the label key that
#: sent it and of the scoring key the pass was answered to (names, never keys).
LABELS = Table(
    "labels",
    ("ts", "pass_id", "request_id", "pass_ts", "true_regno", "label_source", "labelled_at", "label",
     "model", "arm", "positive", "regno", "source", "pick_correct", "camera_correct",
     "shadow_model", "shadow_positive", "shadow_source", "shadow_pick_correct",
     "label_id", "corrects", "key_name", "scored_by"),
    (("ts", "timestamp"), ("pass_ts", "timestamp"), ("labelled_at", "timestamp"), ("label", "bool"),
     ("positive", "float64"), ("pick_correct", "bool"), ("camera_correct", "bool"), ("shadow_positive", "float64"),
     ("shadow_pick_correct", "bool")),
    "labels",
)
#: A pass of the log scored again by a candidate model (regno-replay): the pass's first logged time and id, its
#: camera and both plates, the candidate's version, pick threshold, score and pick, then the answer the log holds
#: for it (the model and arm that answered, its score and pick), and the id of the replay run. Kept apart from the
#: log, under replays/<version>/ (service/replay/store.py), one folder per candidate version; not in TABLES, so
#: the log's retention leaves replays alone.
REPLAYS = Table(
    "replays",
    ("ts", "pass_id", "camera_type", "camera_class", "regno_recognize", "afts_regno_ai",
     "model", "threshold", "positive", "regno", "source",
     "answered_model", "answered_arm", "answered_positive", "answered_regno", "answered_source", "replay_id"),
    (("ts", "timestamp"), ("threshold", "float64"), ("positive", "float64"), ("answered_positive", "float64")),
    REPLAYS_FOLDER,  # where the promotion gate looks for a version's summary too (model/ never imports service/)
)
#: The tables the log's writers fill (and its retention prunes).
TABLES = (PREDICTIONS, LABELS)
#: Kept for readers of the prediction rows' column order.
COLUMNS = PREDICTIONS.columns


def batch_bytes(records: int, body_bytes: int) -> int:
    """Most bytes of lines the rows (or labels) of one request of records and body_bytes at most can take."""
    return min(records * (ROW_COLUMNS_BYTES + RECORD_MAX_BYTES),
               RECORD_EXPANSION * body_bytes + records * ROW_COLUMNS_BYTES)


def scored_row(request_id: str, endpoint: str, result: Scored, record: Record, latency_ms: float,
               shadow: Scored | None = None, key_name: str | None = None) -> tuple:
    """The row of a pass the engine scored, with the candidate's result when shadow scoring ran."""
    score = result.score
    return (time.time(), request_id, result.pass_id, endpoint, *record,
            result.slot.version, result.arm, score.positive, score.negative, result.regno, result.source,
            shadow.slot.version if shadow else None, shadow.score.positive if shadow else None,
            shadow.source if shadow else None,
            result.origin.logged, latency_ms, None, None, key_name)


def failed_row(request_id: str, endpoint: str, field: str, message: str, latency_ms: float,
               key_name: str | None = None) -> tuple:
    """The row of a pass that failed validation: no fields, no answer, the field at fault and why."""
    return (time.time(), request_id, None, endpoint, *_EMPTY_RECORD,
            None, None, None, None, None, None, None, None, None,
            None, latency_ms, field, message, key_name)


def label_row(values: tuple) -> tuple:
    """The journal's row of a label: LABEL_TAG, then the values in LABELS' column order."""
    return (LABEL_TAG, *values)


def split_tables(rows: list[list]) -> dict[Table, list[list]]:
    """Decoded rows by table, label rows without their tag."""
    tables: dict[Table, list[list]] = {}
    for row in rows:
        if row and row[0] == LABEL_TAG:
            tables.setdefault(LABELS, []).append(row[1:])
        else:
            tables.setdefault(PREDICTIONS, []).append(row)
    return tables


def row_day(row: list) -> str:
    """The UTC day of a row's time (its first column, in either table), YYYY-MM-DD: its Parquet partition."""
    return time.strftime("%Y-%m-%d", time.gmtime(row[0]))
