"""The JSON Schema of one record, built from the constants records.py validates with, for the API document."""

from __future__ import annotations

from model.records import (
    ACCURACY_RANGE,
    FIELDS,
    MAX_LABEL_CHARS,
    MAX_LIST_CHARS,
    MAX_PLATE_CHARS,
    MAX_TIMESTAMP_CHARS,
    PLATE_FORBIDDEN_CHARS,
    SCORE_RANGE,
    TIMESTAMP_PATTERN,
)

#: A number written as a string: records.py reads it with float() and then checks its range.
_NUMERIC_STRING = {"type": "string", "description": "the number written as a string (the CSV exports send these)"}


def _number(bounds: tuple[float, float], description: str) -> dict:
    """A number within bounds, or a numeric string whose value must lie within them."""
    low, high = bounds
    return {"description": description, "anyOf": [{"type": "number", "minimum": low, "maximum": high},
                                                  _NUMERIC_STRING]}


def plate_schema(description: str) -> dict:
    """A plate: 1 to MAX_PLATE_CHARS characters, no white space or control characters."""
    return {"type": "string", "minLength": 1, "maxLength": MAX_PLATE_CHARS,
            "pattern": f"^[^{PLATE_FORBIDDEN_CHARS}]+$", "description": description}


def _score_list(description: str) -> dict:
    """A bracketed, comma-separated list of numbers in one string (its shape is checked by the service)."""
    return {"type": "string", "minLength": 2, "maxLength": MAX_LIST_CHARS,
            "description": description + ": numbers between brackets, separated by commas, such as "
                                         "`[0.99, 0.87]`; `[]` reads as `[0.0]`"}


def record_schema() -> dict:
    """The record as an OpenAPI 3.0 schema object.

    It accepts everything parse_record accepts. A few rules it does not express are left to the service,
    which answers 400 naming the field: a numeric string's value and range, the shape of the score
    lists, and time_check being a real date.
    """
    label = {"type": "string", "maxLength": MAX_LABEL_CHARS}
    properties = {
        "regno_recognize": plate_schema("the camera's plate"),
        "afts_regno_ai": plate_schema("the AI recogniser's plate"),
        "recognition_accuracy": _number(ACCURACY_RANGE, "the camera's confidence, 0 to 100"),
        "afts_regno_ai_score": _number(SCORE_RANGE, "the AI recogniser's confidence, 0 to 1"),
        "afts_regno_ai_char_scores": _score_list("the AI's confidence per character"),
        "afts_regno_ai_length_scores": _score_list("the AI's confidence per plate length"),
        "camera_type": {**label, "description": "the camera's type"},
        "camera_class": {**label, "description": "the camera's model"},
        "time_check": {"type": "string", "maxLength": MAX_TIMESTAMP_CHARS, "pattern": f"^{TIMESTAMP_PATTERN}$",
                       "description": "the pass time, `YYYY-MM-DD HH:MM:SS` (T, fraction and offset allowed)"},
        "direction": {"description": "the travel direction flag",
                      "anyOf": [{"type": "number", "enum": [0, 1]}, _NUMERIC_STRING]},
    }
    return {"type": "object", "required": list(FIELDS), "properties": properties,
            "description": "one pass; fields other than these ten are ignored"}
