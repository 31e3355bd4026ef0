"""Training on simulated passes: the metrics, the written model, its reproducibility, and the shipped model."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from training import train
from model.features import CATEGORICAL, KNOWN_FEATURES, TEXT
from model.records import parse_record
from model.scorer import Scorer
from training.simulate import simulate, simulate_records
from tests.conftest import TEAM_ORDER

#: A small training run: a few seconds, still enough to learn.
SMALL = ["--rows", "3000", "--iterations", "60", "--seed", "7", "--version", "test-1"]


def _train(out) -> str:
    """Run train.main with the small arguments into out; the printed output."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert train.main([*SMALL, "--out", str(out)]) == 0
    return printed.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two small models trained with the same arguments, and what the first run printed."""
    folder = tmp_path_factory.mktemp("models")
    printed = _train(folder / "first.cbm")
    _train(folder / "second.cbm")
    return folder / "first.cbm", folder / "second.cbm", printed


@pytest.fixture(scope="module")
def probe_records():
    """Validated records the trained models have not seen."""
    return [parse_record(record) for record in simulate_records(500, 12345)]


def test_roc_auc_of_perfect_reversed_and_tied_scores():
    """AUC is 1 for a perfect ranking, 0 for a reversed one and 0.5 when all scores tie."""
    labels = [0, 0, 1, 1]
    assert train.roc_auc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert train.roc_auc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert train.roc_auc(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_roc_auc_counts_pairs_with_ties_as_half():
    """AUC equals the share of positive-negative pairs ranked right, ties counting half."""
    labels = [1, 0, 1, 0, 1, 0]
    scores = [0.9, 0.9, 0.4, 0.3, 0.3, 0.1]
    pairs = [(p, n) for p, lp in zip(scores, labels) if lp for n, ln in zip(scores, labels) if not ln]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert train.roc_auc(labels, scores) == pytest.approx(expected)


def test_roc_auc_rejects_a_single_class():
    """AUC is undefined without both labels."""
    with pytest.raises(ValueError):
        train.roc_auc([1, 1], [0.2, 0.3])


def test_accuracy_counts_scores_at_the_threshold_as_positive():
    """A score equal to the threshold predicts 1."""
    assert train.accuracy([1, 0, 1, 0], [0.5, 0.49, 0.2, 0.7]) == 0.5


def test_split_is_seeded_disjoint_and_complete():
    """The split depends on the seed only, covers every row once and holds out a fifth."""
    kept, held = train.split(100, 3)
    assert (kept, held) == train.split(100, 3)
    assert train.split(100, 4) != (kept, held)
    assert sorted(kept + held) == list(range(100)) and len(held) == 20


def test_feature_order_is_the_contract_set_in_team_order():
    """FEATURE_ORDER holds the 41 contract features, in the team's order."""
    assert train.FEATURE_ORDER == TEAM_ORDER
    assert len(TEAM_ORDER) == 41 and set(TEAM_ORDER) == KNOWN_FEATURES


def test_feature_frame_has_contract_columns_and_missing_foreign_sym():
    """The frame has the contract columns in order, string categories and texts, and foreign_sym all NaN."""
    frame = train.feature_frame(simulate_records(50, 2))
    assert list(frame.columns) == TEAM_ORDER and len(frame) == 50
    assert frame["foreign_sym"].map(math.isnan).all()
    for name in CATEGORICAL + TEXT:
        assert frame[name].map(type).eq(str).all(), name


def test_pick_accuracy_follows_the_threshold():
    """The pick takes the AI plate at or above the threshold and the camera plate below it."""
    passes = simulate(200, 8)
    assert train.pick_accuracy(passes, [1.0] * 200) == sum(p.label for p in passes) / 200
    camera_right = sum(p.record["regno_recognize"] == p.plate for p in passes) / 200
    assert train.pick_accuracy(passes, [0.0] * 200) == camera_right


def test_main_writes_a_model_the_scorer_loads(trained):
    """The written .cbm loads with Scorer.load, scores the probe record, and stays small."""
    first, _, _ = trained
    scorer = Scorer.load(first)
    assert 0.0 <= scorer.probe().positive <= 1.0
    assert first.stat().st_size < 5_000_000


def test_trained_model_declares_contract_features_in_team_order(trained):
    """The model's features are the 41 contract ones, in order, typed as the contract says."""
    model = Scorer.load(trained[0]).model
    assert model.feature_names_ == TEAM_ORDER
    assert [TEAM_ORDER[i] for i in model.get_cat_feature_indices()] == list(CATEGORICAL)
    assert [TEAM_ORDER[i] for i in model.get_text_feature_indices()] == list(TEXT)


def test_trained_model_metadata_records_version_seed_rows_auc_and_command(trained):
    """Metadata holds the version, seed, rows, held-out AUC above 0.8 and the training command."""
    scorer = Scorer.load(trained[0])
    metadata = dict(scorer.model.get_metadata())
    assert scorer.version == metadata["version"] == "test-1"
    assert metadata["seed"] == "7" and metadata["rows"] == "3000"
    assert 0.8 < float(metadata["holdout_auc"]) < 1.0
    assert metadata["trained_with"] == "python -m training.train --rows 3000 --seed 7 --iterations 60 --version test-1"


def test_main_prints_one_line_with_the_held_out_auc(trained):
    """The run prints one line naming the held-out AUC stored in the model."""
    printed = trained[2]
    auc = dict(Scorer.load(trained[0]).model.get_metadata())["holdout_auc"]
    assert printed.count("\n") == 1
    assert f"held-out AUC {float(auc):.4f}" in printed and "accuracy" in printed


def test_training_twice_with_one_seed_gives_identical_predictions(trained, probe_records):
    """Same arguments, same model: predictions match exactly."""
    first, second = Scorer.load(trained[0]), Scorer.load(trained[1])
    vectors = [first.build_vector(record) for record in probe_records]
    assert first.predict_vectors(vectors) == second.predict_vectors(vectors)


def test_trained_model_ranks_unseen_passes_well(trained):
    """On fresh passes the small model's AUC is well above chance."""
    scorer = Scorer.load(trained[0])
    passes = simulate(1000, 4242)
    scores = [scorer.score(parse_record(p.record)).positive for p in passes]
    assert train.roc_auc([p.label for p in passes], scores) > 0.8


def test_parse_args_rejects_too_few_rows():
    """A run too small to split and train is refused."""
    with pytest.raises(SystemExit):
        train.parse_args(["--rows", "10"])


def test_shipped_model_loads_with_contract_features_and_version():
    """model/regno_model.cbm loads, declares the 41 contract features in order and carries its version."""
    scorer = Scorer.load(train.DEFAULT_OUT)
    metadata = dict(scorer.model.get_metadata())
    assert scorer.feature_names == TEAM_ORDER
    assert scorer.version == metadata["version"] == "regno-sim-1"
    assert metadata["trained_with"].startswith("python -m training.train ")
    assert 0.9 < float(metadata["holdout_auc"]) < 1.0
    assert 0.0 <= scorer.probe().positive <= 1.0


def test_train_can_publish_straight_to_a_source(tmp_path):
    """--publish hands the new model to regno-model: a verified folder and, with --as, the candidate pointer."""
    from model.registry import CANDIDATE, read_pointer
    from model.lifecycle.verify import verify

    source = tmp_path / "source"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert train.main([*SMALL, "--version", "tiny-pub", "--out", str(tmp_path / "m.cbm"), "--publish",
                           str(source), "--as", "candidate"]) == 0
    assert printed.getvalue().splitlines()[-1] == "tiny-pub"
    assert read_pointer(source, CANDIDATE).name == "tiny-pub"
    metadata = json.loads((source / "tiny-pub" / "metadata.json").read_text())
    assert verify(source / "tiny-pub" / "model.cbm", metadata).checksum_recorded


def test_shuffled_labels_move_only_the_chosen_share_and_keep_the_counts():
    """--shuffle-labels permutes the labels of a seeded share of passes among themselves; 0 changes nothing."""
    labels = [1] * 600 + [0] * 400
    assert train.shuffle_labels(labels, 0.0, seed=1) == labels
    noisy = train.shuffle_labels(labels, 0.5, seed=1)
    assert noisy == train.shuffle_labels(labels, 0.5, seed=1) and sum(noisy) == sum(labels)
    changed = sum(a != b for a, b in zip(labels, noisy))
    # Half the passes are shuffled; of those, about 2 * 0.6 * 0.4 = 48% change: 240 expected.
    assert 150 < changed < 330
    with pytest.raises(SystemExit):
        train.parse_args(["--shuffle-labels", "1.5"])
