"""regno-log: read the prediction log's Parquet files with DuckDB, no server needed.

    regno-log sql "SELECT model, count(*) FROM predictions GROUP BY model"
    regno-log request REQUEST_ID
    regno-log decided --model regno-sim-1 --day 2026-12-02 --like '{"camera_type": "...", ...}'
    regno-log retention

`predictions` is a view over PREDICTION_LOG_PARQUET_DIR (or PREDICTION_LOG_DIR/parquet, or --dir) with
the day partition as a column, and `labels` one over its labels/ folder (POST /reg/feedback); files written
before a column was added read as null in it. `replays` is one over its replays/ folder: every candidate
version's latest replay of the log (regno-replay), a row per pass with the candidate's score and pick beside
the answer the log holds (`model` is the candidate, `answered_model` the model that answered), e.g.

    regno-log sql "SELECT model, count(*) AS passes, count(*) FILTER (WHERE regno <> answered_regno) AS flips
                   FROM replays GROUP BY model"

A table with nothing written yet (no label, no replay) is an empty table of the same columns. Rows are
printed as JSON lines. Exit status 2 when the folder or the query is unusable, with one line saying why, and
when the `log` extra (DuckDB and pyarrow) is not installed.
"""

from __future__ import annotations

import argparse
import glob
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import orjson

from config import Settings, SettingsError
from config.extras import missing
from service.predictions.parquet_store import parquet_glob, remove_expired, replays_glob
from service.predictions.rows import LABELS, PREDICTIONS, REPLAYS, Table

#: "Passes like this one": the same camera and the same plate templates, on the given day.
DECIDED_SQL = """
SELECT source, count(*) AS passes, round(avg(positive), 4) AS mean_positive,
       count(*) FILTER (WHERE regno = afts_regno_ai) AS took_ai
FROM predictions
WHERE model = $model AND day = $day AND error IS NULL
  AND camera_type = $camera_type AND camera_class = $camera_class
  AND regexp_replace(regno_recognize, '[0-9]', '9', 'g') = regexp_replace($regno_recognize, '[0-9]', '9', 'g')
GROUP BY source ORDER BY source
"""


#: DuckDB's type of each Arrow type name of rows.Table (string when not named).
_DUCKDB_TYPES = {"timestamp": "TIMESTAMPTZ", "float64": "DOUBLE", "int8": "TINYINT", "bool": "BOOLEAN",
                 "float64_list": "DOUBLE[]"}


def _absent_columns(connection, source: str, table: Table) -> str:
    """`, NULL::type AS name` for each of the table's columns its files lack (all written before it was added)."""
    present = {row[0] for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    types = dict(table.types)
    return "".join(f", NULL::{_DUCKDB_TYPES.get(types.get(name), 'VARCHAR')} AS {name}"
                   for name in table.columns if name not in present)


def connect(root: Path):
    """A DuckDB connection in memory with the views `predictions`, `labels` and `replays` over root's Parquet files."""
    import duckdb  # the `log` extra: the service itself never queries its log

    if not any(root.glob("day=*/*.parquet")):
        raise FileNotFoundError(f"no prediction-log Parquet files under {root}")
    connection = duckdb.connect()
    for table in (PREDICTIONS, LABELS):
        attach(connection, table, parquet_glob(root, table))
    attach(connection, REPLAYS, replays_glob(root))
    return connection


def attach(connection, table: Table, pattern: str) -> None:
    """(Re)define the view table.name over the Parquet files of glob pattern, with the day partition as a column.

    With no such file, an empty table of the same columns, so queries that join it still run.
    """
    for (kind,) in connection.execute("SELECT table_type FROM information_schema.tables WHERE table_name = $name",
                                      {"name": table.name}).fetchall():
        connection.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {table.name}")
    if glob.glob(pattern):
        quoted = pattern.replace("'", "''")
        source = f"read_parquet('{quoted}', hive_partitioning = true, union_by_name = true)"
        connection.execute(f"CREATE VIEW {table.name} AS SELECT *{_absent_columns(connection, source, table)} "
                           f"FROM {source}")
    else:
        empty = table.arrow_table([])
        connection.execute(f"CREATE TABLE {table.name} AS SELECT *, NULL::VARCHAR AS day FROM empty")


def rows(connection, sql: str, parameters: dict | None = None) -> list[dict]:
    """The rows of a query as dicts."""
    cursor = connection.execute(sql, parameters or {})
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values)) for values in cursor.fetchall()]


def by_request(root: Path, request_id: str) -> list[dict]:
    """The rows logged for one request id (one per pass; a batch has several)."""
    return rows(connect(root), "SELECT * FROM predictions WHERE request_id = $id ORDER BY ts", {"id": request_id})


def decided(root: Path, model: str, day: date, like: dict) -> list[dict]:
    """What model decided on day for passes like this one: by source, how many, the mean positive score."""
    parameters = {"model": model, "day": day.isoformat(), "camera_type": like["camera_type"],
                  "camera_class": like["camera_class"], "regno_recognize": like["regno_recognize"]}
    return rows(connect(root), DECIDED_SQL, parameters)


def _day(text: str) -> date:
    """A day: YYYY-MM-DD, today or yesterday (UTC)."""
    today = datetime.now(timezone.utc).date()
    return {"today": today, "yesterday": today - timedelta(days=1)}.get(text) or date.fromisoformat(text)


def _print(found: list[dict]) -> None:
    for row in found:
        sys.stdout.buffer.write(orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE))


def main(argv: Sequence[str] | None = None) -> int:
    """Run regno-log."""
    absent = missing("DuckDB and pyarrow", "log", "duckdb", "pyarrow")
    if absent:
        print(f"regno-log: {absent}", file=sys.stderr)
        return 2
    import duckdb

    parser = argparse.ArgumentParser(prog="regno-log", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="the Parquet folder (default: from the settings)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sql", help="run a query over the view `predictions`").add_argument("query")
    commands.add_parser("request", help="the rows of one request id").add_argument("request_id")
    decided_command = commands.add_parser("decided", help="what a model decided for passes like one record")
    decided_command.add_argument("--model", required=True)
    decided_command.add_argument("--day", type=_day, default="yesterday", help="YYYY-MM-DD, today or yesterday")
    decided_command.add_argument("--like", required=True, help="the record, as JSON")
    commands.add_parser("retention", help="remove the days older than PREDICTION_LOG_RETENTION_DAYS now")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        root = args.dir or settings.prediction_log_parquet
        if root is None:
            raise SettingsError("no log folder: set PREDICTION_LOG_DIR or PREDICTION_LOG_PARQUET_DIR, or pass --dir")
        if args.command == "retention":
            removed = remove_expired(root, settings.prediction_log_retention_days)
            print(f"regno-log: removed {len(removed)} day(s){': ' + ', '.join(removed) if removed else ''}")
        elif args.command == "sql":
            _print(rows(connect(root), args.query))
        elif args.command == "request":
            _print(by_request(root, args.request_id))
        else:
            _print(decided(root, args.model, args.day, orjson.loads(args.like)))
    except (SettingsError, FileNotFoundError, KeyError, orjson.JSONDecodeError) as error:
        print(f"regno-log: {error}", file=sys.stderr)
        return 2
    except duckdb.Error as error:  # a bad query: DuckDB's first line says what
        print(f"regno-log: {type(error).__name__}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
