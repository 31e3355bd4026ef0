"""regno-model: the team's side of the model source. Publish a trained model, promote it, roll back.

    regno-model publish MODEL.cbm [--to SOURCE] [--version V] [--threshold T] [--current | --candidate]
    regno-model promote [VERSION] [--to SOURCE] [--log-dir DIR] [--force]   # VERSION defaults to the candidate
    regno-model rollback [--to SOURCE]              # current goes back to what it named before
    regno-model show [--to SOURCE]                  # what each pointer names

SOURCE is a folder, s3://bucket/prefix or models:/<name> (MLflow); MODEL_SOURCE when --to is left out.
A publish uploads the model file first and its metadata (sha256, the probe's answer, training facts, the
model's own pick threshold with --threshold) last, so a half-finished upload is never a model; a pointer
moves only after that. A promotion first reads the version's latest replay (regno-replay) from the prediction
log's folder (model/lifecycle/promotion_gate.py): one that found it worse on REPLAY_MIN_LABELS labelled passes or more
refuses it, exit status 1, unless --force.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from config import Settings, SettingsError
from model.lifecycle.promotion_gate import judge, latest_replay
from model.registry import CANDIDATE, CURRENT, PREVIOUS, describe, metadata_threshold
from model.scorer import ModelLoadError
from model.sources import MissingVersion, ModelSource, SourceError, SourceOptions, open_source, wanted

log = logging.getLogger("regno")


class PromotionRefused(Exception):
    """The version's latest replay found it worse on enough labelled passes: it stays where it is."""


@dataclass(frozen=True)
class Gate:
    """What a promotion is checked against: the log folder replays are under, REPLAY_MIN_LABELS, and --force."""

    #: The prediction log's Parquet folder; None when no log folder is configured.
    log_dir: Path | None
    min_labels: int
    force: bool = False

    def check(self, version: str) -> None:
        """Say on stderr what version's latest replay showed; PromotionRefused when it refuses and not forced."""
        if self.log_dir is None:
            _say(f"no replay of {version} found: no log folder is set (PREDICTION_LOG_DIR, "
                 "PREDICTION_LOG_PARQUET_DIR or --log-dir): promoting without one")
            return
        summary = latest_replay(self.log_dir, version)
        if summary is None:
            _say(f"no replay of {version} found under {self.log_dir}: promoting without one")
            return
        decision = judge(summary, self.min_labels)
        if not decision.refuse:
            _say(f"promoting {version}: {decision.words}")
        elif self.force:
            log.warning("regno-model: forced past a refusing replay (--force): promoting %s although %s", version,
                        decision.words)
        else:
            raise PromotionRefused(f"not promoting {version}: {decision.words}; --force promotes it anyway")


def _say(line: str) -> None:
    """One line of what the command found, on stderr (stdout holds only its answer)."""
    print(f"regno-model: {line}", file=sys.stderr)


def parse_threshold(text: str) -> float:
    """--threshold's value: a pick threshold from 0 to 1; ValueError otherwise."""
    try:
        return metadata_threshold({"threshold": float(text)})
    except ValueError:
        raise ValueError(f"--threshold takes a number from 0 to 1, got {text!r}") from None


def publish(source: ModelSource, model_file: Path, version: str | None = None, point: str | None = None,
            extra: dict | None = None) -> str:
    """Publish a .cbm to the source and optionally point `current` or `candidate` at it; the version."""
    published = source.publish(model_file, describe(model_file, version, extra))
    if point == CURRENT:
        promote(source, published)
    elif point == CANDIDATE:
        source.set_pointer(CANDIDATE, published)
    return published


def promote(source: ModelSource, version: str | None = None, gate: Gate | None = None) -> str:
    """Make version (the candidate by default) current; the current one is remembered as `previous`.

    With a gate, the version's latest replay is checked first (the same for every kind of source: the version is
    the name it is served as); PromotionRefused when it refuses.
    """
    candidate = source.read_pointer(CANDIDATE)
    version = version or candidate
    if version is None:
        raise MissingVersion(f"{source.label} has no candidate to promote: name a version")
    current = source.read_pointer(CURRENT)
    if current == version:
        return version
    if gate is not None:
        gate.check(version)
    source.set_pointer(CURRENT, version)
    if current is not None:
        try:
            source.set_pointer(PREVIOUS, current)
        except MissingVersion:  # current named a version that is gone: nothing to roll back to
            source.set_pointer(PREVIOUS, None)
    if candidate == version:
        source.set_pointer(CANDIDATE, None)  # promoted: nothing is being tried any more
    return version


def rollback(source: ModelSource) -> str:
    """Point `current` back at `previous` (and `previous` at what was current, so a rollback can be undone)."""
    previous, current = source.read_pointer(PREVIOUS), source.read_pointer(CURRENT)
    if previous is None:
        raise MissingVersion(f"{source.label} remembers no previous model to roll back to")
    source.set_pointer(CURRENT, previous)
    if current is not None:
        source.set_pointer(PREVIOUS, current)
    return previous


def main(argv: Sequence[str] | None = None) -> int:
    """The regno-model command line; 2 and one line on stderr when it cannot, 1 when a replay refuses a promotion."""
    parser = argparse.ArgumentParser(prog="regno-model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    publish_command = commands.add_parser("publish", help="upload a .cbm with its metadata and checksum")
    publish_command.add_argument("model", type=Path)
    publish_command.add_argument("--version", help="the version to publish as (default: the model's own)")
    publish_command.add_argument("--threshold", help="the model's own pick threshold, 0 to 1, recorded in its "
                                 "metadata (default: none, so the service's PICK_THRESHOLD applies)")
    pointer = publish_command.add_mutually_exclusive_group()
    pointer.add_argument("--current", action="store_true", help="then promote it to current")
    pointer.add_argument("--candidate", action="store_true", help="then make it the candidate")
    publish_command.add_argument("--if-no-current", action="store_true", help="only when the source names no "
                                 "current model yet (a first start seeds it); else print the current one")
    promote_command = commands.add_parser("promote", help="make a version (the candidate by default) current")
    promote_command.add_argument("version", nargs="?")
    promote_command.add_argument("--log-dir", type=Path, help="the prediction log's Parquet folder, where its "
                                 "replay is (default: PREDICTION_LOG_PARQUET_DIR or PREDICTION_LOG_DIR/parquet)")
    promote_command.add_argument("--force", action="store_true", help="promote even when its replay refuses it")
    commands.add_parser("rollback", help="point current back at the previous model")
    commands.add_parser("show", help="print what each pointer names, as JSON")
    for command in commands.choices.values():
        command.add_argument("--to", dest="source", help="folder, s3://bucket/prefix or models:/<name> "
                             "(default: MODEL_SOURCE)")
        command.add_argument("--models-dir", dest="source", help=argparse.SUPPRESS)  # the earlier spelling
    args = parser.parse_args(argv)
    _warnings_to_stderr()
    try:
        extra = ({"threshold": parse_threshold(args.threshold)}
                 if args.command == "publish" and args.threshold is not None else None)
        settings = Settings.from_env()
        uri = args.source or settings.model_source
        if not uri:
            raise SettingsError("name the source with --to, or set MODEL_SOURCE")
        source = open_source(uri, SourceOptions.of(settings))
        if args.command == "publish" and args.if_no_current and (current := source.read_pointer(CURRENT)):
            print(f"regno-model: {source.label} already serves {current}; nothing published", file=sys.stderr)
            print(current)
        elif args.command == "publish":
            point = CURRENT if args.current else CANDIDATE if args.candidate else None
            print(publish(source, args.model, args.version, point, extra))
        elif args.command == "promote":
            gate = Gate(args.log_dir or settings.prediction_log_parquet, settings.replay_min_labels, args.force)
            print(promote(source, args.version, gate))
        elif args.command == "rollback":
            print(rollback(source))
        else:
            print(json.dumps(wanted(source, (CURRENT, CANDIDATE, PREVIOUS))))
    except (SettingsError, SourceError, MissingVersion, ModelLoadError, FileExistsError, ValueError,
            OSError) as error:
        print(f"regno-model: {error}", file=sys.stderr)
        return 2
    except PromotionRefused as error:
        print(f"regno-model: {error}", file=sys.stderr)
        return 1
    return 0


def _warnings_to_stderr() -> None:
    """The regno logger's warnings (a forced promotion) as plain lines on stderr, unless logging is set up already."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)


if __name__ == "__main__":
    raise SystemExit(main())
