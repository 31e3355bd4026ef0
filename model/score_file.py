"""regno-score: score a CSV or Parquet file of passes in chunks, with the service's validation and features.

    regno-score INPUT [-o OUTPUT] [--chunk-rows N]

The model is the one the service serves (MODELS_DIR's current model when it is set, else MODEL_PATH),
the pick threshold comes from PICK_THRESHOLD, and rows go through the service's scoring engine. CSV
needs nothing beyond the service's own dependencies; Parquet needs pyarrow, the `log` extra. The
output is the input with `negative`, `positive`, `regno`, `source` and `error` columns added; a row
that fails validation keeps its place, with `error` naming the field. Memory stays bounded by the
chunk size, whatever the file's size. Exit status: 0 when every row was scored, 1 when some row
failed validation, 2 when the run could not start or finish (bad arguments, unreadable input).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

from tqdm import tqdm

from config import Settings, SettingsError
from config.extras import needs
from model.engine import ScoringEngine
from model.records import FIELDS, parse_records
from model.registry import load_serving
from model.routing import ModelSlot, Routing
from model.scorer import ModelLoadError

try:  # pyarrow comes with the `log` extra; an install without it still scores CSV
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover - exercised by installs without the extra
    pa = pq = None
    _DATA_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, csv.Error)
else:
    _DATA_ERRORS = (OSError, ValueError, csv.Error, pa.ArrowException)

#: Rows read, scored and written at a time: one CatBoost call each, and the bound on memory.
DEFAULT_CHUNK_ROWS = 10_000
#: The columns added to the input.
OUTPUT_COLUMNS = ("negative", "positive", "regno", "source", "error")
PARQUET_SUFFIXES = (".parquet", ".pq")


class ScoreFileError(Exception):
    """A run that cannot go on: its message is the one line the user sees."""


def file_format(path: Path) -> str:
    """'parquet' or 'csv', from the file name."""
    return "parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "csv"


def default_output(path: Path) -> Path:
    """INPUT's name with .scored before its extension: passes.csv -> passes.scored.csv."""
    return path.with_name(f"{path.stem}.scored{path.suffix or '.csv'}")


def check_columns(columns: Sequence[str]) -> list[str]:
    """The input's columns without the ones the output adds; ScoreFileError when a contract field is missing."""
    missing = [name for name in FIELDS if name not in columns]
    if missing:
        raise ScoreFileError(f"the input has no column {', '.join(missing)} (it needs: {', '.join(FIELDS)})")
    return [name for name in columns if name not in OUTPUT_COLUMNS]


def score_rows(rows: list[dict], engine: ScoringEngine, routing: Routing, failures: Counter) -> dict[str, list]:
    """The output columns for rows, by name; valid rows scored in one engine call, failures counted by field."""
    records, messages, failed = parse_records([{name: row[name] for name in FIELDS} for row in rows])
    failures.update(failed)
    added: dict[str, list] = {name: [None] * len(rows) for name in OUTPUT_COLUMNS}
    added["error"] = [str(messages[position]) if position in messages else None for position in range(len(rows))]
    for (position, _), result in zip(records, engine.score([record for _, record in records], routing)):
        added["negative"][position], added["positive"][position] = result.score.negative, result.score.positive
        added["regno"][position], added["source"][position] = result.regno, result.source
    return added


class CsvTable:
    """A CSV file read in chunks of rows, every cell as text (validation reads numbers from text)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: int | None = None  # not known before the end

    def chunks(self, size: int) -> Iterator[tuple[list[str], list[dict]]]:
        """(columns, rows) of at most size rows at a time; one empty chunk for a file with a header only."""
        with open(self.path, encoding="utf-8", newline="") as stream:
            reader = csv.DictReader(stream)
            columns = list(reader.fieldnames or [])
            chunk: list[dict] = []
            for row in reader:
                chunk.append(row)
                if len(chunk) == size:
                    yield columns, chunk
                    chunk = []
            if chunk or reader.line_num <= 1:
                yield columns, chunk


class ParquetTable:
    """A Parquet file read in record batches."""

    def __init__(self, path: Path):
        self.path = path
        self.file = pq.ParquetFile(path)
        self.rows: int | None = self.file.metadata.num_rows

    def chunks(self, size: int) -> Iterator[tuple[list[str], list[dict]]]:
        """(columns, rows) of at most size rows at a time; one empty chunk for a file without rows."""
        columns = list(self.file.schema_arrow.names)
        empty = True
        for batch in self.file.iter_batches(batch_size=size):
            empty = False
            yield columns, batch.to_pylist()
        if empty:
            yield columns, []


class CsvWriter:
    """Writes scored rows to a CSV file: the input's columns, then the added ones; no score is an empty cell."""

    def __init__(self, path: Path):
        self.stream = open(path, "w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.stream, lineterminator="\n")
        self.header_written = False

    def write(self, columns: list[str], rows: list[dict], added: dict[str, list]) -> None:
        """Append one chunk."""
        if not self.header_written:
            self.writer.writerow([*columns, *OUTPUT_COLUMNS])
            self.header_written = True
        extra = zip(*(added[name] for name in OUTPUT_COLUMNS))
        self.writer.writerows([*(row[name] for name in columns), *("" if value is None else value for value in more)]
                              for row, more in zip(rows, extra))

    def close(self) -> None:
        """Finish the file."""
        self.stream.close()


class ParquetWriter:
    """Writes scored rows to a Parquet file: the input's columns as they were read, then the added ones, typed."""

    ADDED_TYPES = {"negative": "float64", "positive": "float64", "regno": "string", "source": "string",
                   "error": "string"}

    def __init__(self, path: Path):
        self.path = path
        self.writer: pq.ParquetWriter | None = None

    def write(self, columns: list[str], rows: list[dict], added: dict[str, list]) -> None:
        """Append one chunk."""
        arrays = {name: pa.array([row[name] for row in rows],
                                 type=self.writer.schema.field(name).type if self.writer else None)
                  for name in columns}
        arrays.update((name, pa.array(added[name], type=kind)) for name, kind in self.ADDED_TYPES.items())
        table = pa.table(arrays)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        """Finish the file."""
        if self.writer is not None:
            self.writer.close()


def open_table(path: Path, writing: bool = False):
    """The reader (or with writing, the writer) for a CSV or Parquet path; Parquet needs the `log` extra."""
    if file_format(path) == "parquet":
        if pq is None:
            raise ScoreFileError(f"{path.name}: Parquet {needs('pyarrow', 'log')}")
        return ParquetWriter(path) if writing else ParquetTable(path)
    return CsvWriter(path) if writing else CsvTable(path)


def score_file(source: Path, target: Path, engine: ScoringEngine, routing: Routing, chunk_rows: int,
               progress: bool) -> tuple[int, Counter]:
    """Score source into target chunk by chunk; (rows read, failed rows by field)."""
    failures: Counter = Counter()
    table = open_table(source)
    writer, rows = open_table(target, writing=True), 0
    with tqdm(total=table.rows, unit=" rows", disable=not progress, file=sys.stderr) as bar:
        try:
            for columns, chunk in table.chunks(chunk_rows):
                kept = check_columns(columns)
                writer.write(kept, chunk, score_rows(chunk, engine, routing, failures))
                rows += len(chunk)
                bar.update(len(chunk))
        finally:
            writer.close()
    return rows, failures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="regno-score", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="CSV or Parquet file with the contract's ten columns")
    parser.add_argument("-o", "--output", type=Path, help="where to write (.csv or .parquet); default INPUT.scored.EXT")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per chunk")
    args = parser.parse_args(argv)
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run regno-score; the exit status says whether every row was scored."""
    args = parse_args(argv)
    output = args.output or default_output(args.input)
    started = time.monotonic()
    try:
        if not args.input.is_file():
            raise ScoreFileError(f"no such file: {args.input}")
        if output.resolve() == args.input.resolve():
            raise ScoreFileError("the output would overwrite the input; choose another -o")
        settings = Settings.from_env()
        scorer, _ = load_serving(settings.models_dir, settings.model_path)  # the model the service serves
        scorer.probe()
        routing = Routing(ModelSlot.of(scorer, settings.batch_max_size))
        rows, failures = score_file(args.input, output, ScoringEngine(settings.pick_threshold), routing,
                                    args.chunk_rows, progress=sys.stderr.isatty())
    except (ScoreFileError, SettingsError, ModelLoadError) as error:
        print(f"regno-score: {error}", file=sys.stderr)
        return 2
    except _DATA_ERRORS as error:
        print(f"regno-score: cannot read or write the data: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    failed = sum(failures.values())
    by_field = ", ".join(f"{field} {count}" for field, count in failures.most_common())
    print(f"regno-score: {rows} rows, {rows - failed} scored, {failed} failed{f' ({by_field})' if failed else ''}; "
          f"model {scorer.version}; {seconds:.2f} s ({rows / seconds if seconds else 0:,.0f} rows/s) -> {output}",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
