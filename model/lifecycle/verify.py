"""Verifying a downloaded model before any pointer may name it.

Four checks, in order, each with the reason a refusal carries (the label of
regno_model_sync_refusals_total):
- `checksum`: the file's sha256 is the one its publisher recorded (a model another tool logged has
  none: then it is checked without one, and the result says so);
- `unloadable`: CatBoost loads the file, and the pick threshold its metadata may name is a probability;
- `features`: every feature it declares is one the contract builds, typed as the contract types it
  (features.py builds the vector in the model's own order, so any order of those names is served);
- `probe`: the probe record scores a finite probability, and the one the publisher recorded, if any.
A version the source names but does not hold is refused as `missing`.

fetch_verified() is the whole step from a source: fetch a version into a folder, refuse it or verify it, and
write its metadata there. The syncer (model/lifecycle/sync.py) and regno-replay (service/replay/) both take it, so what a
replay judges is what the syncer would let serve.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from model.registry import METADATA_FILE, MODEL_FILE, metadata_threshold
from model.scorer import FeatureMismatch, ModelLoadError, Scorer, file_checksum
from model.sources import MissingVersion, ModelSource

REASONS = ("checksum", "unloadable", "features", "probe", "missing")
#: How far the probe's answer may be from the publisher's: CatBoost's float32 sums differ by less across builds.
PROBE_TOLERANCE = 1e-9


class Refused(Exception):
    """A model failed a check; reason is one of REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    """A model that passed every check."""

    sha256: str
    probe_positive: float
    #: False when the publisher recorded no checksum (a model another tool logged).
    checksum_recorded: bool


def verify(model_path: Path, published: dict) -> Verified:
    """Run the four checks on a model file against what its publisher recorded; Refused at the first failure."""
    try:
        metadata_threshold(published)
    except ValueError as error:
        raise Refused("unloadable", str(error)) from None
    sha256 = file_checksum(model_path)
    recorded = published.get("sha256")
    if recorded is not None and recorded != sha256:
        raise Refused("checksum", f"sha256 {sha256[:12]} is not the {str(recorded)[:12]} its publisher recorded")
    try:
        scorer = Scorer.load(model_path)
    except FeatureMismatch as error:
        raise Refused("features", str(error)) from None
    except ModelLoadError as error:
        raise Refused("unloadable", str(error)) from None
    try:
        positive = scorer.probe().positive
    except Exception as error:  # noqa: BLE001 - whatever the model raises, it cannot serve
        raise Refused("probe", f"the probe record does not score: {error}") from None
    if not (math.isfinite(positive) and 0.0 <= positive <= 1.0):
        raise Refused("probe", f"the probe record scores {positive}, not a probability")
    expected = published.get("probe_positive")
    if expected is not None and not math.isclose(positive, float(expected), rel_tol=0.0, abs_tol=PROBE_TOLERANCE):
        raise Refused("probe", f"the probe record scores {positive}, its publisher recorded {expected}")
    return Verified(sha256, positive, recorded is not None)


class Fetched(NamedTuple):
    """A verified version: the metadata written beside its model file, and what the checks found."""

    metadata: dict
    verified: Verified


def fetch_verified(source: ModelSource, version: str, into: Path) -> Fetched:
    """Fetch version into the folder into, verify it, and write its metadata there, making it a model folder
    (model/registry.py's load_folder reads it). Refused when it fails a check; SourceError when unreachable."""
    try:
        published = source.fetch(version, into)
    except MissingVersion as error:
        raise Refused("missing", str(error)) from None
    except ValueError as error:  # metadata that is not JSON, an MLflow model of another flavour
        raise Refused("unloadable", f"it cannot be read as a model: {error}") from None
    verified = verify(into / MODEL_FILE, published)
    metadata = {**published, "version": version, "sha256": verified.sha256, "source": source.label,
                "synced": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "checksum_recorded": verified.checksum_recorded}
    (into / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return Fetched(metadata, verified)
