"""Model folders: publishing, checks on load, and the pointer files that name the current and candidate model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model import BUNDLED_MODEL
from model.profile import read_profile
from model.registry import (CANDIDATE, CURRENT, METADATA_FILE, MODEL_FILE, load_folder, publish, read_pointer,
                            write_pointer)
from model.scorer import ModelLoadError, file_checksum
from loadtest.servers import ROOT


def test_publish_writes_a_checked_folder(tmp_path):
    """A published folder holds the model and its metadata: version, date, training, held-out metrics, checksum."""
    folder = publish(BUNDLED_MODEL, tmp_path, "v1")
    metadata = json.loads((folder / METADATA_FILE).read_text())
    assert folder == tmp_path / "v1"
    assert metadata["version"] == "v1" and metadata["sha256"] == file_checksum(BUNDLED_MODEL)
    assert metadata["training_data"].startswith("python -m training.train")  # the bundled model's training command
    assert 0.9 < metadata["holdout_metrics"]["holdout_auc"] <= 1.0
    assert metadata["created"].endswith("+00:00")
    scorer = load_folder(folder)
    assert (scorer.version, scorer.checksum) == ("v1", metadata["sha256"])
    assert read_profile(scorer.model)["rows"] > 0  # the training reference travels inside the model file
    with pytest.raises(FileExistsError):
        publish(BUNDLED_MODEL, tmp_path, "v1")


def test_version_defaults_to_the_models_own(tmp_path):
    """Without --version, the folder takes the version train.py stored in the model."""
    assert publish(BUNDLED_MODEL, tmp_path).name == "regno-sim-1"


@pytest.mark.parametrize("damage,message", [
    (lambda folder: (folder / MODEL_FILE).write_bytes(b"not a model"), "does not match the checksum"),
    (lambda folder: (folder / METADATA_FILE).unlink(), "has no metadata.json"),
    (lambda folder: (folder / METADATA_FILE).write_text("{"), "not readable JSON"),
    (lambda folder: (folder / MODEL_FILE).unlink(), "has no model.cbm"),
])
def test_damaged_folders_are_refused(tmp_path, damage, message):
    """A folder whose model changed, or that lacks a file, is refused with a message saying why."""
    folder = publish(BUNDLED_MODEL, tmp_path, "v1")
    damage(folder)
    with pytest.raises(ModelLoadError, match=message):
        load_folder(folder)


def test_pointers_are_written_whole_and_removable(tmp_path):
    """A pointer names a version, changes atomically (its mtime moves), and can be removed."""
    assert read_pointer(tmp_path, CANDIDATE).name is None
    write_pointer(tmp_path, CURRENT, "v1")
    first = read_pointer(tmp_path, CURRENT)
    write_pointer(tmp_path, CURRENT, "v2")
    second = read_pointer(tmp_path, CURRENT)
    assert (first.name, second.name) == ("v1", "v2") and second.mtime_ns >= first.mtime_ns
    assert not list(tmp_path.glob(".*.tmp"))
    write_pointer(tmp_path, CURRENT, None)
    assert read_pointer(tmp_path, CURRENT).name is None


def test_publish_command_points_at_the_new_folder(tmp_path):
    """`regno-model publish` to a folder prints the version and can make it the candidate."""
    run = subprocess.run([sys.executable, "-m", "model.lifecycle.manage", "publish", str(BUNDLED_MODEL), "--to",
                          str(tmp_path), "--version", "v9", "--candidate"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "v9"
    assert read_pointer(tmp_path, CANDIDATE).name == "v9"
    again = subprocess.run([sys.executable, "-m", "model.lifecycle.manage", "publish", str(BUNDLED_MODEL), "--models-dir",
                            str(tmp_path), "--version", "v9"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "never overwritten" in again.stderr


def test_running_the_library_points_at_regno_model():
    """`python -m model.registry publish ...` no longer exits 0 doing nothing: exit 2, one line naming regno-model."""
    run = subprocess.run([sys.executable, "-m", "model.registry", "publish", str(BUNDLED_MODEL)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == ["model.registry is a library; publish, promote and roll back with regno-model "
                                       "(regno-model --help)"]
