"""The scoring blueprint: POST /reg/ takes one record and answers the model's probabilities and pick."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from model.records import Record, parse_record
from model.scorer import Score
from service.cache import cache_key
from service.envelope import ok
from service.request_body import read_json_object
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
    key = cache_key(state.settings.cache_prefix, state.model_identity, record)
    score, cached = state.cache.get(key)
    if score is None:
        score = state.scorer.score(record)
        state.cache.put(key, score)
    response = ok(answer_body(record, score, state.settings.pick_threshold, state.scorer.version))
    response.headers["X-Cache"] = cached
    return response
