"""regno-report: one self-contained HTML page on how the models did over a time window of the prediction log.

    regno-report                                   today (UTC)
    regno-report --day yesterday -o report.html
    regno-report --from 2026-12-01 --to 2026-12-03 --model v2=/tmp/v2.cbm
    regno-report --from 2026-12-03T08:00:00Z --to 2026-12-03T12:00:00Z --dir /data/log/parquet

Passes are chosen by the time of their predictions (--to as a day includes that day); labels join whenever they
arrived. The log is PREDICTION_LOG_PARQUET_DIR (or PREDICTION_LOG_DIR/parquet, or --dir); each version's model
file comes from --model, MODELS_DIR or MODEL_PATH. Exit status 2, with one line saying why, when the folder is
missing or empty, the window holds no row, or the `report` extra (DuckDB, pyarrow, matplotlib) is not installed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Sequence

from config import Settings, SettingsError
from config.extras import missing
from service.predictions.query import connect
from service.report.data import EmptyWindow, Window, build
from service.report.references import References, parse_model_option
from service.report.window import add_window_options, window_of


def bound_name(moment: datetime, end: bool) -> str:
    """A bound as it goes in the default file name: the day when it is a day boundary, else the time."""
    if moment.time() == time():
        return (moment - timedelta(days=1) if end else moment).date().isoformat()
    return f"{moment:%Y-%m-%dT%H%M%SZ}"


def default_out(window: Window) -> Path:
    """regno-report-<from>-<to>.html, with --to's day (the last day covered) for a whole-day window."""
    return Path(f"regno-report-{bound_name(window.start, False)}-{bound_name(window.end, True)}.html")


def _parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(prog="regno-report", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_window_options(parser)
    parser.add_argument("-o", "--out", type=Path, help="the HTML file (default regno-report-<from>-<to>.html)")
    parser.add_argument("--dir", type=Path, help="the Parquet folder (default: from the settings)")
    parser.add_argument("--model", action="append", default=[], metavar="VERSION=PATH",
                        help="the model file of a version, for its training reference (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run regno-report."""
    absent = missing("DuckDB, pyarrow and matplotlib", "report", "duckdb", "pyarrow", "matplotlib")
    if absent:
        print(f"regno-report: {absent}", file=sys.stderr)
        return 2
    import duckdb

    from service.report.render import render  # its charts import matplotlib

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        window = window_of(args.day, args.start, args.end, datetime.now(timezone.utc))
        named = dict(parse_model_option(option) for option in args.model)
    except ValueError as error:
        parser.error(str(error))
    try:
        settings = Settings.from_env()
        root = args.dir or settings.prediction_log_parquet
        if root is None:
            raise SettingsError("no log folder: set PREDICTION_LOG_DIR or PREDICTION_LOG_PARQUET_DIR, or pass --dir")
        references = References(named, settings.models_dir, settings.model_path)
        report = build(connect(root), window, settings.pick_threshold, references, root)
        out = args.out or default_out(window)
        out.write_text(render(report, str(root)), encoding="utf-8")
    except (SettingsError, FileNotFoundError, EmptyWindow, OSError) as error:
        print(f"regno-report: {error}", file=sys.stderr)
        return 2
    except duckdb.Error as error:  # an unreadable file: DuckDB's first line says which
        print(f"regno-report: {type(error).__name__}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
