"""Shadow scoring: the candidate model scores a share of passes after the answer has gone, to compare.

The comparison runs in the response's close callback, which the WSGI server calls once it has written
the body, so the caller never waits for it. What is compared, by model versions: whether both models
pick the same plate, and how far apart their positive scores are.
"""

from __future__ import annotations

import functools
import logging
import random

from flask import Response

from model.pick import pick
from model.records import Record
from model.scorer import Score
from service.state import ModelSlot, Routing, ServiceState

log = logging.getLogger("regno")


def after_response(response: Response, state: ServiceState, routing: Routing, answered_by: ModelSlot,
                   record: Record, score: Score) -> None:
    """Arrange for the candidate to score this pass after the response, for a SHADOW_SHARE of passes."""
    share = state.settings.shadow_share
    if routing.candidate is None or share <= 0.0 or answered_by is routing.candidate or random.random() >= share:
        return
    response.call_on_close(functools.partial(compare, state, routing.current, routing.candidate, record, score))


def compare(state: ServiceState, current: ModelSlot, candidate: ModelSlot, record: Record, score: Score) -> None:
    """Score the pass with the candidate and record the agreement; never raises (the caller is long gone)."""
    try:
        shadow = candidate.scorer.predict_vectors([candidate.scorer.build_vector(record)])[0]
        threshold = state.settings.pick_threshold
        agree = pick(record, score, threshold)[1] == pick(record, shadow, threshold)[1]
        if state.metrics is not None:
            state.metrics.shadow_compared(current.scorer.version, candidate.scorer.version, agree,
                                          abs(shadow.positive - score.positive))
    except Exception:  # noqa: BLE001 - a failing candidate must not disturb the service
        log.exception("shadow scoring with %s failed", candidate.scorer.version)
