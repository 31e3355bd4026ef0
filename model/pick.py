"""The pick: the AI's plate when the model's positive score reaches the threshold, else the camera's."""

from __future__ import annotations

from model.records import Record
from model.scorer import Score

AI, CAMERA = "afts_regno_ai", "regno_recognize"


def pick(record: Record, score: Score, threshold: float) -> tuple[str, str]:
    """(picked plate, its source field): afts_regno_ai at or above threshold, else regno_recognize."""
    if score.positive >= threshold:
        return record.afts_regno_ai, AI
    return record.regno_recognize, CAMERA
