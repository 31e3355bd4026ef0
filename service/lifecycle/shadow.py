"""Shadow scoring: the candidate model scores a share of passes after the answer has gone, to compare.

The comparison runs in the response's close callback, which the WSGI server calls once it has written
the body, so the caller never waits for it. What is compared, by model versions: whether both models
pick the same plate, and how far apart their positive scores are.
"""

from __future__ import annotations

import functools
import logging
import random
from typing import Callable

from flask import Response

from model.engine import Scored, ScoringEngine
from model.records import Record
from model.routing import Routing
from service.observe.metrics import ServiceMetrics

log = logging.getLogger("regno")


class ShadowScorer:
    """Has the candidate score SHADOW_SHARE of the passes the current model answered, after the response."""

    def __init__(self, share: float, threshold: float, metrics: ServiceMetrics | None):
        self.share = share
        # No cache and no observer: a shadow score is only compared, never served or counted as traffic.
        self.engine = ScoringEngine(threshold)
        self.metrics = metrics

    def after_response(self, response: Response, routing: Routing, record: Record, answered: Scored,
                       then: Callable[[Scored | None], None] | None = None) -> bool:
        """Have the candidate score this pass once the response has gone, for the shadow share; True if it will.

        then, if given, is called with the candidate's result (None if it failed) after the comparison.
        """
        if (routing.candidate is None or self.share <= 0.0 or answered.slot is routing.candidate
                or random.random() >= self.share):
            return False
        response.call_on_close(functools.partial(self.compare, routing, record, answered, then))
        return True

    def compare(self, routing: Routing, record: Record, answered: Scored,
                then: Callable[[Scored | None], None] | None = None) -> None:
        """Score the pass with the candidate and record the agreement; never raises (the caller is long gone)."""
        candidate, shadow = routing.candidate, None
        try:
            shadow = self.engine.score([record], Routing(candidate))[0]
            if self.metrics is not None:
                self.metrics.shadow_compared(routing.current.version, candidate.version,
                                             shadow.source == answered.source,
                                             abs(shadow.score.positive - answered.score.positive))
        except Exception:  # noqa: BLE001 - a failing candidate must not disturb the service
            log.exception("shadow scoring with %s failed", candidate.version)
        if then is not None:
            then(shadow)
