"""The feedback blueprint: POST /reg/feedback takes true plates of answered passes (labels); a label key needed.

Only label keys (LABEL_API_KEYS) label: a scoring key gets 403, and so does every key when none is set.

The view reads the body and writes the envelope; service/quality/feedback.py checks, matches, stores
and counts each label.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from model.records import json_kind
from service.http.envelope import fail, ok
from service.http.request_body import decode_json, read_json_body
from service.quality.feedback import (ACCEPTED, AMBIGUOUS, DUPLICATE, MALFORMED, NOT_STORED, UNCORRECTABLE, UNKNOWN,
                                      take)
from service.state import service_state

bp = Blueprint("feedback", __name__, url_prefix="/reg")

#: The status of a one-label request that was refused, by the reason; in a batch each label has its own result.
REFUSAL_STATUS = {MALFORMED: 400, UNKNOWN: 422, AMBIGUOUS: 409, DUPLICATE: 409, UNCORRECTABLE: 409, NOT_STORED: 503}


@bp.before_request
def require_label_key() -> None:
    """Sending labels needs a label key; a scoring key gets 403."""
    state = service_state(current_app)
    state.label_keys.require(other=state.api_keys)


@bp.post("/feedback")
def feedback():
    """Take one label, a JSON array of them, or {"labels": [...]}: one result per label, in order.

    One label (an object) is answered 200 with its result, or its refusal's status (400, 422, 409, 503).
    "accepted" counts corrections too.
    """
    state = service_state(current_app)
    if state.pass_index is None:
        return fail("POST /reg/feedback needs the prediction log: set PREDICTION_LOG_DIR", 404)
    request.max_content_length = state.settings.batch_request_max_bytes
    body = decode_json(read_json_body(request))
    single = isinstance(body, dict) and "labels" not in body
    raws = [body] if single else labels_of(body, state.settings.batch_request_max_records)
    results = take(raws, state.pass_index, state.prediction_log, state.engine.thresholds(state.routing), state.metrics,
                   key_name=g.key_name, skew_s=state.settings.label_clock_skew_s,
                   index_wait_s=state.settings.label_pass_wait_s)
    if single and results[0]["status"] != ACCEPTED:  # one label: its refusal is the answer's status
        return fail(results[0]["message"], REFUSAL_STATUS[results[0]["error"]])
    accepted = sum(result["status"] == ACCEPTED for result in results)
    return ok({"accepted": accepted, "rejected": len(results) - accepted, "results": results})


def labels_of(value: Any, limit: int) -> list:
    """The labels of a batch body: a JSON array, or an object whose "labels" is one; 413 past limit."""
    if isinstance(value, dict):
        value = value["labels"]
    if not isinstance(value, list):
        raise BadRequest(f'labels must be a JSON object, an array of them or {{"labels": [...]}}, '
                         f"got {json_kind(value)}")
    if len(value) > limit:
        raise RequestEntityTooLarge(f"one request takes at most {limit} labels, got {len(value)}")
    return value
