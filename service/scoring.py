"""The scoring blueprint: POST /reg/ scores one record, POST /reg/batch many; both need an API key."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, request

from model.records import Record, parse_record
from model.scorer import Score
from service.answer import answer_body
from service.batch import batch_records, score_records
from service.cache import ERROR, HIT_L1, MISS, body_key
from service.envelope import ok_bytes
from service import shadow
from service.request_body import decode_json, decode_json_object, read_json_body
from service.sentry import remember_plates
from service.state import ModelSlot, service_state

bp = Blueprint("scoring", __name__, url_prefix="/reg")


@bp.before_request
def require_api_key() -> None:
    """Every scoring request needs a key."""
    service_state(current_app).api_keys.require()


# strict_slashes=False serves /reg as well as /reg/ without a redirect: clients POST to both.
@bp.post("/", strict_slashes=False)
def score_one():
    """Score one record."""
    state = service_state(current_app)
    routing = state.routing  # read once: a swap during this request does not change the model that answers it
    body = read_json_body(request)
    # A resent pass arrives as the very same bytes: its remembered answer skips decoding and validation.
    key_of_body = body_key(routing.salt, body)
    remembered = state.cache.answer_for(key_of_body)
    if remembered is not None:
        return _answer(state, remembered, HIT_L1)
    record = parse_record(decode_json_object(body))
    remember_plates(record.regno_recognize, record.afts_regno_ai)
    model = routing.for_record(record)
    key = state.cache.key(model.identity, record)
    score, cached = state.cache.get(key)
    if score is None:
        score, timings = _score(model, record)
        state.cache.put(key, score)
    answer = answer_body(record, score, state.settings.pick_threshold, model.scorer.version)
    if state.metrics is not None and cached in (MISS, ERROR):
        state.metrics.scored(score.positive, answer["source"], answer["model"], *timings)
    envelope = ok_bytes(answer)
    state.cache.remember_answer(key_of_body, envelope)
    response = _answer(state, envelope, cached)
    shadow.after_response(response, state, routing, model, record, score)
    return response


@bp.post("/batch")
def score_batch():
    """Score a JSON array of records, or {"records": [...]}: one result per record, in order."""
    state = service_state(current_app)
    request.max_content_length = state.settings.batch_request_max_bytes  # a batch may exceed MAX_BODY_BYTES
    records = batch_records(decode_json(read_json_body(request)), state.settings.batch_request_max_records)
    return Response(ok_bytes(score_records(state, records)), 200, content_type="application/json")


def _answer(state, envelope: bytes, cached: str) -> Response:
    """The response for an encoded success envelope, saying where it came from."""
    g.cache_result = cached
    if state.metrics is not None:
        state.metrics.looked_up(cached.replace("-", "_"))
    response = Response(envelope, 200, content_type="application/json")
    response.headers.add("X-Cache", MISS if cached == ERROR else cached)
    return response


def _score(model: ModelSlot, record: Record) -> tuple[Score, tuple[float, float]]:
    """Score a record with the model; also the seconds spent building features and predicting."""
    started = time.perf_counter()
    vector = model.scorer.build_vector(record)
    built = time.perf_counter()
    score = model.batcher.score(vector)
    return score, (built - started, time.perf_counter() - built)
