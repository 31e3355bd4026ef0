"""The contract's 41 features, built from a validated Record in plain Python (no pandas, no I/O)."""

from __future__ import annotations

import re
from typing import Callable, Sequence

from model.records import Record

#: Features CatBoost reads as categories; all others but the text ones are numbers.
CATEGORICAL = ("camera_type", "camera_class", "weekday", "month", "regno_template", "regno_template_ai")
#: Features CatBoost reads as text: the plate's characters joined by single spaces.
TEXT = ("afts_regno_ai_text", "regno_recognize_text")
#: The symbols that get a per-symbol score feature; the letters are Cyrillic, D is Latin.
SYMBOLS = tuple("0123456789") + ("D",) + tuple("АВЕКМНОРСТУХ")

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)

# L is one capital Cyrillic letter U+0410..U+042F (no Ё, no lower case); 9 is Python's \d.
_TEMPLATE_PATTERNS = (
    (r"L\d{3}LL\d{2,3}", "private car"),
    (r"LL\d{5,6}", " lk_taxi_r_pricep"),  # the leading space is the team's category name
    (r"LL\d{6,7}", "lk_pricep_r_transit"),
    (r"\d{4}LL\d{2,3}", "lk_moto_tract"),
    (r"L\d{4}LL", "some"),
    (r"LL\d{3}L\d{2,3}", "lk_transit"),
    (r"[TТ]LL\d{5,6}", "lk_export"),
    (r"L\d{6,7}", "lk_mvd_avto"),
    (r"\d{4}L\d{2,3}", "lk_mvd_moto"),
    (r"\d{3}L\d{2,3}", "lk_mvd_pricep"),
    (r"\d{3}(?:CD|СD|D|T|Т)\d{3,6}", "lk_diplomat"),
)
TEMPLATES = tuple(
    (re.compile(pattern.replace("L", "[\u0410-\u042f]")), category) for pattern, category in _TEMPLATE_PATTERNS
)


def plate_template(plate: str) -> str:
    """The plate's category: the first whole-string pattern that matches, else 'unknown'."""
    for pattern, category in TEMPLATES:
        if pattern.fullmatch(plate):
            return category
    return "unknown"


def spaced(plate: str) -> str:
    """The plate's characters joined by single spaces, the form of the text features."""
    return " ".join(plate)


def symbol_scores(plate: str, char_scores: Sequence[float]) -> dict[str, float]:
    """Lowest char score per contract symbol, pairing plate and scores up to the shorter; 1 if absent."""
    lowest = dict.fromkeys(SYMBOLS, 1.0)
    seen: set[str] = set()
    for char, score in zip(plate, char_scores):
        if char in lowest:
            lowest[char] = score if char not in seen else min(lowest[char], score)
            seen.add(char)
    return lowest


def record_features(record: Record) -> dict[str, object]:
    """Every feature the contract defines, by name, for one record."""
    ai, cam, when = record.afts_regno_ai, record.regno_recognize, record.time_check
    chars, lengths = record.afts_regno_ai_char_scores, record.afts_regno_ai_length_scores
    features: dict[str, object] = {
        "afts_regno_ai_score": record.afts_regno_ai_score,
        "direction": record.direction,
        "recognition_accuracy": record.recognition_accuracy,
        "max_sym_score": max(chars),
        "min_sym_score": min(chars),
        "max_len_score": max(lengths),
        "ai_len": len(ai),
        "cam_len": len(cam),
        # The team's code means to count foreign symbols but never returns it: the model was trained on NaN.
        "foreign_sym": float("nan"),
        "hour": when.hour,
        "camera_type": record.camera_type,
        "camera_class": record.camera_class,
        "weekday": WEEKDAYS[when.weekday()],
        "month": MONTHS[when.month - 1],
        "regno_template": plate_template(cam),
        "regno_template_ai": plate_template(ai),
        "afts_regno_ai_text": spaced(ai),
        "regno_recognize_text": spaced(cam),
    }
    features.update(symbol_scores(ai, chars))
    return features


#: Every feature name this module can build.
KNOWN_FEATURES = frozenset(CATEGORICAL + TEXT + SYMBOLS) | {
    "afts_regno_ai_score", "direction", "recognition_accuracy", "max_sym_score", "min_sym_score",
    "max_len_score", "ai_len", "cam_len", "foreign_sym", "hour",
}


def unbuildable(feature_names: Sequence[str]) -> list[str]:
    """The declared feature names this module cannot build, in declared order."""
    return [name for name in feature_names if name not in KNOWN_FEATURES]


def vector_builder(feature_names: Sequence[str]) -> Callable[[Record], list]:
    """A function that turns a Record into the feature list in the model's declared order."""
    missing = unbuildable(feature_names)
    if missing:
        raise ValueError(f"cannot build features: {', '.join(missing)}")
    names = tuple(feature_names)

    def build(record: Record) -> list:
        features = record_features(record)
        return [features[name] for name in names]

    return build
