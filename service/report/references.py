"""Which model file a version the log names comes from, and the training reference (profile) it carries.

A version is looked up, in order: among the files named on the command line (--model VERSION=PATH), as a
folder of MODELS_DIR (model/registry.py's layout), then as MODEL_PATH when that file's version matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from model.profile import read_profile
from model.registry import MODEL_FILE, load_folder
from model.scorer import ModelLoadError, Scorer

NO_PROFILE = "no training reference in this model"


def parse_model_option(text: str) -> tuple[str, Path]:
    """VERSION=PATH of a --model option, as (version, path); ValueError when it is not of that form."""
    version, separator, path = text.partition("=")
    if not separator or not version.strip() or not path.strip():
        raise ValueError(f"--model takes VERSION=PATH, got {text!r}")
    return version.strip(), Path(path.strip())


@dataclass(frozen=True)
class Reference:
    """A version's model file (None when not found), its training reference, and why there is none."""

    version: str
    path: Path | None
    profile: dict | None
    #: Why there is no profile to compare with (no file found, unreadable file, or a model without one).
    problem: str | None


class References:
    """Finds and reads the model file of each version once, on first use."""

    def __init__(self, named: Mapping[str, Path], models_dir: Path | None, model_path: Path | None):
        self.named = dict(named)
        self.models_dir = models_dir
        self.model_path = model_path
        self._found: dict[str, Reference] = {}
        self._model_path_scorer: Scorer | None | str = None

    def _from_model_path(self, version: str) -> Scorer | None:
        """MODEL_PATH's scorer when its version is this one (loaded once, whatever the version asked)."""
        if self.model_path is None:
            return None
        if self._model_path_scorer is None:
            try:
                self._model_path_scorer = Scorer.load(self.model_path)
            except ModelLoadError as error:
                self._model_path_scorer = str(error)
        scorer = self._model_path_scorer
        return scorer if isinstance(scorer, Scorer) and scorer.version == version else None

    def _load(self, version: str) -> Reference:
        """Look the version up in order, and read the profile of the first model file found."""
        try:
            if version in self.named:
                scorer, path = Scorer.load(self.named[version]), self.named[version]
            elif self.models_dir is not None and (self.models_dir / version / MODEL_FILE).is_file():
                scorer, path = load_folder(self.models_dir / version), self.models_dir / version / MODEL_FILE
            else:
                scorer = self._from_model_path(version)
                path = self.model_path if scorer is not None else None
        except ModelLoadError as error:
            return Reference(version, None, None, f"the model file of {version} cannot be read: {error}")
        if scorer is None:
            return Reference(version, None, None, f"no model file found for {version}: set MODELS_DIR or pass "
                                                  f"--model {version}=PATH")
        profile = read_profile(scorer.model)
        return Reference(version, path, profile, None if profile is not None else NO_PROFILE)

    def get(self, version: str) -> Reference:
        """The reference of a version, found and read on first use."""
        if version not in self._found:
            self._found[version] = self._load(version)
        return self._found[version]
