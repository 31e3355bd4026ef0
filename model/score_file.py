"""regno-score: score a CSV or Parquet file of passes in chunks, with the service's validation and features.

    regno-score INPUT [-o OUTPUT] [--chunk-rows N]

The model comes from MODEL_PATH and the pick threshold from PICK_THRESHOLD, as in the service. The
output is the input with `negative`, `positive`, `regno`, `source` and `error` columns added; a row
that fails validation keeps its place, with `error` naming the field. Memory stays bounded by the
chunk size, whatever the file's size. Exit status: 0 when every row was scored, 1 when some row
failed validation, 2 when the run could not start or finish (bad arguments, unreadable input).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

from config import Settings, SettingsError
from model.pick import pick
from model.records import FIELDS, parse_records
from model.scorer import ModelLoadError, Scorer

try:  # the table libraries are the `files` extra: the service itself does not need them
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm
except ImportError as missing:  # pragma: no cover - exercised by installs without the extra
    pd = None
    _MISSING = missing.name
else:
    _MISSING = None

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


def read_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The file in frames of at most rows rows; CSV cells stay text (validation reads numbers from text)."""
    if file_format(path) == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=rows, encoding="utf-8")


def score_frame(frame: pd.DataFrame, scorer: Scorer, threshold: float, failures: Counter) -> pd.DataFrame:
    """frame with the output columns added; valid rows scored in one CatBoost call, failures counted by field."""
    missing = [name for name in FIELDS if name not in frame.columns]
    if missing:
        raise ScoreFileError(f"the input has no column {', '.join(missing)} (it needs: {', '.join(FIELDS)})")
    records, messages, failed = parse_records(frame[list(FIELDS)].to_dict("records"))
    failures.update(failed)
    errors = [messages.get(position) for position in range(len(frame))]
    scores = scorer.predict_vectors([scorer.build_vector(record) for _, record in records]) if records else []
    negative, positive = [float("nan")] * len(frame), [float("nan")] * len(frame)
    regno, source = [None] * len(frame), [None] * len(frame)
    for (position, record), score in zip(records, scores):
        negative[position], positive[position] = score.negative, score.positive
        regno[position], source[position] = pick(record, score, threshold)
    added = pd.DataFrame({"negative": negative, "positive": positive, "regno": regno, "source": source,
                          "error": errors}, index=frame.index)
    return pd.concat([frame.drop(columns=[c for c in OUTPUT_COLUMNS if c in frame.columns]), added], axis=1)


class _Writer:
    """Appends scored frames to a CSV or Parquet file, the header or schema taken from the first frame."""

    def __init__(self, path: Path):
        self.path = path
        self.format = file_format(path)
        self._parquet: pq.ParquetWriter | None = None
        self._first = True

    def write(self, frame: pd.DataFrame) -> None:
        """Append one frame."""
        if self.format == "parquet":
            table = pa.Table.from_pandas(frame, preserve_index=False,
                                         schema=self._parquet.schema if self._parquet else None)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        else:
            frame.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        self._first = False

    def close(self) -> None:
        """Finish the file; an input without rows still gives an output with the header."""
        if self._parquet is not None:
            self._parquet.close()


def score_file(source: Path, target: Path, scorer: Scorer, threshold: float, chunk_rows: int,
               progress: bool) -> tuple[int, Counter]:
    """Score source into target chunk by chunk; (rows read, failed rows by field)."""
    failures: Counter = Counter()
    total = pq.ParquetFile(source).metadata.num_rows if file_format(source) == "parquet" else None
    writer, rows = _Writer(target), 0
    with tqdm(total=total, unit=" rows", disable=not progress, file=sys.stderr) as bar:
        try:
            for frame in read_chunks(source, chunk_rows):
                writer.write(score_frame(frame, scorer, threshold, failures))
                rows += len(frame)
                bar.update(len(frame))
            if rows == 0:
                writer.write(score_frame(pd.DataFrame(columns=list(FIELDS)), scorer, threshold, failures))
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
    if _MISSING is not None:
        print(f"regno-score: needs {_MISSING}: pip install 'regno-api[files]'", file=sys.stderr)
        return 2
    output = args.output or default_output(args.input)
    started = time.monotonic()
    try:
        if not args.input.is_file():
            raise ScoreFileError(f"no such file: {args.input}")
        if output.resolve() == args.input.resolve():
            raise ScoreFileError("the output would overwrite the input; choose another -o")
        settings = Settings.from_env()
        scorer = Scorer.load(settings.model_path)
        scorer.probe()
        rows, failures = score_file(args.input, output, scorer, settings.pick_threshold, args.chunk_rows,
                                    progress=sys.stderr.isatty())
    except (ScoreFileError, SettingsError, ModelLoadError) as error:
        print(f"regno-score: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, pa.ArrowException) as error:
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
