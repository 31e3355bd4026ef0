"""The pass simulator: reproducible, valid wire records, honest labels, realistic errors and confidences."""

from __future__ import annotations

import random
from statistics import mean

import pytest

from model.features import plate_template
from model.records import FIELDS, parse_record, parse_score_list
from training.simulate import (
    LATIN_LOOKALIKES,
    MAX_LENGTH,
    PLATE_FORMATS,
    REGION_CONFUSIONS,
    simulate,
    simulate_passes,
    simulate_records,
)

SEED = 11
LATIN = set(LATIN_LOOKALIKES.values())


@pytest.fixture(scope="module")
def passes():
    """A few thousand passes, shared by the tests that only read them."""
    return simulate(4000, SEED)


def _reads(passes):
    """Every (true plate, read) pair, camera and AI alike."""
    return [(p.plate, p.record[field]) for p in passes for field in ("regno_recognize", "afts_regno_ai")]


def test_same_seed_gives_same_passes():
    """Two runs with one seed give equal passes."""
    assert simulate(300, 5) == simulate(300, 5)


def test_different_seeds_give_different_passes():
    """Different seeds give different records."""
    assert simulate_records(300, 5) != simulate_records(300, 6)


def test_simulation_ignores_and_keeps_global_random_state():
    """The simulator neither reads nor moves the random module's global generator."""
    random.seed(1)
    first = simulate_records(50, 3)
    state = random.getstate()
    random.seed(2)
    second = simulate_records(50, 3)
    random.seed(2)
    assert first == second
    assert random.getstate() != state  # sanity: seeding did change the global state...
    random.setstate(state)
    simulate_records(50, 3)
    assert random.getstate() == state  # ...but simulating does not


def test_passes_records_and_detailed_passes_agree():
    """simulate_passes and simulate_records return the records and labels of simulate."""
    detailed = simulate(200, 9)
    assert simulate_passes(200, 9) == [(p.record, p.label) for p in detailed]
    assert simulate_records(200, 9) == [p.record for p in detailed]


def test_records_have_the_ten_fields_in_wire_types(passes):
    """Each record holds exactly the contract's fields, typed as production sends them."""
    for p in passes:
        record = p.record
        assert set(record) == set(FIELDS)
        assert isinstance(record["regno_recognize"], str) and isinstance(record["afts_regno_ai"], str)
        assert isinstance(record["recognition_accuracy"], float) and 0 <= record["recognition_accuracy"] <= 100
        assert isinstance(record["afts_regno_ai_score"], float) and 0 <= record["afts_regno_ai_score"] <= 1
        assert record["afts_regno_ai_char_scores"].startswith("[")
        assert record["afts_regno_ai_length_scores"].startswith("[")
        assert record["camera_type"] in ("Стационарная", "Передвижная")
        assert type(record["direction"]) is int and record["direction"] in (0, 1)


def test_every_record_passes_parse_record(passes):
    """Every simulated record validates."""
    for p in passes:
        parse_record(p.record)


def test_label_is_whether_the_ai_read_is_the_true_plate(passes):
    """label == 1 exactly when afts_regno_ai equals the true plate, and both labels occur."""
    assert all(p.label == int(p.record["afts_regno_ai"] == p.plate) for p in passes)
    assert 0.3 < mean(p.label for p in passes) < 0.85


def test_readers_mostly_disagree(passes):
    """Most passes are disagreements, as the picker sees them; a few agreements remain."""
    agreeing = mean(p.record["regno_recognize"] == p.record["afts_regno_ai"] for p in passes)
    assert 0.01 < agreeing < 0.3


def test_plate_formats_fall_in_contract_categories():
    """Every plate format builds plates the contract categorises (none 'unknown')."""
    rng = random.Random(4)
    for name, _, build in PLATE_FORMATS:
        for _ in range(50):
            body, region = build(rng)
            assert plate_template(body + region) != "unknown", name


def test_true_plates_are_mostly_private_cars_with_a_mix_of_others(passes):
    """Private cars dominate; several other categories occur."""
    categories = [plate_template(p.plate) for p in passes]
    assert 0.75 < categories.count("private car") / len(categories) < 0.95
    assert len(set(categories)) >= 6
    assert "unknown" not in categories


def test_unread_characters_occur(passes):
    """Some reads carry '_' for an unread character."""
    assert sum("_" in read for _, read in _reads(passes)) > 20


def test_latin_lookalikes_occur(passes):
    """Some reads use a Latin look-alike of a Cyrillic plate letter."""
    latin = [read for plate, read in _reads(passes) if LATIN & set(read) and not LATIN & set(plate)]
    assert len(latin) > 10


def test_region_confusions_occur(passes):
    """Some reads keep the plate but swap its region for a confusable one (777 for 797 and the like)."""
    swapped = 0
    for plate, read in _reads(passes):
        region = plate[6:] if plate_template(plate) == "private car" else ""
        if region in REGION_CONFUSIONS and read[:6] == plate[:6] and read[6:] in REGION_CONFUSIONS[region]:
            swapped += 1
    assert swapped > 50


def test_digit_letter_confusions_occur(passes):
    """Some reads put 0 for О, О for 0, 8 for В or В for 8 at one position."""
    pairs = {("0", "О"), ("О", "0"), ("8", "В"), ("В", "8")}
    confused = sum(
        len(read) == len(plate) and any((a, b) in pairs for a, b in zip(plate, read))
        for plate, read in _reads(passes)
    )
    assert confused > 10


def test_dropped_and_extra_characters_occur(passes):
    """Some reads are shorter and some longer than the plate."""
    reads = _reads(passes)
    assert sum(len(read) < len(plate) for plate, read in reads) > 20
    assert sum(len(read) > len(plate) for plate, read in reads) > 20


def test_ai_score_is_higher_when_the_ai_is_right(passes):
    """The mean AI score of right reads is clearly above that of wrong ones."""
    right = mean(p.record["afts_regno_ai_score"] for p in passes if p.label)
    wrong = mean(p.record["afts_regno_ai_score"] for p in passes if not p.label)
    assert right > wrong + 0.2


def test_ai_score_is_not_a_perfect_separator(passes):
    """Some wrong reads outscore some right ones, so the problem is not trivial."""
    best_wrong = max(p.record["afts_regno_ai_score"] for p in passes if not p.label)
    worst_right = min(p.record["afts_regno_ai_score"] for p in passes if p.label)
    assert best_wrong > worst_right


def test_char_scores_are_lower_on_wrong_characters(passes):
    """Per-character scores: one per AI character, lower on characters that differ from the plate."""
    right, wrong = [], []
    for p in passes:
        ai, text = p.record["afts_regno_ai"], p.record["afts_regno_ai_char_scores"]
        if text == "[]":
            continue
        scores = parse_score_list(text)
        assert len(scores) == len(ai)
        if len(ai) == len(p.plate):
            for char, true_char, score in zip(ai, p.plate, scores):
                (right if char == true_char else wrong).append(score)
    assert mean(right) > mean(wrong) + 0.2


def test_empty_char_score_lists_are_rare(passes):
    """The contract's '[]' quirk appears, but rarely."""
    empty = sum(p.record["afts_regno_ai_char_scores"] == "[]" for p in passes)
    assert empty < len(passes) * 0.01


def test_length_scores_peak_at_the_read_length_and_hedge_when_it_is_off(passes):
    """Eleven length scores, peaked at the AI read's length; the peak is lower when that length is wrong."""
    same, off = [], []
    for p in passes:
        lengths = parse_score_list(p.record["afts_regno_ai_length_scores"])
        ai_len = len(p.record["afts_regno_ai"])
        assert len(lengths) == MAX_LENGTH + 1
        assert lengths.index(max(lengths)) == ai_len
        (same if ai_len == len(p.plate) else off).append(max(lengths))
    assert mean(same) > mean(off) + 0.1


def test_camera_accuracy_is_lower_when_the_camera_is_wrong(passes):
    """recognition_accuracy is on average lower for wrong camera reads."""
    right = [p.record["recognition_accuracy"] for p in passes if p.record["regno_recognize"] == p.plate]
    wrong = [p.record["recognition_accuracy"] for p in passes if p.record["regno_recognize"] != p.plate]
    assert mean(right) > mean(wrong)


def test_camera_classes_follow_the_sample(passes):
    """All eight camera models occur; Астра-Трафик is the commonest and Стрелка is mobile."""
    classes = [p.record["camera_class"] for p in passes]
    assert len(set(classes)) == 8
    assert max(set(classes), key=classes.count) == "Астра-Трафик"
    assert all(p.record["camera_type"] == "Передвижная" for p in passes if p.record["camera_class"] == "Стрелка")


def test_timestamps_span_a_year_and_favour_daytime(passes):
    """Passes fall in every month, and far more by day than at night."""
    stamps = [parse_record(p.record).time_check for p in passes]
    assert {stamp.month for stamp in stamps} == set(range(1, 13))
    day = sum(8 <= stamp.hour < 20 for stamp in stamps)
    night = sum(stamp.hour < 6 for stamp in stamps)
    assert day > 5 * night > 0
