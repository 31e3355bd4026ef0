"""The body of a scored answer, the same for /reg/ and for each good record of /reg/batch."""

from __future__ import annotations

from model.pick import pick
from model.records import Record
from model.scorer import Score


def answer_body(record: Record, score: Score, threshold: float, model_version: str) -> dict:
    """Probabilities, the chosen plate and its source, the model version."""
    regno, source = pick(record, score, threshold)
    return {"positive": score.positive, "negative": score.negative, "regno": regno, "source": source,
            "model": model_version}
