"""Validation and coercion of one recognition record, as the contract defines it."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime
from typing import Any, Iterable, NamedTuple

import orjson

#: The ten fields production sends; anything else in a record is ignored.
FIELDS = (
    "regno_recognize",
    "afts_regno_ai",
    "recognition_accuracy",
    "afts_regno_ai_score",
    "afts_regno_ai_char_scores",
    "afts_regno_ai_length_scores",
    "camera_type",
    "camera_class",
    "time_check",
    "direction",
)

#: Longest plate accepted; real plates have at most 10 characters.
MAX_PLATE_CHARS = 20
#: Longest camera type or class accepted.
MAX_LABEL_CHARS = 128
#: Longest bracketed score list accepted, in characters.
MAX_LIST_CHARS = 4096

#: Date, a space or T, then hours and minutes, optional seconds and fraction, optional offset. Written
#: with [0-9] and without flags so the API document (model/record_schema.py) can publish it as it is.
TIMESTAMP_PATTERN = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}"
                     r"(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?")
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
#: Characters a plate must not hold: white space (a space would change the text features), control characters
#: (Unicode category Cc) and format characters (Cf: bidi overrides such as U+202E, isolates U+2066-2069, marks
#: U+200E/F, zero-width characters), which make a plate look like another one; as Unicode 14 (Python 3.11) lists
#: them, spelled out so that other regex engines agree. The Basic Multilingual Plane only, for the API document.
PLATE_FORBIDDEN_CHARS = (r"\x00-\x20\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u1680\u180e"
                         r"\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff\ufff9-\ufffb")
#: The format characters (Cf) beyond the Basic Multilingual Plane, which the API document's pattern cannot name.
_ASTRAL_FORMAT_CHARS = (r"\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
                        r"\U000e0001\U000e0020-\U000e007f")
_PLATE_FORBIDDEN = re.compile(f"[{PLATE_FORBIDDEN_CHARS}{_ASTRAL_FORMAT_CHARS}]")
#: Bounds of the numeric fields, as (low, high).
ACCURACY_RANGE = (0.0, 100.0)
SCORE_RANGE = (0.0, 1.0)
#: Longest time_check accepted, in characters.
MAX_TIMESTAMP_CHARS = 64


class RecordError(ValueError):
    """A record field that is missing or cannot be read; the message names the field."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Record(NamedTuple):
    """One validated record: every field coerced to the type the features need."""

    regno_recognize: str
    afts_regno_ai: str
    recognition_accuracy: float
    afts_regno_ai_score: float
    afts_regno_ai_char_scores: tuple[float, ...]
    afts_regno_ai_length_scores: tuple[float, ...]
    camera_type: str
    camera_class: str
    time_check: datetime
    direction: int


def _shown(value: Any, limit: int = 40) -> str:
    """Repr of a bad value, cut short so an error message never echoes a huge input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(record: dict, field: str, low: float, high: float) -> float:
    """A finite number in [low, high], given as a JSON number or a numeric string."""
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RecordError(field, f"must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise RecordError(field, f"must be a number, got {_shown(value)}") from None
    if not math.isfinite(number):
        raise RecordError(field, f"must be a finite number, got {_shown(value)}")
    if not low <= number <= high:
        raise RecordError(field, f"must be between {low:g} and {high:g}, got {number:g}")
    return number


def _direction(record: dict) -> int:
    """The direction flag: 0 or 1, as a number or a numeric string."""
    number = _number(record, "direction", -math.inf, math.inf)
    if number not in (0.0, 1.0):
        raise RecordError("direction", f"must be 0 or 1, got {number:g}")
    return int(number)


def _text(record: dict, field: str, max_chars: int) -> str:
    """A string field of at most max_chars characters."""
    value = record[field]
    if not isinstance(value, str):
        raise RecordError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise RecordError(field, f"must have at most {max_chars} characters, got {len(value)}")
    return value


def _plate(record: dict, field: str) -> str:
    """A plate: 1..MAX_PLATE_CHARS characters, none of them white space, control or format characters."""
    return parse_plate(record[field], field)


def parse_plate(value: Any, field: str) -> str:
    """A plate as records and labels carry it, checked: 1..MAX_PLATE_CHARS characters, none white space, control
    or format (bidi) characters."""
    plate = _text({field: value}, field, MAX_PLATE_CHARS)
    if not plate:
        raise RecordError(field, "must not be empty")
    forbidden = _PLATE_FORBIDDEN.search(plate)
    if forbidden:
        if ord(forbidden.group()) > 0xFFFF:  # a rule the API document's pattern cannot express (see above)
            raise RecordError(field, f"must not contain format characters, got {_shown(plate)}")
        raise RecordError(field, f"must not contain spaces, control or format characters (such as bidi overrides), "
                                 f"got {_shown(plate)}")
    return plate


def parse_score_list(text: str) -> tuple[float, ...]:
    """Read a bracketed list the contract's way: '[]' is (0.0,), else split the inside on commas."""
    if text == "[]":
        return (0.0,)
    return tuple(map(float, text[1:-1].split(",")))


def _score_list(record: dict, field: str) -> tuple[float, ...]:
    """A bracketed list of finite numbers, such as '[0.99, 0.87]'."""
    text = _text(record, field, MAX_LIST_CHARS)
    if len(text) < 2 or text[0] != "[" or text[-1] != "]":
        raise RecordError(field, f"must be a bracketed list like '[0.9, 0.8]', got {_shown(text)}")
    try:
        scores = parse_score_list(text)
    except ValueError:
        raise RecordError(field, f"must be a list of numbers separated by commas, got {_shown(text)}") from None
    if not all(map(math.isfinite, scores)):
        raise RecordError(field, f"must hold finite numbers only, got {_shown(text)}")
    return scores


def _timestamp(record: dict) -> datetime:
    """The pass time, 'YYYY-MM-DD HH:MM:SS' with an optional T, fraction and UTC offset."""
    text = _text(record, "time_check", MAX_TIMESTAMP_CHARS)
    if not _TIMESTAMP.fullmatch(text):
        raise RecordError("time_check", f"must be a timestamp like '2021-08-01 09:02:59', got {_shown(text)}")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise RecordError("time_check", f"is not a real date and time, got {_shown(text)}") from None


def parse_record(record: Any) -> Record:
    """Validate one decoded JSON record and coerce it; raise RecordError naming the first bad field."""
    if not isinstance(record, dict):
        raise RecordError("record", f"must be a JSON object, got {json_kind(record)}")
    missing = [field for field in FIELDS if field not in record]
    if missing:
        raise RecordError(missing[0], f"is missing (required fields: {', '.join(missing)})")
    return Record(
        regno_recognize=_plate(record, "regno_recognize"),
        afts_regno_ai=_plate(record, "afts_regno_ai"),
        recognition_accuracy=_number(record, "recognition_accuracy", *ACCURACY_RANGE),
        afts_regno_ai_score=_number(record, "afts_regno_ai_score", *SCORE_RANGE),
        afts_regno_ai_char_scores=_score_list(record, "afts_regno_ai_char_scores"),
        afts_regno_ai_length_scores=_score_list(record, "afts_regno_ai_length_scores"),
        camera_type=_text(record, "camera_type", MAX_LABEL_CHARS),
        camera_class=_text(record, "camera_class", MAX_LABEL_CHARS),
        time_check=_timestamp(record),
        direction=_direction(record),
    )


def parse_records(raws: Iterable[Any]) -> tuple[list[tuple[int, Record]], dict[int, RecordError], Counter]:
    """Validate many records: (index and Record of each valid one, the error by index, failures by field)."""
    valid: list[tuple[int, Record]] = []
    errors: dict[int, RecordError] = {}
    failures: Counter = Counter()
    for index, raw in enumerate(raws):
        try:
            valid.append((index, parse_record(raw)))
        except RecordError as error:
            errors[index] = error
            failures[error.field] += 1
    return valid, errors, failures


def canonical_bytes(record: Record) -> bytes:
    """The record in one canonical form: field order, numeric strings and double encoding leave no trace."""
    # orjson writes floats in their shortest round-trip form and datetimes as RFC 3339, both deterministic.
    return orjson.dumps(tuple(record))


def json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__
