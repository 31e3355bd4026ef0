"""A folder source: the models-directory layout (model/registry.py) on a disk every replica can read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from model.registry import METADATA_FILE, MODEL_FILE, read_pointer, write_folder, write_pointer
from model.sources.base import MissingVersion, SourceError


class FolderSource:
    """Models in a folder: version folders and pointer files, as MODELS_DIR holds them."""

    kind = "folder"

    def __init__(self, root: Path):
        self.root = root
        self.label = str(root)

    def read_pointer(self, which: str) -> str | None:
        """The version the pointer file names."""
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a folder (an unmounted share?)")
        return read_pointer(self.root, which).name

    def fetch(self, version: str, into: Path) -> dict:
        """Copy the version's model file; its metadata.json as the publisher wrote it."""
        folder = self.root / version
        if not (folder / METADATA_FILE).is_file():  # metadata is written last: without it, no model
            raise MissingVersion(f"{self.label} holds no version {version}")
        shutil.copyfile(folder / MODEL_FILE, into / MODEL_FILE)
        return json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))

    def publish(self, model_file: Path, metadata: dict) -> str:
        """A new version folder, whole or not at all."""
        self.root.mkdir(parents=True, exist_ok=True)
        return write_folder(model_file, self.root, metadata).name

    def set_pointer(self, which: str, version: str | None) -> None:
        """Rewrite the pointer file atomically."""
        if version is not None and not (self.root / version / METADATA_FILE).is_file():
            raise MissingVersion(f"{self.label} holds no version {version}")
        write_pointer(self.root, which, version)
