"""The model a replay judges: a .cbm file, or a version at the model source fetched and verified as the syncer does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.registry import CANDIDATE, CURRENT, load_folder
from model.scorer import Scorer
from model.sources import ModelSource
from model.lifecycle.verify import Refused, fetch_verified

#: The words --version takes for what a pointer at the source names.
POINTERS = (CANDIDATE, CURRENT)


class CandidateError(Exception):
    """A candidate that cannot be replayed: its message is the one line the user sees."""


@dataclass(frozen=True)
class ModelFile:
    """Where each process loads the candidate from: a verified model folder (its metadata's threshold applies) or
    a bare .cbm (PICK_THRESHOLD applies)."""

    path: Path
    folder: bool

    def load(self) -> Scorer:
        """The scorer, loaded the way the service loads a model of this kind."""
        return load_folder(self.path) if self.folder else Scorer.load(self.path)


def version_named(source: ModelSource, version: str) -> str:
    """The version --version names at the source: itself, or what the `candidate` or `current` pointer names."""
    if version in POINTERS:
        named = source.read_pointer(version)
        if named is None:
            raise CandidateError(f"{source.label} names no {version} model")
        version = named
    return checked_name(version)


def checked_name(version: str) -> str:
    """The version, when it can name a folder of replays/ (one that readers read); CandidateError when not."""
    if not version or version.startswith(".") or any(character in version for character in "/\\\0"):
        raise CandidateError(f"the version {version!r} cannot name a replay's folder")
    return version


def fetch_candidate(source: ModelSource, version: str, into: Path) -> ModelFile:
    """Fetch a version into a new folder under into and verify it (model/lifecycle/verify.py, the syncer's own step).

    CandidateError when it fails a check (model/lifecycle/verify.py), SourceError when the source cannot be reached.
    """
    folder = into / version
    folder.mkdir(parents=True)
    try:
        fetch_verified(source, version, folder)
    except Refused as refusal:
        raise CandidateError(f"{version} at {source.label} is refused ({refusal.reason}), as the syncer would "
                             f"refuse it: {refusal}") from None
    return ModelFile(folder, folder=True)
