"""Validation and coercion of records (model/records.py)."""

from __future__ import annotations

import math

import pytest

from model.records import FIELDS, MAX_PLATE_CHARS, RecordError, json_kind, parse_record, parse_score_list


def test_good_record_is_coerced(record):
    """A production record comes out typed: floats, tuples of floats, a datetime, an int."""
    parsed = parse_record(record)
    assert parsed.recognition_accuracy == 93.0
    assert parsed.afts_regno_ai_char_scores[-1] == 0.81
    assert len(parsed.afts_regno_ai_length_scores) == 11
    assert (parsed.time_check.hour, parsed.time_check.minute) == (19, 11)
    assert parsed.direction == 1 and isinstance(parsed.direction, int)


def test_numeric_strings_equal_numbers(record):
    """Numbers sent as numeric strings give the same record as numbers."""
    as_strings = dict(record, recognition_accuracy="93", afts_regno_ai_score="0.81", direction="1")
    assert parse_record(as_strings) == parse_record(record)


def test_integral_float_direction_is_accepted(record):
    """direction 1.0 is the flag 1."""
    assert parse_record(dict(record, direction=1.0)).direction == 1


def test_unknown_keys_and_order_do_not_matter(record):
    """Extra keys are ignored and field order means nothing."""
    shuffled = dict(reversed(list(record.items())), extra="ignored", id=42)
    assert parse_record(shuffled) == parse_record(record)


def test_empty_bracket_list_is_one_zero():
    """The contract's quirk: '[]' stands for [0.0]."""
    assert parse_score_list("[]") == (0.0,)
    assert parse_score_list("[0.5, 0.25]") == (0.5, 0.25)


@pytest.mark.parametrize(
    "stamp, hour",
    [
        ("2021-08-01 09:02:59", 9),
        ("2021-08-01T09:02:59", 9),
        ("2021-08-01 09:02:59.123456", 9),
        ("2021-08-01 23:02:59+03:00", 23),
        ("2021-08-01T23:02:59Z", 23),
        ("2021-08-01 23:02:59.5-0500", 23),
    ],
)
def test_timestamp_forms_keep_wall_clock_hour(record, stamp, hour):
    """T separator, fractions and offsets parse, and the offset does not shift the hour."""
    assert parse_record(dict(record, time_check=stamp)).time_check.hour == hour


BAD = [
    ("regno_recognize", None, "must be a string"),
    ("regno_recognize", 123, "must be a string"),
    ("regno_recognize", "", "must not be empty"),
    ("afts_regno_ai", "А" * (MAX_PLATE_CHARS + 1), "at most"),
    ("afts_regno_ai", "А 123", "spaces"),
    ("afts_regno_ai", "А12\n3", "control"),
    ("recognition_accuracy", "abc", "must be a number"),
    ("recognition_accuracy", [1], "must be a number"),
    ("recognition_accuracy", True, "must be a number"),
    ("recognition_accuracy", "NaN", "finite"),
    ("recognition_accuracy", "inf", "finite"),
    ("recognition_accuracy", 150, "between 0 and 100"),
    ("afts_regno_ai_score", -0.1, "between 0 and 1"),
    ("afts_regno_ai_char_scores", "[0.9, x]", "list of numbers"),
    ("afts_regno_ai_char_scores", "0.9, 0.8", "bracketed"),
    ("afts_regno_ai_char_scores", "[0.9, nan]", "finite"),
    ("afts_regno_ai_char_scores", [0.9, 0.8], "must be a string"),
    ("afts_regno_ai_length_scores", "[ ]", "list of numbers"),
    ("afts_regno_ai_length_scores", "[0.1,]", "list of numbers"),
    ("camera_type", None, "must be a string"),
    ("camera_class", "x" * 500, "at most"),
    ("time_check", "yesterday", "timestamp"),
    ("time_check", "2021-02-30 10:00:00", "real date"),
    ("time_check", "2021-08-01", "timestamp"),
    ("time_check", 1627808579, "must be a string"),
    ("direction", 2, "0 or 1"),
    ("direction", 0.5, "0 or 1"),
    ("direction", "left", "must be a number"),
]


@pytest.mark.parametrize("field, value, words", BAD, ids=[f"{f}={v!r:.20}" for f, v, _ in BAD])
def test_bad_field_is_named(record, field, value, words):
    """Each kind of bad value raises RecordError naming the field and the problem."""
    with pytest.raises(RecordError) as caught:
        parse_record(dict(record, **{field: value}))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert words in str(caught.value)


@pytest.mark.parametrize("field", FIELDS)
def test_missing_field_is_named(record, field):
    """A missing field is named in the error."""
    del record[field]
    with pytest.raises(RecordError, match=f"^{field}: is missing"):
        parse_record(record)


@pytest.mark.parametrize("value, kind", [([1], "an array"), ("x", "a string"), (3, "a number"), (None, "null")])
def test_non_object_record_is_refused(value, kind):
    """A record that is not an object says what it is."""
    assert json_kind(value) == kind
    with pytest.raises(RecordError, match=kind):
        parse_record(value)


def test_error_message_never_echoes_a_huge_value(record):
    """A bad value is cut short in the message."""
    with pytest.raises(RecordError) as caught:
        parse_record(dict(record, afts_regno_ai_char_scores="[" + "x" * 3000 + "]"))
    assert len(str(caught.value)) < 200


def test_finite_check_covers_every_score(record):
    """No non-finite number survives validation anywhere in a record."""
    parsed = parse_record(record)
    numbers = [parsed.recognition_accuracy, parsed.afts_regno_ai_score, *parsed.afts_regno_ai_char_scores,
               *parsed.afts_regno_ai_length_scores]
    assert all(math.isfinite(number) for number in numbers)


#: Characters that make a plate look like another one: bidi overrides and isolates, marks, zero-width and
#: other format characters, C1 controls; one beyond the Basic Multilingual Plane (a tag character).
DECEIVING = ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\u200b", "\u2060", "\ufeff",
             "\u00ad", "\x85", "\x9b", "\U000e0041"]


@pytest.mark.parametrize("field", ["regno_recognize", "afts_regno_ai"])
@pytest.mark.parametrize("char", DECEIVING, ids=[f"U+{ord(char):04X}" for char in DECEIVING])
def test_plates_refuse_control_and_format_characters(client, record, field, char):
    """A plate holding a control or format (bidi) character gets 400 naming its field, from the API too."""
    bad = dict(record, **{field: record[field][:3] + char + record[field][3:]})
    with pytest.raises(RecordError, match=f"^{field}: must not contain"):
        parse_record(bad)
    response = client.post(json=bad)
    assert response.status_code == 400 and response.get_json()["status"] == "fail"
    assert response.get_json()["body"].startswith(f"{field}: must not contain")
