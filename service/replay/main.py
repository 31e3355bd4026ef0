"""regno-replay: score a window of the prediction log with a candidate model, beside the answers the log holds.

    regno-replay --day yesterday                           the source's candidate, on yesterday's passes
    regno-replay --version v7 --from 2026-12-01 --to 2026-12-07 --threshold
    regno-replay --model /tmp/v8.cbm --day 2026-12-03 --json

The candidate is --model FILE (PICK_THRESHOLD applies), or --version V at the model source (MODEL_SOURCE, else
MODELS_DIR, or --source): a version, or `candidate` or `current` for what that pointer names (the default is
the candidate). A version is fetched into a temporary folder and verified as the syncer verifies it, and
its metadata's pick threshold applies. Each pass of the window is scored once (its first answer is the one
compared), through the service's scoring engine in REPLAY_WORKERS processes (--workers; 0, the default, is
one per core). The rows go to <log>/replays/<version>/ with a summary.json, replacing the version's earlier
replay; `regno-log sql "... FROM replays"` reads them, and `regno-model promote` reads the summary. The log is
PREDICTION_LOG_PARQUET_DIR (or PREDICTION_LOG_DIR/parquet, or --dir). Exit status 2, with one line saying why,
for bad arguments, a missing log, a window with no pass, or a candidate the service would refuse.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn, Sequence

from config import Settings, SettingsError
from config.extras import missing
from model.engine import ScoringEngine
from model.lifecycle.promotion_gate import SUMMARY_FILE, replay_folder
from model.registry import CANDIDATE
from model.routing import ModelSlot
from model.scorer import ModelLoadError, Scorer
from model.sources import SourceError, SourceOptions, open_source
from service.predictions.query import attach, connect
from service.predictions.rows import REPLAYS
from service.replay.candidate import CandidateError, ModelFile, checked_name, fetch_candidate, version_named
from service.replay.passes import pass_batches, prepare
from service.replay.scoring import ReplayPool, cores
from service.replay.store import ReplayWriter, replace_folder, replay_batch, staging_folder
from service.replay.verdict import search_threshold, summarize
from service.report.data import EmptyWindow, Window
from service.report.window import add_window_options, window_of


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as the one line every regno command fails with."""

    def error(self, message: str) -> NoReturn:
        """Print `regno-replay: message` and exit 2, without the usage text."""
        self.exit(2, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = _Parser(prog="regno-replay", description=__doc__.splitlines()[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--model", type=Path, metavar="FILE", help="a .cbm file to replay (PICK_THRESHOLD applies)")
    chosen.add_argument("--version", metavar="V", help="a version at the model source, or `candidate` or `current` "
                        "(default: candidate)")
    parser.add_argument("--source", help="the model source of --version (default: MODEL_SOURCE, else MODELS_DIR)")
    add_window_options(parser, default_day=None)
    parser.add_argument("--dir", type=Path, help="the log's Parquet folder (default: from the settings)")
    parser.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    parser.add_argument("--threshold", action="store_true",
                        help="also search the pick threshold that does best on the labelled passes")
    parser.add_argument("--workers", type=int, metavar="N", help="scoring processes (default: REPLAY_WORKERS; 0 is "
                        "one per core)")
    return parser


@dataclass(frozen=True)
class Candidate:
    """The model a replay judges: where workers load it from, and it loaded."""

    model: ModelFile
    scorer: Scorer


def open_candidate(args: argparse.Namespace, settings: Settings, scratch: Path) -> Candidate:
    """The candidate the options name, loaded; a version is fetched into scratch and verified first."""
    if args.model is not None:
        model = ModelFile(args.model, folder=False)
        scorer = model.load()
        checked_name(scorer.version)
        return Candidate(model, scorer)
    uri = args.source or settings.model_source or (str(settings.models_dir) if settings.models_dir else None)
    if not uri:
        raise SettingsError("no model source: set MODEL_SOURCE or MODELS_DIR, pass --source, or --model FILE")
    source = open_source(uri, SourceOptions.of(settings))
    model = fetch_candidate(source, version_named(source, args.version or CANDIDATE), scratch)
    return Candidate(model, model.load())


def replay(root: Path, window: Window, candidate: Candidate, pick_threshold: float, workers: int, scratch: Path,
           search: bool = False, progress: bool = True) -> dict:
    """Replay the window's passes with the candidate into root's replays/<version>/; the summary written there."""
    version = candidate.scorer.version
    threshold = ScoringEngine(pick_threshold).threshold_of(ModelSlot.of(candidate.scorer, 1))
    replay_id, replayed_at = uuid.uuid4().hex, datetime.now(timezone.utc).isoformat(timespec="seconds")
    with ReplayPool(candidate.model, threshold, workers) as pool:
        pool.start()  # forked before DuckDB starts its threads
        connection = connect(root)
        passes, skipped = prepare(connection, window, scratch)
        if not passes:
            raise EmptyWindow(f"no scored pass between {window.start.isoformat()} and {window.end.isoformat()} "
                              f"in {root}" + (f" ({skipped} rows failed validation)" if skipped else ""))
        staging = staging_folder(root, version)
        try:
            writer = ReplayWriter(staging)
            with _progress(passes, progress) as bar:
                for batch, answers in pool.scored(pass_batches(connection, window)):
                    writer.write(replay_batch(batch, answers, version, threshold, replay_id))
                    bar.update(batch.num_rows)
            writer.close()
            attach(connection, REPLAYS, str(staging / "day=*" / "*.parquet"))  # the new rows, before they replace
            summary = {"replay_id": replay_id, "replayed_at": replayed_at, "candidate": version, "threshold": threshold,
                       **summarize(connection, version, window), "skipped": skipped,
                       "threshold_search": search_threshold(connection, version, window, threshold) if search else None}
            (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            replace_folder(staging, root, version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it replaced the folder
    return summary


def _progress(total: int, shown: bool):
    """A progress bar in passes on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, unit=" passes", unit_scale=True, file=sys.stderr, disable=not shown,
                desc="regno-replay")


def describe(summary: dict, folder: Path, searched: bool = False) -> str:
    """The summary in a few lines for a person (with the threshold search's, when searched)."""
    flips, window = summary["flips"], summary["window"]
    accuracies = "; ".join(
        f"{model['model']} ({model['role']}) "
        + ("no label" if model["accuracy"] is None else
           f"{model['accuracy']:.2%} of {model['labelled']:,} right")
        for model in summary["models"])
    lines = [
        f"{summary['candidate']} (threshold {summary['threshold']:g}) replayed on {window['from']} .. {window['to']}: "
        f"{summary['passes']:,} passes, {summary['skipped']:,} rows skipped (failed validation)",
        f"flips: {flips['to_ai']:,} to the AI's plate, {flips['to_camera']:,} to the camera's",
        f"pick accuracy on labelled passes: {accuracies}",
        f"verdict: {summary['verdict_words']}",
    ]
    search = summary.get("threshold_search")
    if search and search.get("best") is not None:
        low, high = search["interval95"]
        lines.append(f"best threshold: {search['best']:.3f} (95% interval {low:.3f} to {high:.3f}) picks right "
                     f"{search['best_accuracy']:.2%} of {search['labelled']:,} labelled passes, against "
                     f"{search['current_accuracy']:.2%} at {search['current']:g}")
    elif searched:
        lines.append("best threshold: none, no pass of the window is labelled")
    return "\n".join([*lines, f"rows and summary: {folder}"])


def main(argv: Sequence[str] | None = None) -> int:
    """Run regno-replay."""
    parser = _parser()
    args = parser.parse_args(argv)  # first: --help needs no extra
    if args.day is None and args.start is None and args.end is None:
        parser.error("name the window: --day D, or --from X and --to Y")
    try:
        window = window_of(args.day, args.start, args.end, datetime.now(timezone.utc))
    except ValueError as error:
        parser.error(str(error))
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be 0 (one per core) or more, got {args.workers}")
    absent = missing("DuckDB and pyarrow", "log", "duckdb", "pyarrow")
    if absent:
        print(f"regno-replay: {absent}", file=sys.stderr)
        return 2
    import duckdb
    try:
        settings = Settings.from_env()
        root = args.dir or settings.prediction_log_parquet
        if root is None:
            raise SettingsError("no log folder: set PREDICTION_LOG_DIR or PREDICTION_LOG_PARQUET_DIR, or pass --dir")
        if not any(root.glob("day=*/*.parquet")):
            raise FileNotFoundError(f"no prediction-log Parquet files under {root}")
        workers = settings.replay_workers if args.workers is None else args.workers
        with tempfile.TemporaryDirectory(prefix="regno-replay-") as scratch:
            candidate = open_candidate(args, settings, Path(scratch))
            summary = replay(root, window, candidate, settings.pick_threshold, workers or cores(), Path(scratch),
                             search=args.threshold, progress=not args.json)
    except (SettingsError, FileNotFoundError, SourceError, CandidateError, ModelLoadError, EmptyWindow,
            OSError) as error:
        print(f"regno-replay: {error}", file=sys.stderr)
        return 2
    except duckdb.Error as error:  # an unreadable file: DuckDB's first line says which
        print(f"regno-replay: {type(error).__name__}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print(describe(summary, replay_folder(root, summary["candidate"]), args.threshold))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
