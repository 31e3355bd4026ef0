"""The contract's features (model/features.py), one quirk at a time."""

from __future__ import annotations

import math

import pytest

from model.features import (
    KNOWN_FEATURES, SYMBOLS, plate_template, record_features, spaced, symbol_scores, unbuildable, vector_builder,
)
from model.records import parse_record
from tests.conftest import TEAM_ORDER



@pytest.mark.parametrize(
    "plate, category",
    [
        ("А939НО196", "private car"),
        ("А939НО19", "private car"),
        ("АВ12345", " lk_taxi_r_pricep"),
        ("АВ123456", " lk_taxi_r_pricep"),  # row 2 wins over row 3 for six digits
        ("АВ1234567", "lk_pricep_r_transit"),
        ("1234АВ77", "lk_moto_tract"),
        ("А1234ВС", "some"),
        ("АВ123С77", "lk_transit"),
        ("TАВ12345", "lk_export"),
        ("ТАВ123456", "lk_export"),
        ("А123456", "lk_mvd_avto"),
        ("1234А77", "lk_mvd_moto"),
        ("123А77", "lk_mvd_pricep"),
        ("123CD456", "lk_diplomat"),
        ("123СD456", "lk_diplomat"),  # Cyrillic С, Latin D
        ("123D456789", "lk_diplomat"),
        ("123T456", "lk_diplomat"),
        ("123Т456", "lk_mvd_pricep"),  # Cyrillic Т is also an L, and row 10 comes first
        ("123Т4567", "lk_diplomat"),
        ("А939НО1961", "unknown"),  # too many digits
        ("Ё939НО196", "unknown"),  # Ё is outside А..Я
        ("а939НО196", "unknown"),  # lower case never matches
        ("A939HO196", "unknown"),  # Latin look-alikes are not L
        ("А812НН79_", "unknown"),
        ("١٢٣٤АВ77", "lk_moto_tract"),  # 9 is Python's \d, so Arabic-Indic digits count
    ],
)
def test_plate_template(plate, category):
    """Whole-string match, first row wins, else unknown."""
    assert plate_template(plate) == category


def test_lk_army_is_never_chosen():
    """lk_army shares row 4's pattern, so it can never be the answer."""
    assert plate_template("1234АВ77") == "lk_moto_tract"


def test_spaced_joins_characters():
    """Text features are the characters joined by single spaces."""
    assert spaced("А939") == "А 9 3 9"


def test_symbol_scores_take_lowest_and_default_to_one():
    """Repeated symbols get their lowest score; absent ones get 1; others are ignored."""
    scores = symbol_scores("А99Я", (0.5, 0.9, 0.7, 0.1))
    assert scores["А"] == 0.5
    assert scores["9"] == 0.7
    assert scores["8"] == 1.0
    assert "Я" not in scores
    assert set(scores) == set(SYMBOLS)


def test_symbol_scores_stop_at_shorter():
    """Characters past the end of the score list get no score."""
    assert symbol_scores("А12", (0.3,))["1"] == 1.0
    assert symbol_scores("А", (0.3, 0.1, 0.2))["А"] == 0.3


def test_empty_char_list_gives_first_char_zero(record):
    """'[]' is [0.0]: max and min are 0 and the first AI character scores 0."""
    features = record_features(parse_record(dict(record, afts_regno_ai_char_scores="[]")))
    assert features["max_sym_score"] == features["min_sym_score"] == 0.0
    assert features["А"] == 0.0
    assert features["8"] == 1.0


def test_record_features(record):
    """Lengths, time parts, categories and texts follow the contract."""
    features = record_features(parse_record(dict(record, time_check="2021-08-01T19:11:48+05:00")))
    assert (features["ai_len"], features["cam_len"]) == (9, 9)
    assert (features["weekday"], features["month"], features["hour"]) == ("Sunday", "August", 19)
    assert features["regno_template"] == "unknown"
    assert features["regno_template_ai"] == "private car"
    assert features["regno_recognize_text"] == "А 8 1 2 Н Н 7 9 _"
    assert features["max_len_score"] == 0.99
    assert math.isnan(features["foreign_sym"])
    assert set(features) == KNOWN_FEATURES


def test_vector_follows_declared_order(record):
    """The vector is built by name, in whatever order the model declares."""
    parsed = parse_record(record)
    forward = vector_builder(TEAM_ORDER)(parsed)
    backward = vector_builder(TEAM_ORDER[::-1])(parsed)
    assert len(forward) == 41
    assert forward[TEAM_ORDER.index("camera_class")] == "Астра-Трафик"
    assert [repr(value) for value in forward] == [repr(value) for value in backward[::-1]]


def test_unbuildable_features_are_named():
    """A model asking for features the contract lacks gets them named."""
    assert unbuildable(TEAM_ORDER) == []
    assert unbuildable(TEAM_ORDER + ["Я", "speed"]) == ["Я", "speed"]
    with pytest.raises(ValueError, match="speed"):
        vector_builder(["hour", "speed"])
