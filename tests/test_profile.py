"""The training reference (model/profile.py) and the shared evaluation functions (model/evaluation.py)."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime

import pytest
from catboost import CatBoostClassifier

from model import BUNDLED_MODEL
from model import profile as prof
from model.evaluation import accuracy, calibration, log_loss, roc_auc
from model.records import parse_record
from training.simulate import simulate_records


@pytest.fixture(scope="module")
def bundled_profile() -> dict:
    """The profile stored in the bundled model."""
    return prof.read_profile(CatBoostClassifier().load_model(str(BUNDLED_MODEL)))


def _uniform(n: int, seed: int, low: float = 0.0, high: float = 1.0) -> list[float]:
    """n seeded uniform numbers in [low, high)."""
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def test_roc_auc_and_accuracy_on_a_tiny_known_case():
    """Three of four positive-negative pairs ranked right: AUC 0.75; two of four right at 0.5."""
    labels, scores = [0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8]
    assert roc_auc(labels, scores) == 0.75
    assert accuracy(labels, scores) == 0.5


def test_log_loss_of_known_values_and_clipping():
    """Mean of -ln(p) for positives and -ln(1 - p) for negatives; a certain miss stays finite."""
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss([1, 1], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))
    with pytest.raises(ValueError):
        log_loss([1, 0], [0.5])


def test_calibration_bins_add_up_and_describe_their_scores():
    """Non-empty equal-width bins only; counts add up; 1.0 falls in the last bin; means and shares per bin."""
    labels = [0, 0, 1, 1, 1, 0, 1]
    scores = [0.05, 0.08, 0.55, 0.58, 0.95, 0.97, 1.0]
    rows = calibration(labels, scores)
    assert [(row["lower"], row["upper"]) for row in rows] == [(0.0, pytest.approx(0.1)),
                                                              (0.5, pytest.approx(0.6)), (0.9, 1.0)]
    assert [row["count"] for row in rows] == [2, 2, 3] and sum(row["count"] for row in rows) == len(scores)
    assert rows[0]["mean_score"] == pytest.approx(0.065) and rows[0]["positive_share"] == 0.0
    assert rows[2]["mean_score"] == pytest.approx(2.92 / 3) and rows[2]["positive_share"] == pytest.approx(2 / 3)
    many = _uniform(1000, 1)
    assert sum(row["count"] for row in calibration([0] * 1000, many, bins=7)) == 1000


def test_inputs_of_reads_log_columns():
    """Raw log columns become the profiled inputs; an empty char list is 0.0; None (failed rows) is skipped."""
    columns = {
        "recognition_accuracy": [93.0, 6.4, None],
        "afts_regno_ai_score": [0.81, 0.87, None],
        "afts_regno_ai_char_scores": [[0.99, 0.81, 0.97], [], None],
        "time_check": ["2021-08-01 19:11:48", "2021-08-02T07:00:00+03:00", None],
        "camera_type": ["Стационарная", "Передвижная", None],
        "camera_class": ["Астра-Трафик", "Стрелка", None],
        "direction": [1, 0, None],
    }
    assert prof.inputs_of(columns) == {
        "recognition_accuracy": [93.0, 6.4],
        "afts_regno_ai_score": [0.81, 0.87],
        "min_char_score": [0.81, 0.0],
        "hour": [19, 7],
        "camera_type": ["Стационарная", "Передвижная"],
        "camera_class": ["Астра-Трафик", "Стрелка"],
        "direction": ["1", "0"],
    }


def test_inputs_of_records_matches_inputs_of_the_same_passes(record):
    """Validated records and their raw fields give the same inputs; '[]' reads as (0.0,) as the contract says."""
    empty = {**record, "afts_regno_ai_char_scores": "[]", "time_check": "2021-08-01T05:00:00", "direction": "0"}
    inputs = prof.inputs_of_records([parse_record(record), parse_record(empty)])
    assert inputs["min_char_score"] == [0.81, 0.0] and inputs["hour"] == [19, 5] and inputs["direction"] == ["1", "0"]
    assert prof.inputs_of({field: [record[field], empty[field]] for field in record}) == inputs
    assert prof.inputs_of({"time_check": [datetime(2021, 8, 1, 23, 59)]}) == {"hour": [23]}


def test_profile_of_small_columns_has_known_edges_and_shares():
    """Deciles of 0..99 cut at 9.9, 19.8, ...; ties collapse edges; top values by count with the rest pooled."""
    values = list(range(100))
    inputs = {name: values for name in prof.NUMERIC}
    inputs["hour"] = [3] * 45 + [20] * 55  # every decile edge is 3 or 20: two edges, three bins
    inputs["camera_type"] = ["a"] * 60 + ["b"] * 40
    inputs["camera_class"] = [f"c{i:02d}" for i in range(35)] * 2 + ["c00"] * 30  # 35 values, 5 pooled
    inputs["direction"] = ["0"] * 25 + ["1"] * 75
    profile = prof.profile_of(inputs)
    assert profile["rows"] == 100 and set(profile["features"]) == set(prof.NUMERIC + prof.CATEGORICAL)
    accuracy_ref = profile["features"]["recognition_accuracy"]
    assert accuracy_ref["edges"] == pytest.approx([9.9 * i for i in range(1, 10)])
    assert accuracy_ref["shares"] == [0.1] * 10
    assert profile["features"]["hour"] == {"kind": "numeric", "edges": [3.0, 20.0], "shares": [0.0, 0.45, 0.55]}
    assert profile["features"]["camera_type"]["shares"] == {"a": 0.6, "b": 0.4}
    classes = profile["features"]["camera_class"]["shares"]
    assert len(classes) == prof.TOP_VALUES + 1 and list(classes)[0] == "c00" and classes["c00"] == 0.32
    assert classes[prof.OTHER] == pytest.approx(0.1)
    assert len(json.dumps(profile)) < 4000


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    """Fresh draws of the training distribution are stable; a shifted one is a major shift."""
    reference = prof.profile_of({name: _uniform(5000, 1) for name in prof.NUMERIC}
                                | {name: ["x"] for name in prof.CATEGORICAL})["features"]["hour"]
    same = prof.psi(reference, _uniform(5000, 2))
    shifted = prof.psi(reference, _uniform(5000, 3, 0.5, 1.5))
    assert same < 0.02 and prof.verdict(same) == "stable"
    assert shifted > 1.0 and prof.verdict(shifted) == "major shift"
    assert math.isfinite(prof.psi(reference, [10.0] * 100))  # every value in one outer bin: empty shares take EPSILON
    assert prof.verdict(0.1) == "moderate shift" and prof.verdict(0.2499) == "moderate shift"


def test_categorical_shift_finds_a_new_value_and_a_changed_share():
    """A value training never had counts under (new); TVD is half the L1 distance of the shares."""
    reference = {"kind": "categorical", "shares": {"a": 0.5, "b": 0.5}}
    shift = prof.categorical_shift(reference, ["a"] * 70 + ["b"] * 20 + ["z"] * 10)
    assert shift["shares"]["a"] == {"reference": 0.5, "observed": 0.7}
    assert shift["shares"][prof.NEW] == {"reference": 0.0, "observed": 0.1}
    assert shift["tvd"] == pytest.approx(0.3) and shift["psi"] > 0.25
    same = prof.categorical_shift(reference, ["a", "b"] * 50)
    assert same["tvd"] == 0.0 and same["psi"] == 0.0
    pooled = {"kind": "categorical", "shares": {"a": 0.9, prof.OTHER: 0.1}}
    assert set(prof.categorical_shift(pooled, ["a", "q"])["shares"]) == {"a", prof.OTHER}  # q may be a pooled one


def test_drift_of_fresh_simulated_passes_is_stable_and_of_a_skewed_sample_is_not(bundled_profile):
    """Passes from the training simulator match the bundled reference; one camera at night does not."""
    records = [parse_record(raw) for raw in simulate_records(4000, 777)]
    rows = prof.drift(bundled_profile, prof.inputs_of_records(records))
    assert [row["feature"] for row in rows] == list(prof.NUMERIC + prof.CATEGORICAL)
    assert all(row["verdict"] == "stable" for row in rows), rows
    assert all((row["tvd"] is None) == (row["kind"] == "numeric") for row in rows)
    skewed = prof.inputs_of_records([r._replace(time_check=r.time_check.replace(hour=3)) for r in records
                                     if r.camera_class == "Стрелка"])
    verdicts = {row["feature"]: row["verdict"] for row in prof.drift(bundled_profile, skewed)}
    assert verdicts["hour"] == verdicts["camera_class"] == verdicts["camera_type"] == "major shift"
    assert prof.drift(bundled_profile, {})[0] == {"feature": "recognition_accuracy", "kind": "numeric", "values": 0,
                                                  "psi": None, "tvd": None, "verdict": "no data"}


def test_bundled_model_carries_a_small_profile_of_every_input(bundled_profile):
    """The bundled model's metadata holds the training split's profile, compact, of every profiled input."""
    text = dict(CatBoostClassifier().load_model(str(BUNDLED_MODEL)).get_metadata())[prof.METADATA_KEY]
    assert json.loads(text) == bundled_profile and len(text.encode()) < 4000
    assert set(bundled_profile["features"]) == set(prof.NUMERIC + prof.CATEGORICAL)
    assert bundled_profile["rows"] > 0


def test_profile_survives_save_and_load(tmp_path):
    """Metadata values are strings CatBoost keeps through save_model and load_model, Cyrillic included."""
    model = CatBoostClassifier().load_model(str(BUNDLED_MODEL))
    profile = {"rows": 1, "features": {"camera_class": {"kind": "categorical", "shares": {"Стрелка": 1.0}}}}
    prof.store_profile(model, profile)
    model.save_model(str(tmp_path / "m.cbm"))
    assert prof.read_profile(CatBoostClassifier().load_model(str(tmp_path / "m.cbm"))) == profile


def test_the_teams_model_has_no_profile(team_model):
    """A model trained elsewhere reads as None (the fixture skips, saying why, when the team's files are absent)."""
    assert prof.read_profile(CatBoostClassifier().load_model(str(team_model))) is None
