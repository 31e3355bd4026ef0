"""Versioned model folders and the pointer files that name the current and candidate model.

A model is a folder: `model.cbm` and `metadata.json` (version, created date, training data, held-out
metrics, the SHA-256 of `model.cbm`, and optionally the model's own pick `threshold`). A models directory holds such folders, named by version,
and two pointer files: `current` names the folder that answers, `candidate` the one being tried (the
file may be absent). Changing a pointer file (written to a temporary name, then renamed) is how a model
is swapped or rolled back; `previous` remembers what `current` named before the last promotion, for a
rollback. The same layout is what an S3 source holds (model/sources/), and MODELS_DIR is the verified
local copy of whatever the source holds. `regno-model` (model/lifecycle/manage.py) publishes and moves pointers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from model.scorer import ModelLoadError, Scorer, file_checksum

MODEL_FILE = "model.cbm"
METADATA_FILE = "metadata.json"
CURRENT, CANDIDATE, PREVIOUS = "current", "candidate", "previous"


@dataclass(frozen=True)
class Pointer:
    """What a pointer file says: the folder it names (None when the file is absent or empty) and its mtime."""

    name: str | None
    mtime_ns: int | None


def read_pointer(models_dir: Path, which: str) -> Pointer:
    """The version a pointer file names, and the file's mtime (None, None when there is no such file)."""
    path = models_dir / which
    try:
        stat = path.stat()
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return Pointer(None, None)
    return Pointer(name or None, stat.st_mtime_ns)


def write_pointer(models_dir: Path, which: str, version: str | None) -> None:
    """Point which (current or candidate) at version, atomically; None removes the pointer."""
    path = models_dir / which
    if version is None:
        path.unlink(missing_ok=True)
        return
    temporary = models_dir / f".{which}.tmp"
    temporary.write_text(version + "\n", encoding="utf-8")
    os.replace(temporary, path)  # readers see the old name or the new one, never half a file


def metadata_threshold(metadata: dict) -> float | None:
    """The pick threshold a model's metadata names (`threshold`), None when it names none; ValueError when not a probability."""
    value = metadata.get("threshold")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"its metadata's threshold {value!r} is not a number from 0 to 1")
    return float(value)


def load_folder(folder: Path) -> Scorer:
    """The scorer of a model folder, after checking its metadata and the checksum of its model file."""
    metadata_path = folder / METADATA_FILE
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"model folder {folder} has no {METADATA_FILE}") from None
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{metadata_path} is not readable JSON: {error}") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("version"), str):
        raise ModelLoadError(f"{metadata_path} has no version")
    model_path = folder / MODEL_FILE
    if not model_path.is_file():
        raise ModelLoadError(f"model folder {folder} has no {MODEL_FILE}")
    checksum = file_checksum(model_path)
    if metadata.get("sha256") != checksum:
        raise ModelLoadError(f"{model_path} does not match the checksum in {METADATA_FILE}: the file changed or is "
                             "incomplete")
    try:
        threshold = metadata_threshold(metadata)
    except ValueError as error:
        raise ModelLoadError(f"{metadata_path}: {error}") from None
    scorer = Scorer.load(model_path)
    scorer.version, scorer.threshold = metadata["version"], threshold
    return scorer


def load_pointed(models_dir: Path, which: str, pointer: Pointer) -> Scorer:
    """The scorer of the folder a pointer names; ModelLoadError when the pointer names none or the folder is bad."""
    if pointer.name is None:
        raise ModelLoadError(f"{models_dir / which} is missing or empty: it must name the model folder to serve")
    return load_folder(models_dir / pointer.name)


def load_serving(models_dir: Path | None, model_path: Path) -> tuple[Scorer, Pointer | None]:
    """The model to serve, the one way every entry point finds it: MODELS_DIR's `current` when set, else MODEL_PATH.

    Also the `current` pointer it was read from (None with MODEL_PATH), for the watcher to compare with.
    """
    if models_dir is None:
        return Scorer.load(model_path), None
    pointer = read_pointer(models_dir, CURRENT)
    return load_pointed(models_dir, CURRENT, pointer), pointer


def describe(model_file: Path, version: str | None = None, extra: dict | None = None) -> dict:
    """The metadata a publisher records beside a .cbm: version, training facts, sha256 and the probe's answer.

    The version defaults to the one in the model's own metadata; the held-out figures and training
    description come from there too when train.py wrote them. Loading and probing here refuses, at the
    team's desk, what every replica would refuse.
    """
    scorer = Scorer.load(model_file)
    probe = scorer.probe().positive
    if not math.isfinite(probe):
        raise ModelLoadError(f"{model_file} scores the probe record as {probe}, not a probability")
    own = dict(scorer.model.get_metadata())
    return {
        "version": version or own.get("version") or f"sha256-{scorer.checksum[:12]}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_data": own.get("trained_with", "not recorded in the model"),
        "holdout_metrics": {name: float(own[name]) for name in ("holdout_auc", "holdout_accuracy") if name in own},
        "sha256": scorer.checksum,
        "probe_positive": probe,
        **(extra or {}),
    }


def publish(model_file: Path, models_dir: Path, version: str | None = None, extra: dict | None = None) -> Path:
    """Copy a .cbm into a new model folder of models_dir, with its metadata (describe()); the folder's path."""
    return write_folder(model_file, models_dir, describe(model_file, version, extra))


def write_folder(model_file: Path, models_dir: Path, metadata: dict) -> Path:
    """A model folder from a model file and its metadata, appearing whole or not at all; never overwrites one."""
    folder = models_dir / metadata["version"]
    if folder.exists():
        raise FileExistsError(f"{folder} exists: a published version is never overwritten")
    staging = models_dir / f".{metadata['version']}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(model_file, staging / MODEL_FILE)
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, folder)  # the folder appears whole or not at all
    return folder


if __name__ == "__main__":
    # `python -m model.registry publish ...`, the old README's spelling, used to exit 0 having done nothing.
    print("model.registry is a library; publish, promote and roll back with regno-model (regno-model --help)",
          file=sys.stderr)
    raise SystemExit(2)
