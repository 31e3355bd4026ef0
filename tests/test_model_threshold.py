"""A model's own pick threshold: it picks for that model only, under a canary and in the shadow, and says so."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from model import BUNDLED_MODEL
from model.engine import AI, CAMERA
from model.records import parse_record
from model.registry import CANDIDATE, CURRENT, METADATA_FILE, load_folder, publish, write_pointer
from model.scorer import ModelLoadError
from model.sources.folder import FolderSource
from model.lifecycle.sync import ModelSyncer
from service import create_app
from tests.conftest import ApiClient
from training.simulate import simulate_records

#: The candidate's own threshold: high enough that many passes v1 hands the AI go to the camera under v2.
OWN = 0.9


@pytest.fixture
def thresholds_dir(tmp_path):
    """The bundled model twice: v1 with no threshold of its own (current), v2 with OWN (candidate)."""
    folder = tmp_path / "models"
    publish(BUNDLED_MODEL, folder, "v1")
    publish(BUNDLED_MODEL, folder, "v2", extra={"threshold": OWN})
    write_pointer(folder, CURRENT, "v1")
    write_pointer(folder, CANDIDATE, "v2")
    return folder


def _expected_source(positive: float, threshold: float) -> str:
    """The source the pick rule gives at threshold."""
    return AI if positive >= threshold else CAMERA


def test_a_models_threshold_picks_for_it_alone_under_a_canary(settings, thresholds_dir):
    """Half the passes meet v2: those pick at 0.9, the rest at PICK_THRESHOLD 0.5, and each answer names its own."""
    app = create_app(replace(settings, models_dir=thresholds_dir, canary_share=0.5))
    assert app.extensions["regno"].watcher.check() is True
    client = ApiClient(app.test_client())
    records = simulate_records(300, seed=41)
    answers = client.post("/reg/batch", json=records).get_json()["body"]
    singles = [client.post(json=record).get_json()["body"] for record in records[:40]]
    assert singles == answers[:40]
    by_model = {"v1": [], "v2": []}
    for answer in answers:
        by_model[answer["model"]].append(answer)
        threshold = OWN if answer["model"] == "v2" else 0.5
        assert answer["threshold"] == threshold
        assert answer["source"] == _expected_source(answer["positive"], threshold)
    assert len(by_model["v1"]) > 100 and len(by_model["v2"]) > 100
    # The same model file, so only the threshold can differ: v2 must have sent some middling scores to the camera.
    assert any(0.5 <= answer["positive"] < OWN and answer["source"] == CAMERA for answer in by_model["v2"])
    assert any(0.5 <= answer["positive"] < OWN and answer["source"] == AI for answer in by_model["v1"])
    health = client.get("/health").get_json()["body"]
    assert (health["model"]["threshold"], health["model"]["threshold_source"]) == (0.5, "pick_threshold")
    assert (health["candidate"]["threshold"], health["candidate"]["threshold_source"]) == (OWN, "model")


def test_the_shadow_picks_at_the_candidates_threshold(settings, thresholds_dir, tmp_path):
    """Shadow scoring judges v2 at its own threshold: its logged shadow source follows 0.9."""
    from loadtest.report_screenshot import flush_log
    from service.predictions.query import connect, rows

    app = create_app(replace(settings, models_dir=thresholds_dir, shadow_share=1.0, prediction_log_dir=tmp_path / "log"))
    state = app.extensions["regno"]
    assert state.watcher.check() is True
    client = ApiClient(app.test_client())
    for record in simulate_records(80, seed=42):
        client.post(json=record).close()  # the close runs the shadow score and writes the row
    flush_log(state)
    state.shipper.ship_once()
    logged = rows(connect(tmp_path / "log" / "parquet"), "SELECT positive, source, shadow_positive, shadow_source "
                                                         "FROM predictions WHERE shadow_model = 'v2'")
    assert len(logged) == 80
    for row in logged:
        assert row["shadow_positive"] == row["positive"]  # the same file
        assert row["source"] == _expected_source(row["positive"], 0.5)
        assert row["shadow_source"] == _expected_source(row["shadow_positive"], OWN)
    assert any(row["source"] != row["shadow_source"] for row in logged)


def test_explain_picks_at_the_answering_models_threshold(settings, thresholds_dir):
    """POST /reg/explain answers with the threshold /reg/ applies to the same pass."""
    app = create_app(replace(settings, models_dir=thresholds_dir, canary_share=1.0))
    assert app.extensions["regno"].watcher.check() is True
    client = ApiClient(app.test_client())
    record = next(r for r in simulate_records(200, seed=43)
                  if 0.5 <= load_folder(thresholds_dir / "v1").score(parse_record(r)).positive < OWN)
    explained = client.post("/reg/explain", json=record).get_json()["body"]
    answered = client.post(json=record).get_json()["body"]
    assert (explained["model"], explained["threshold"], explained["source"]) == ("v2", OWN, CAMERA)
    assert {key: explained[key] for key in answered} == answered


def test_a_threshold_that_is_no_probability_is_refused(tmp_path):
    """A model folder whose metadata names a threshold outside 0..1 does not load, and the syncer refuses it."""
    folder = publish(BUNDLED_MODEL, tmp_path / "source", "bad", extra={"threshold": 1.5})
    with pytest.raises(ModelLoadError, match="threshold 1.5 is not a number from 0 to 1"):
        load_folder(folder)
    write_pointer(tmp_path / "source", CURRENT, "bad")
    syncer = ModelSyncer(FolderSource(tmp_path / "source"), tmp_path / "models")
    assert syncer.sync_once() is True
    assert syncer.status["refused"][-1]["reason"] == "unloadable"
    assert not (tmp_path / "models" / "bad").exists()


def test_a_synced_model_keeps_its_threshold(settings, tmp_path):
    """The syncer copies a version's metadata whole: its threshold reaches the serving folder and the answers."""
    publish(BUNDLED_MODEL, tmp_path / "source", "own", extra={"threshold": 0.25})
    write_pointer(tmp_path / "source", CURRENT, "own")
    syncer = ModelSyncer(FolderSource(tmp_path / "source"), tmp_path / "models")
    assert syncer.sync_once() is True
    assert json.loads((tmp_path / "models" / "own" / METADATA_FILE).read_text())["threshold"] == 0.25
    app = create_app(replace(settings, models_dir=tmp_path / "models"))
    answer = ApiClient(app.test_client()).post(json=simulate_records(1, seed=44)[0]).get_json()["body"]
    assert (answer["model"], answer["threshold"]) == ("own", 0.25)
