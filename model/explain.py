"""Why a model scored a record as it did: CatBoost's exact SHAP values, named and sorted, next to the score.

The values add up: expected_value + sum of every contribution == raw_score (log-odds), and
sigmoid(raw_score) == the positive probability. No Flask here, and only CatBoost's public API.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from catboost import Pool

from model.records import Record
from model.scorer import Score, Scorer


def json_safe(value: object) -> object:
    """A feature value JSON can carry: NaN and infinities become None, numpy scalars plain Python ones."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def ranked(contributions: list[float]) -> list[int]:
    """Feature positions by absolute contribution, largest first; ties keep the model's feature order."""
    return sorted(range(len(contributions)), key=lambda position: -abs(contributions[position]))


class Contribution(NamedTuple):
    """One feature's share of the raw score: its name, its value in the vector, its SHAP value."""

    feature: str
    value: object
    contribution: float

    def answer(self) -> dict:
        """As the explain answer lists it."""
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution}


class Explanation(NamedTuple):
    """A record's score by one model, and the contributions that make up its raw score."""

    #: The probabilities, as the scorer gives them to POST /reg/.
    score: Score
    #: Log-odds of the positive class (CatBoost's RawFormulaVal).
    raw_score: float
    #: The SHAP base value: the raw score before any feature speaks.
    expected_value: float
    #: The largest contributions, by absolute value, largest first.
    contributions: list[Contribution]
    #: The sum of the contributions not listed.
    other: float
    #: How many features the model has.
    features: int


def explain(scorer: Scorer, record: Record, top: int | None = None) -> Explanation:
    """The score, raw score and SHAP values of one record by this scorer's model; top None lists every feature."""
    vector = scorer.build_vector(record)
    names = scorer.feature_names
    if top is not None and not 1 <= top <= len(names):
        raise ValueError(f"top must be between 1 and {len(names)}, got {top}")
    # The score through the route POST /reg/ takes, so the two answers are the same numbers.
    score = scorer.predict_vectors([vector])[0]
    # The pool as Scorer._predict_public builds it; thread_count=1 as every prediction of the service runs.
    pool = Pool([vector], cat_features=scorer.cat_features, text_features=scorer.text_features)
    shap = scorer.model.get_feature_importance(pool, type="ShapValues", thread_count=1)[0]
    raw_score = float(scorer.model.predict(pool, prediction_type="RawFormulaVal", thread_count=1)[0])
    values = [float(value) for value in shap[:-1]]  # the last column is the expected value
    order = ranked(values)
    listed = order if top is None else order[:top]
    contributions = [Contribution(names[position], json_safe(vector[position]), values[position])
                     for position in listed]
    other = math.fsum(values[position] for position in order[len(listed):])
    return Explanation(score, raw_score, float(shap[-1]), contributions, other, len(names))
