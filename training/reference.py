"""The team's original pick_regno approach: load the model and build a pandas Series on every call.

Kept as an independent oracle for parity tests and as the baseline of `python -m loadtest.bench.record`.
The service never imports it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier

_L = "[А-Я]"
_CATEGORIES = [
    (f"{_L}\\d\\d\\d{_L}{_L}\\d\\d\\d?", "private car"),
    (f"{_L}{_L}\\d\\d\\d\\d\\d\\d?", " lk_taxi_r_pricep"),
    (f"{_L}{_L}\\d\\d\\d\\d\\d\\d\\d?", "lk_pricep_r_transit"),
    (f"\\d\\d\\d\\d{_L}{_L}\\d\\d\\d?", "lk_moto_tract"),
    (f"\\d\\d\\d\\d{_L}{_L}\\d\\d\\d?", "lk_army"),  # shadowed by the row above, as in the team's code
    (f"{_L}\\d\\d\\d\\d{_L}{_L}", "some"),
    (f"{_L}{_L}\\d\\d\\d{_L}\\d\\d\\d?", "lk_transit"),
    (f"(T|Т){_L}{_L}\\d\\d\\d\\d\\d\\d?", "lk_export"),
    (f"{_L}\\d\\d\\d\\d\\d\\d\\d?", "lk_mvd_avto"),
    (f"\\d\\d\\d\\d{_L}\\d\\d\\d?", "lk_mvd_moto"),
    (f"\\d\\d\\d{_L}\\d\\d\\d?", "lk_mvd_pricep"),
    ("\\d\\d\\d(CD|СD|D|T|Т)\\d\\d\\d\\d?\\d?\\d?", "lk_diplomat"),
]
_SYMBOLS = "0123456789DАВЕКМНОРСТУХ"


def _category(plate):
    for pattern, name in _CATEGORIES:
        if re.fullmatch(pattern, plate):
            return name
    return "unknown"


def _scores(text):
    if text == "[]":
        return [0.0]
    return [float(x) for x in text[1:-1].split(",")]


def pick_regno(record: dict, model_path: str) -> np.ndarray:
    """predict_proba of one record, the slow way the team's notebook does it."""
    model = CatBoostClassifier()
    model.load_model(model_path)
    chars = _scores(record["afts_regno_ai_char_scores"])
    lengths = _scores(record["afts_regno_ai_length_scores"])
    when = pd.Timestamp(str(record["time_check"]).replace("T", " "))
    ai, cam = str(record["afts_regno_ai"]), str(record["regno_recognize"])
    features = {}
    features["afts_regno_ai_score"] = float(record["afts_regno_ai_score"])
    features["direction"] = int(float(record["direction"]))
    features["recognition_accuracy"] = float(record["recognition_accuracy"])
    features["max_sym_score"] = max(chars)
    features["min_sym_score"] = min(chars)
    features["max_len_score"] = max(lengths)
    features["ai_len"] = len(ai)
    features["cam_len"] = len(cam)
    for symbol in _SYMBOLS:
        found = [score for char, score in zip(ai, chars) if char == symbol]
        features[symbol] = min(found) if found else 1
    features["foreign_sym"] = np.nan
    features["hour"] = when.hour
    features["camera_type"] = record["camera_type"]
    features["camera_class"] = record["camera_class"]
    features["weekday"] = when.day_name()
    features["month"] = when.month_name()
    features["regno_template"] = _category(cam)
    features["regno_template_ai"] = _category(ai)
    features["afts_regno_ai_text"] = " ".join(ai)
    features["regno_recognize_text"] = " ".join(cam)
    series = pd.Series(features, dtype=object)
    return model.predict_proba(series[model.feature_names_])
