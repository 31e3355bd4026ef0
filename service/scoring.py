"""The scoring blueprint: POST /reg/ takes one record and answers the model's probabilities and pick."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, request

from model.records import Record, parse_record
from model.scorer import Score
from service.cache import ERROR, MISS, cache_key
from service.envelope import ok
from service.request_body import read_json_object
from service.sentry import remember_plates
from service.state import service_state

bp = Blueprint("scoring", __name__, url_prefix="/reg")


@bp.before_request
def require_api_key() -> None:
    """Every scoring request needs a key."""
    service_state(current_app).api_keys.require()


def answer_body(record: Record, score: Score, threshold: float, model_version: str) -> dict:
    """The body of a scored answer: probabilities, the chosen plate and its source, the model version."""
    take_ai = score.positive >= threshold
    return {
        "positive": score.positive,
        "negative": score.negative,
        "regno": record.afts_regno_ai if take_ai else record.regno_recognize,
        "source": "afts_regno_ai" if take_ai else "regno_recognize",
        "model": model_version,
    }


# strict_slashes=False serves /reg as well as /reg/ without a redirect: clients POST to both.
@bp.post("/", strict_slashes=False)
def score_one():
    """Score one record."""
    state = service_state(current_app)
    record = parse_record(read_json_object(request))
    remember_plates(record.regno_recognize, record.afts_regno_ai)
    key = cache_key(state.settings.cache_prefix, state.model_identity, record)
    score, cached = state.cache.get(key)
    if score is None:
        score, timings = _score(state, record)
        state.cache.put(key, score)
    body = answer_body(record, score, state.settings.pick_threshold, state.scorer.version)
    g.cache_result = cached
    if state.metrics is not None:
        state.metrics.looked_up(cached.replace("-", "_"))
        if cached in (MISS, ERROR):
            state.metrics.scored(score.positive, body["source"], body["model"], *timings)
    response = ok(body)
    response.headers["X-Cache"] = MISS if cached == ERROR else cached
    return response


def _score(state, record: Record) -> tuple[Score, tuple[float, float]]:
    """Score a record with the model; also the seconds spent building features and predicting."""
    started = time.perf_counter()
    vector = state.scorer.build_vector(record)
    built = time.perf_counter()
    score = state.batcher.score(vector)
    return score, (built - started, time.perf_counter() - built)
