"""One JSON line per request: method, endpoint, status, duration, cache result and request id."""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
# A caller's request id is echoed only when it is short and plain, so logs cannot be forged through it.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

log = logging.getLogger("regno.access")


def _start() -> None:
    """Note the start time and the request id (the caller's, or a new one)."""
    g.started = time.perf_counter()
    given = request.headers.get(HEADER, "")
    g.request_id = given if _SAFE_ID.fullmatch(given) else uuid.uuid4().hex


def _finish(response: Response) -> Response:
    """Echo the request id and write the request's log line."""
    response.headers[HEADER] = g.request_id
    if log.isEnabledFor(logging.INFO):
        log.info(orjson.dumps({
            "ts": round(time.time(), 3),
            "method": request.method,
            "endpoint": request.endpoint,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.started) * 1000, 3),
            "cache": g.get("cache_result"),
            "request_id": g.request_id,
        }).decode())
    return response


def init_app(app: Flask) -> None:
    """Log every request of app."""
    app.before_request(_start)
    app.after_request(_finish)
