"""The scoring blueprint: POST /reg/ scores one record, POST /reg/batch many; both need an API key.

Each view reads the body, calls the engine (model/engine.py) and writes the envelope.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from model.engine import HIT_L1, Origin
from model.records import json_kind, parse_record, parse_records
from service.cache import body_key
from service.http.envelope import ok_bytes
from service.http.request_body import decode_json, decode_json_object, read_json_body
from service.observe.sentry import remember_plates
from service.state import ServiceState, service_state

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
    remembered_as = body_key(routing.salt, body)
    remembered = state.cache.answer_for(remembered_as)
    if remembered is not None:
        if state.metrics is not None:
            state.metrics.looked_up(HIT_L1.metric)
        return _answer(remembered, HIT_L1)
    record = parse_record(decode_json_object(body))
    remember_plates(record.regno_recognize, record.afts_regno_ai)
    result = state.engine.score([record], routing)[0]
    envelope = ok_bytes(result.answer())
    state.cache.remember_answer(remembered_as, envelope)
    response = _answer(envelope, result.origin)
    if routing.candidate is not None:
        state.shadow.after_response(response, routing, record, result)
    return response


@bp.post("/batch")
def score_batch():
    """Score a JSON array of records, or {"records": [...]}: one result per record, in order."""
    state = service_state(current_app)
    request.max_content_length = state.settings.batch_request_max_bytes  # a batch may exceed MAX_BODY_BYTES
    raws = batch_records(decode_json(read_json_body(request)), state.settings.batch_request_max_records)
    return Response(ok_bytes(score_records(state, raws)), 200, content_type="application/json")


def batch_records(value: Any, limit: int) -> list:
    """The records of a batch body: a JSON array, or an object whose "records" is one; 413 past limit."""
    if isinstance(value, dict):
        if "records" not in value:
            raise BadRequest('a batch object must hold its records in "records"')
        value = value["records"]
    if not isinstance(value, list):
        raise BadRequest(f"a batch must be a JSON array of records or {{\"records\": [...]}}, got {json_kind(value)}")
    if len(value) > limit:
        raise RequestEntityTooLarge(f"a batch holds at most {limit} records, got {len(value)}")
    return value


def score_records(state: ServiceState, raws: list) -> list[dict]:
    """One result per record, in order: the answer /reg/ gives, or {"error", "index"} for a bad record."""
    valid, errors, failures = parse_records(raws)
    scored = state.engine.score([record for _, record in valid], state.routing)
    if state.metrics is not None:
        state.metrics.rejected(failures)
    results: list[dict] = [{"error": errors[index], "index": index} if index in errors else {}
                           for index in range(len(raws))]
    for (index, _), result in zip(valid, scored):
        results[index] = result.answer()
    return results


def _answer(envelope: bytes, origin: Origin) -> Response:
    """The response for an encoded success envelope, saying where its score came from."""
    g.cache_origin = origin
    response = Response(envelope, 200, content_type="application/json")
    response.headers.add("X-Cache", origin.header)
    return response
