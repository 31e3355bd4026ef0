"""One JSON line per request on stderr: time, method, endpoint, status, duration, cache result, request id."""

from __future__ import annotations

import os
import re
import sys
import time

import orjson
from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
# A caller's request id is echoed only when it is short and plain, so logs cannot be forged through it.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _start() -> None:
    """Note the start time (the HTTP metrics read it too) and the request id (the caller's, or a new one)."""
    g.started = time.perf_counter()
    given = request.headers.get(HEADER, "")
    g.request_id = given if given and _SAFE_ID.fullmatch(given) else os.urandom(16).hex()


def _echo_id(response: Response) -> Response:
    """Echo the request id."""
    response.headers[HEADER] = g.request_id
    return response


def _line(response: Response) -> bytes:
    """The request's log line."""
    return orjson.dumps({
        "ts": round(time.time(), 3),
        "method": request.method,
        "endpoint": request.endpoint,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - g.started) * 1000, 3),
        "cache": g.get("cache_result"),
        "request_id": g.request_id,
    }, option=orjson.OPT_APPEND_NEWLINE)


def _write_line(response: Response) -> Response:
    """Write the request's line to stderr in one write call.

    Not through the logging module: its record and handler machinery cost a worker 8% of its time under
    load (py-spy); one os.write of a line under PIPE_BUF bytes is also atomic between workers.
    """
    os.write(sys.stderr.fileno(), _line(response))
    return response


def init_app(app: Flask, enabled: bool) -> None:
    """Give every request of app an id, and a log line when enabled (LOG_LEVEL at INFO or below)."""
    app.before_request(_start)
    app.after_request(_echo_id)
    if enabled:
        app.after_request(_write_line)
