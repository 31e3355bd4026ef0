"""regno-model: the team's side of the model source. Publish a trained model, promote it, roll back.

    regno-model publish MODEL.cbm [--to SOURCE] [--version V] [--current | --candidate]
    regno-model promote [VERSION] [--to SOURCE]     # VERSION defaults to the candidate
    regno-model rollback [--to SOURCE]              # current goes back to what it named before
    regno-model show [--to SOURCE]                  # what each pointer names

SOURCE is a folder, s3://bucket/prefix or models:/<name> (MLflow); MODEL_SOURCE when --to is left out.
A publish uploads the model file first and its metadata (sha256, the probe's answer, training facts)
last, so a half-finished upload is never a model; a pointer moves only after that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from config import Settings, SettingsError
from model.registry import CANDIDATE, CURRENT, PREVIOUS, describe
from model.scorer import ModelLoadError
from model.sources import MissingVersion, ModelSource, SourceError, SourceOptions, open_source, wanted


def publish(source: ModelSource, model_file: Path, version: str | None = None, point: str | None = None,
            extra: dict | None = None) -> str:
    """Publish a .cbm to the source and optionally point `current` or `candidate` at it; the version."""
    published = source.publish(model_file, describe(model_file, version, extra))
    if point == CURRENT:
        promote(source, published)
    elif point == CANDIDATE:
        source.set_pointer(CANDIDATE, published)
    return published


def promote(source: ModelSource, version: str | None = None) -> str:
    """Make version (the candidate by default) current; the current one is remembered as `previous`."""
    candidate = source.read_pointer(CANDIDATE)
    version = version or candidate
    if version is None:
        raise MissingVersion(f"{source.label} has no candidate to promote: name a version")
    current = source.read_pointer(CURRENT)
    if current == version:
        return version
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
    """The regno-model command line; 2 and one line on stderr when it cannot."""
    parser = argparse.ArgumentParser(prog="regno-model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    publish_command = commands.add_parser("publish", help="upload a .cbm with its metadata and checksum")
    publish_command.add_argument("model", type=Path)
    publish_command.add_argument("--version", help="the version to publish as (default: the model's own)")
    pointer = publish_command.add_mutually_exclusive_group()
    pointer.add_argument("--current", action="store_true", help="then promote it to current")
    pointer.add_argument("--candidate", action="store_true", help="then make it the candidate")
    publish_command.add_argument("--if-no-current", action="store_true", help="only when the source names no "
                                 "current model yet (a first start seeds it); else print the current one")
    promote_command = commands.add_parser("promote", help="make a version (the candidate by default) current")
    promote_command.add_argument("version", nargs="?")
    commands.add_parser("rollback", help="point current back at the previous model")
    commands.add_parser("show", help="print what each pointer names, as JSON")
    for command in commands.choices.values():
        command.add_argument("--to", dest="source", help="folder, s3://bucket/prefix or models:/<name> "
                             "(default: MODEL_SOURCE)")
        command.add_argument("--models-dir", dest="source", help=argparse.SUPPRESS)  # the earlier spelling
    args = parser.parse_args(argv)
    try:
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
            print(publish(source, args.model, args.version, point))
        elif args.command == "promote":
            print(promote(source, args.version))
        elif args.command == "rollback":
            print(rollback(source))
        else:
            print(json.dumps(wanted(source, (CURRENT, CANDIDATE, PREVIOUS))))
    except (SettingsError, SourceError, MissingVersion, ModelLoadError, FileExistsError, ValueError,
            OSError) as error:
        print(f"regno-model: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
