"""Parity with the team's pick_regno: their sample, their probabilities, and records nobody has seen."""

from __future__ import annotations

import random

import pytest

from model.records import parse_record
from training.reference import pick_regno
from model.scorer import Scorer
from training.simulate import simulate_records

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def team_scorer(team_model) -> Scorer:
    """The team's model behind this service's scorer."""
    return Scorer.load(team_model)


def test_sample_rows_give_expected_probabilities(team_scorer, team_sample, team_expected):
    """Every sample row, as the CSV gives it (all strings), scores as the team's code did."""
    assert len(team_sample) == len(team_expected) == 100
    for index, (row, (negative, positive)) in enumerate(zip(team_sample, team_expected)):
        score = team_scorer.score(parse_record(row))
        assert score.positive == pytest.approx(positive, abs=TOLERANCE), f"row {index}"
        assert score.negative == pytest.approx(negative, abs=TOLERANCE), f"row {index}"


def test_reference_reproduces_expected(team_model, team_sample, team_expected):
    """The pandas reference (the oracle below) gives the team's numbers on their sample."""
    for index in range(0, 100, 10):
        negative, positive = pick_regno(team_sample[index], str(team_model))
        assert (negative, positive) == pytest.approx(team_expected[index], abs=TOLERANCE), f"row {index}"


def _edge_records(rng: random.Random, base: dict) -> list[dict]:
    """Contract-following records that exercise the quirks: offsets, '[]', rare plate formats."""
    variants = [
        {"afts_regno_ai_char_scores": "[]"},
        {"time_check": "2022-02-28T23:59:59.999+03:00"},
        {"time_check": "2021-12-31 00:00:01Z"},
        {"afts_regno_ai": "123CD456", "afts_regno_ai_char_scores": "[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]"},
        {"afts_regno_ai": "ТАВ12345", "regno_recognize": "TAB12345"},
        {"afts_regno_ai": "1234АВ77", "regno_recognize": "1234АВ7"},
        {"afts_regno_ai": "А12", "afts_regno_ai_char_scores": "[0.1, 0.2, 0.3, 0.4, 0.5]"},
        {"regno_recognize": "Ё939НО196", "camera_type": "Передвижная", "camera_class": "Новая камера"},
        {"direction": "1", "recognition_accuracy": "0", "afts_regno_ai_score": "1"},
    ]
    return [dict(base, **variant) for variant in variants]


def test_unseen_records_match_team_code(team_model, team_scorer, team_sample):
    """Simulated and edge-case records score as the team's own approach scores them."""
    rng = random.Random(7)
    records = simulate_records(150, seed=12345) + _edge_records(rng, team_sample[0])
    for index, record in enumerate(records):
        expected = pick_regno(record, str(team_model))
        score = team_scorer.score(parse_record(record))
        assert (score.negative, score.positive) == pytest.approx(tuple(expected), abs=TOLERANCE), f"record {index}"
