"""Loading models and scoring with them (model/scorer.py)."""

from __future__ import annotations

import os

import pytest
from catboost import CatBoostClassifier, Pool

from model import BUNDLED_MODEL
from model.records import parse_record
from model.scorer import ModelLoadError, Scorer, file_checksum


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    """The bundled model, loaded once."""
    return Scorer.load(BUNDLED_MODEL)


def _tiny_model(path, names, cat=()):
    """Train a throwaway CatBoost model on the given feature names and save it to path."""
    rows = [[float(i % 3 == j) if name not in cat else f"c{i % 2}" for j, name in enumerate(names)] for i in range(40)]
    model = CatBoostClassifier(iterations=3, depth=2, verbose=False, allow_writing_files=False, thread_count=1)
    labels = [i % 2 for i in range(40)]
    model.fit(Pool(rows, labels, cat_features=[names.index(name) for name in cat], feature_names=list(names)))
    model.save_model(str(path))
    return path


def test_missing_model_is_named(tmp_path):
    """A path with no file gives one clear error."""
    with pytest.raises(ModelLoadError, match="model file not found: .*nope.cbm"):
        Scorer.load(tmp_path / "nope.cbm")


def test_corrupt_model_is_refused(tmp_path):
    """Bytes that are not a CatBoost model give one clear line."""
    path = tmp_path / "broken.cbm"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ModelLoadError, match="not a CatBoost model") as caught:
        Scorer.load(path)
    assert "\n" not in str(caught.value)


def test_model_with_unknown_features_is_refused(tmp_path):
    """A model declaring features the contract cannot build is refused, naming them."""
    path = _tiny_model(tmp_path / "odd.cbm", ["hour", "speed", "Я"])
    with pytest.raises(ModelLoadError, match="cannot build: speed, Я"):
        Scorer.load(path)


def test_model_typing_a_feature_differently_is_refused(tmp_path):
    """A contract number declared categorical would be fed the wrong type, so it is refused."""
    path = _tiny_model(tmp_path / "typed.cbm", ["hour", "direction"], cat=("direction",))
    with pytest.raises(ModelLoadError, match="types its features differently"):
        Scorer.load(path)


def test_version_comes_from_metadata(scorer):
    """The bundled model carries its version in its metadata."""
    assert scorer.version == CatBoostClassifier().load_model(str(BUNDLED_MODEL)).get_metadata()["version"]
    assert scorer.checksum == file_checksum(BUNDLED_MODEL)


def test_version_falls_back_to_checksum(tmp_path):
    """A model without a version is named by its checksum."""
    model = CatBoostClassifier().load_model(str(BUNDLED_MODEL))
    del model.get_metadata()["version"]
    model.save_model(str(tmp_path / "bare.cbm"))
    loaded = Scorer.load(tmp_path / "bare.cbm")
    assert loaded.version == f"sha256-{file_checksum(tmp_path / 'bare.cbm')[:12]}"


def test_score_is_a_probability_pair(scorer, record):
    """negative + positive = 1, each in [0, 1]."""
    score = scorer.score(parse_record(record))
    assert 0.0 <= score.positive <= 1.0
    assert score.negative + score.positive == pytest.approx(1.0, abs=1e-12)


def test_batch_equals_single(scorer, record):
    """Scoring vectors together gives what scoring them one by one gives."""
    records = [parse_record(dict(record, recognition_accuracy=value)) for value in (1.0, 50.0, 99.0)]
    together = scorer.predict_vectors([scorer.build_vector(r) for r in records])
    assert together == [scorer.score(r) for r in records]


def test_ready_probes_once_per_process(tmp_path):
    """ready() runs the probe in a process that has not run it, and not again after."""
    loaded = Scorer.load(BUNDLED_MODEL)
    assert loaded._probed_pid is None
    assert loaded.ready()
    assert loaded._probed_pid == os.getpid()


def _both_routes(loaded: Scorer, records: list[dict]) -> tuple:
    """Probabilities of records through the public and the direct CatBoost route, one row and all rows."""
    vectors = [loaded.build_vector(parse_record(record)) for record in records]
    public = [loaded._predict_public([vector]).tolist() for vector in vectors]
    direct = [loaded._predict_direct([vector]).tolist() for vector in vectors]
    return public, direct, loaded._predict_public(vectors).tolist(), loaded._predict_direct(vectors).tolist()


def test_direct_route_matches_public_on_the_bundled_model(scorer, simulated_records):
    """The direct route gives CatBoost's public answer exactly, row by row and as a batch."""
    public, direct, public_batch, direct_batch = _both_routes(scorer, simulated_records)
    assert direct == public
    assert direct_batch == public_batch


def test_direct_route_matches_public_on_the_team_model(team_model, team_sample):
    """The same on the team's model and its 100 sample rows."""
    public, direct, public_batch, direct_batch = _both_routes(Scorer.load(team_model), team_sample)
    assert direct == public
    assert direct_batch == public_batch


def test_probe_turns_the_direct_route_on():
    """A fresh scorer predicts through the public route until its probe has checked the direct one."""
    loaded = Scorer.load(BUNDLED_MODEL)
    assert loaded._direct is False
    loaded.probe()
    assert loaded._direct is True


def test_direct_route_failure_falls_back_to_public(scorer, record, monkeypatch):
    """If the direct route raises (a CatBoost upgrade, say), the public route still answers."""
    loaded = Scorer.load(BUNDLED_MODEL)
    loaded.probe()
    expected = scorer._predict_public([scorer.build_vector(parse_record(record))])[0]

    def broken(vectors):
        raise TypeError("changed signature")

    monkeypatch.setattr(loaded, "_predict_direct", broken)
    score = loaded.score(parse_record(record))
    assert (score.negative, score.positive) == (float(expected[0]), float(expected[1]))


def test_probe_keeps_the_public_route_when_the_direct_one_fails(monkeypatch):
    """A probe whose direct call raises leaves the scorer on the public route."""
    loaded = Scorer.load(BUNDLED_MODEL)

    def broken(vectors):
        raise TypeError("changed signature")

    monkeypatch.setattr(loaded, "_predict_direct", broken)
    loaded.probe()
    assert loaded._direct is False
