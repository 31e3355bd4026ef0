"""The training reference a model carries, and the drift of live inputs against it.

A profile describes the training inputs a few raw record fields give: decile bins of the numeric ones and the
shares of the categorical ones. Training stores it in the model's CatBoost metadata (METADATA_KEY), so a report
can compare the prediction log's passes with what the model was trained on, feature by feature (PSI, TVD).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime
from typing import Any, Mapping, Sequence

import numpy as np

from model.records import FIELDS, Record, parse_score_list

#: The CatBoost metadata key holding the profile, as compact JSON (metadata values are strings).
METADATA_KEY = "regno_profile"
#: Version of the profile's layout, so a reader can tell an older one.
PROFILE_FORMAT = 1
#: Profiled numeric inputs; min_char_score is the lowest of afts_regno_ai_char_scores, hour that of time_check.
NUMERIC = ("recognition_accuracy", "afts_regno_ai_score", "min_char_score", "hour")
#: Profiled categorical inputs, compared as strings.
CATEGORICAL = ("camera_type", "camera_class", "direction")
#: Categorical values listed by name; the rarer ones are pooled as OTHER.
TOP_VALUES = 30
OTHER = "(other)"
#: Where live values the training inputs never had are counted.
NEW = "(new)"
#: Share given to an empty bin or category, so that PSI stays finite.
EPSILON = 1e-4
#: PSI below this: the distribution is stable.
STABLE_BELOW = 0.1
#: PSI below this (and not stable): a moderate shift; at or above it, a major one.
MODERATE_BELOW = 0.25
#: Digits kept of a share: enough for PSI, and it keeps the metadata small.
SHARE_DIGITS = 6


def _min_char_score(value: Any) -> float:
    """Lowest char score of a list, an array or the wire's bracketed string; an empty list counts as 0.0."""
    if isinstance(value, str):
        value = parse_score_list(value)  # the contract's reading: '[]' is (0.0,)
    scores = [float(score) for score in value]
    return min(scores) if scores else 0.0  # an empty list from the log: the contract's '[]'


def _hour(value: Any) -> int:
    """Hour of a pass time: a datetime, or a 'YYYY-MM-DD HH:MM:SS' string (space or T) as the log stores it."""
    if isinstance(value, datetime):
        return value.hour
    # records.py has no public parser of a lone timestamp; characters 11-12 are the hour in every form it accepts.
    return int(str(value)[11:13])


def _direction(value: Any) -> str:
    """The direction flag as a category: '0' or '1', whether it came as an int, a float or a string."""
    return str(int(float(value)))


#: How each profiled input is read from its raw field.
_INPUTS = {
    "recognition_accuracy": ("recognition_accuracy", float),
    "afts_regno_ai_score": ("afts_regno_ai_score", float),
    "min_char_score": ("afts_regno_ai_char_scores", _min_char_score),
    "hour": ("time_check", _hour),
    "camera_type": ("camera_type", str),
    "camera_class": ("camera_class", str),
    "direction": ("direction", _direction),
}


def inputs_of(columns: Mapping[str, Sequence]) -> dict[str, list]:
    """The profiled inputs of raw field columns (as the prediction log holds them); None values are skipped."""
    inputs: dict[str, list] = {}
    for name, (field, read) in _INPUTS.items():
        if field in columns:
            # Rows that failed validation carry no fields: they are left out rather than guessed.
            inputs[name] = [read(value) for value in columns[field] if value is not None]
    return inputs


def inputs_of_records(records: Sequence[Record]) -> dict[str, list]:
    """The profiled inputs of validated records: the same reading as inputs_of, by way of their columns."""
    return inputs_of({field: [getattr(record, field) for record in records] for field in FIELDS})


def _numeric_profile(values: Sequence[float], bins: int) -> dict:
    """Interior quantile edges (deduplicated; the outer bins are open) and the share of values in each bin."""
    array = np.asarray(values, dtype=float)
    quantiles = np.quantile(array, [i / bins for i in range(1, bins)])
    # Ten significant digits drop interpolation noise (12.584223200000002); the shares are of the edges kept.
    edges = sorted({float(f"{edge:.10g}") for edge in quantiles})
    return {"kind": "numeric", "edges": edges, "shares": _bin_shares(edges, array)}


def _bin_shares(edges: Sequence[float], values: np.ndarray) -> list[float]:
    """Share of values per bin: (-inf, e0), [e0, e1), ..., [e_last, +inf)."""
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), values, side="right"),
                         minlength=len(edges) + 1)
    return [round(float(count) / len(values), SHARE_DIGITS) for count in counts]


def _categorical_profile(values: Sequence) -> dict:
    """Share of the TOP_VALUES commonest values, most common first, the rest pooled as OTHER."""
    counts = Counter(map(str, values))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))  # ties by name: the same input, one profile
    shares = {value: round(count / len(values), SHARE_DIGITS) for value, count in ranked[:TOP_VALUES]}
    pooled = sum(count for _, count in ranked[TOP_VALUES:])
    if pooled:
        shares[OTHER] = round(pooled / len(values), SHARE_DIGITS)
    return {"kind": "categorical", "shares": shares}


def profile_of(inputs: dict[str, list], bins: int = 10) -> dict:
    """The reference of profiled inputs: per input its bins or categories, with the row count; JSON-ready."""
    if bins < 2:
        raise ValueError("bins must be at least 2")
    features = {}
    for name in NUMERIC + CATEGORICAL:
        values = inputs.get(name)
        if values is None or not len(values):
            raise ValueError(f"{name}: no values to profile")
        features[name] = _numeric_profile(values, bins) if name in NUMERIC else _categorical_profile(values)
    rows = max(len(inputs[name]) for name in features)
    return {"format": PROFILE_FORMAT, "rows": rows, "bins": bins, "features": features}


def _psi(reference: Sequence[float], observed: Sequence[float]) -> float:
    """PSI of two share vectors of one length, empty shares raised to EPSILON."""
    total = 0.0
    for ref, obs in zip(reference, observed):
        ref, obs = max(ref, EPSILON), max(obs, EPSILON)
        total += (obs - ref) * math.log(obs / ref)
    return total


def psi(reference_feature: dict, values: Sequence[float]) -> float:
    """Population Stability Index of numeric values against a numeric reference's bins."""
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    if not len(array):
        raise ValueError("PSI needs at least one value")
    return _psi(reference_feature["shares"], _bin_shares(reference_feature["edges"], array))


def categorical_shift(reference_feature: dict, values: Sequence) -> dict:
    """Reference and observed share per category, their total variation distance and PSI; unseen values as NEW."""
    # A value the reference does not list may be one of the rare ones it pooled: only without a pool is it surely new.
    if not len(values):
        raise ValueError("a categorical shift needs at least one value")
    reference = reference_feature["shares"]
    unlisted = OTHER if OTHER in reference else NEW
    counts = Counter(value if value in reference else unlisted for value in map(str, values))
    categories = list(reference) + [value for value in counts if value not in reference]
    shares = {value: {"reference": reference.get(value, 0.0), "observed": counts.get(value, 0) / len(values)}
              for value in categories}
    ref = [share["reference"] for share in shares.values()]
    obs = [share["observed"] for share in shares.values()]
    tvd = 0.5 * sum(abs(o - r) for r, o in zip(ref, obs))
    return {"shares": shares, "tvd": tvd, "psi": _psi(ref, obs)}


def verdict(psi_value: float) -> str:
    """Plain words for a PSI: 'stable', 'moderate shift' or 'major shift'."""
    if psi_value < STABLE_BELOW:
        return "stable"
    return "moderate shift" if psi_value < MODERATE_BELOW else "major shift"


def drift(profile: dict, inputs: dict[str, list]) -> list[dict]:
    """One row per profiled input: feature, kind, values seen, PSI, TVD (categorical) and a verdict."""
    rows = []
    for name, reference in profile["features"].items():
        values = inputs.get(name)
        values = [] if values is None else values
        row = {"feature": name, "kind": reference["kind"], "values": len(values), "psi": None, "tvd": None}
        if not len(values):
            rows.append({**row, "verdict": "no data"})
            continue
        if reference["kind"] == "numeric":
            row["psi"] = psi(reference, values)
        else:
            shift = categorical_shift(reference, values)
            row["psi"], row["tvd"] = shift["psi"], shift["tvd"]
        rows.append({**row, "verdict": verdict(row["psi"])})
    return rows


def store_profile(model: Any, profile: dict) -> None:
    """Write the profile into a CatBoost model's metadata under METADATA_KEY, as compact JSON."""
    # allow_nan=False: the report may read it with any JSON parser, and NaN is not JSON.
    model.get_metadata()[METADATA_KEY] = json.dumps(profile, separators=(",", ":"), ensure_ascii=False,
                                                    allow_nan=False)


def read_profile(model: Any) -> dict | None:
    """The profile in a CatBoost model's metadata, or None when it has none (a model trained elsewhere)."""
    text = dict(model.get_metadata()).get(METADATA_KEY)
    return None if text is None else json.loads(text)
