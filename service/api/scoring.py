"""The scoring blueprint: POST /reg/ scores one record, POST /reg/batch many; both need an API key.

Each view reads the body, calls the engine (model/engine.py) and writes the envelope.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from model.engine import HIT_L1, Origin, Scored
from model.records import Record, RecordError, json_kind, parse_record, parse_records
from service.cache import body_key
from service.http.envelope import handle_record_error, ok_bytes
from service.http.request_body import decode_json, decode_json_object, read_json_body
from service.internals import unproxied
from service.observe.sentry import remember_plates
from service.predictions.rows import failed_row, scored_row
from service.state import ServiceState, service_state

bp = Blueprint("scoring", __name__, url_prefix="/reg")


@bp.before_request
def require_api_key() -> None:
    """Every scoring request needs a scoring key; a label key gets 403 (it labels, never scores)."""
    state = service_state(current_app)
    state.api_keys.require(other=state.label_keys)


@bp.errorhandler(RecordError)
def record_error(error: RecordError) -> Response:
    """A record that fails validation: its row in the prediction log, then the 400 every endpoint gives."""
    log_failure(service_state(current_app), error)
    return handle_record_error(error)


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
        envelope, (result, record) = remembered
        if state.metrics is not None:
            state.metrics.looked_up(HIT_L1.metric)
        if state.prediction_log is not None:
            _log(state, unproxied(g), result._replace(origin=HIT_L1), record)
        return _answer(envelope, HIT_L1, result.pass_id)
    record = parse_record(decode_json_object(body))
    remember_plates(record.regno_recognize, record.afts_regno_ai)
    result = state.engine.score([record], routing)[0]
    envelope = ok_bytes(result.answer())
    # The record only when the log needs it for the row of a resent pass; the result for the pass id header.
    state.cache.remember_answer(remembered_as, envelope, (result, record if state.prediction_log else None))
    response = _answer(envelope, result.origin, result.pass_id)
    if routing.candidate is not None or state.prediction_log is not None:
        _after_answer(state, routing, record, result, response)
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
    results: list[dict] = [{"error": str(errors[index]), "index": index} if index in errors else {}
                           for index in range(len(raws))]
    for (index, record), result in zip(valid, scored):
        results[index] = result.answer()
    if state.prediction_log is not None:
        request_id, latency_ms, key_name = g.request_id, _elapsed_ms(), getattr(g, "key_name", None)
        # A batch may wait (bounded) for room in the journal rather than drop rows; /reg/'s rows never wait.
        state.prediction_log.log_batch(
            [scored_row(request_id, "batch", result, record, latency_ms, None, key_name)
             for (_, record), result in zip(valid, scored)]
            + [failed_row(request_id, "batch", error.field, error.problem, latency_ms, key_name)
               for error in errors.values()])
    return results


def _after_answer(state: ServiceState, routing, record: Record, result: Scored, response: Response) -> None:
    """Shadow scoring and the pass's log row; with shadow scoring, the row waits for the candidate's score."""
    context, latency_ms = unproxied(g), _elapsed_ms()  # read now: a shadow-scored pass is logged after the request

    def log_row(shadow: Scored | None = None) -> None:
        _log(state, context, result, record, shadow, latency_ms)

    if routing.candidate is None or not state.shadow.after_response(response, routing, record, result, log_row):
        log_row()


def log_failure(state: ServiceState, error: RecordError, endpoint: str = "reg") -> None:
    """Log a pass that failed validation, with the field at fault (when the prediction log is on)."""
    if state.prediction_log is not None:
        state.prediction_log.log(failed_row(g.request_id, endpoint, error.field, error.problem, _elapsed_ms(),
                                            getattr(g, "key_name", None)))


def _log(state: ServiceState, context, result: Scored, record: Record, shadow: Scored | None = None,
         latency_ms: float | None = None, endpoint: str = "reg") -> None:
    """Put the pass's row on the prediction log's queue (when it is on); never waits.

    context is the request's g, read in the view: a shadow-scored pass is logged after the request ended.
    """
    if state.prediction_log is not None:
        latency_ms = _elapsed_ms() if latency_ms is None else latency_ms
        state.prediction_log.log(scored_row(context.request_id, endpoint, result, record, latency_ms, shadow,
                                            getattr(context, "key_name", None)))


def _elapsed_ms() -> float:
    """Milliseconds since the request started (the access line's clock)."""
    return round((time.perf_counter() - g.started) * 1000, 3)


def _answer(envelope: bytes, origin: Origin, pass_id: str) -> Response:
    """The response for an encoded success envelope, saying where its score came from and which pass it was."""
    g.cache_origin = origin
    response = Response(envelope, 200, content_type="application/json")
    response.headers.add("X-Cache", origin.header)
    response.headers.add("X-Pass-Id", pass_id)  # the id a label names the pass by (POST /reg/feedback)
    return response
