"""The response envelope: {"body": ..., "status": "ok"|"fail"} for every answer, good or bad."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from model.records import RecordError
from service.observe import sentry

log = logging.getLogger("regno")

#: Longest request path echoed back in a 404 message.
_MAX_PATH_SHOWN = 80


def ok_bytes(body: object) -> bytes:
    """A success envelope, encoded."""
    return orjson.dumps({"body": body, "status": "ok"})


def ok(body: object, status: int = 200) -> Response:
    """A success envelope."""
    return Response(ok_bytes(body), status, mimetype="application/json")


def fail(message: str, status: int) -> Response:
    """A failure envelope with a message naming what went wrong."""
    return Response(orjson.dumps({"body": message, "status": "fail"}), status, mimetype="application/json")


def _http_message(error: HTTPException) -> str:
    """A short message for an HTTP error; werkzeug's defaults are written for browsers."""
    if error.code == 404:
        path = request.path if len(request.path) <= _MAX_PATH_SHOWN else request.path[:_MAX_PATH_SHOWN] + "..."
        return f"not found: {path}"
    if error.code == 405:
        allowed = ", ".join(sorted(set(error.valid_methods or ()) - {"HEAD", "OPTIONS"}))
        return f"method {request.method} is not allowed here; use {allowed}"
    if error.code == 413 and error.description == RequestEntityTooLarge.description:  # werkzeug's, not ours
        limit = request.max_content_length
        return f"request body is larger than {limit} bytes" if limit else "request body is too large"
    return error.description or error.name


#: Which part of a scoring request a body-level rejection is counted against.
_BODY_FAILURES = {400: "body", 413: "body", 415: "content_type"}


def _count_validation_failure(field: str) -> None:
    """Count a rejected scoring request by the field at fault."""
    metrics = current_app.extensions["regno"].metrics
    if metrics is not None:
        metrics.validation_failures.labels(field).inc()


def handle_http_error(error: HTTPException) -> Response:
    """Any HTTP error (404, 405, 413, 415, 401, 400 ...) in the fail envelope, keeping its headers."""
    if request.blueprint == "scoring" and error.code in _BODY_FAILURES:
        _count_validation_failure(_BODY_FAILURES[error.code])
    response = fail(_http_message(error), error.code or 500)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_record_error(error: RecordError) -> Response:
    """A record that fails validation: 400 naming the field (counted when it was sent to be scored)."""
    if request.blueprint == "scoring":
        _count_validation_failure(error.field)
    return fail(str(error), 400)


def handle_unexpected(error: Exception) -> Response:
    """A bug: logged with its traceback, answered 500 without details."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    sentry.capture(error)
    return fail("internal error", 500)


def register_error_handlers(app: Flask) -> None:
    """Route every failure through the envelope."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(RecordError, handle_record_error)
    app.register_error_handler(Exception, handle_unexpected)
