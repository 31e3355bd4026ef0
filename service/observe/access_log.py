"""One JSON line per request on stderr: time, method, endpoint, status, duration, cache result, request id, client,
and the name of the API key it presented (service/http/auth.py; never the key itself)."""

from __future__ import annotations

import os
import re
import sys
import time

import orjson
from flask import Flask, Response, g, request

from service.http.auth import environ_key
from service.internals import unproxied

HEADER = "X-Request-ID"
#: A caller's request id is echoed only when it is short and plain, so logs cannot be forged through it; the proxy
#: applies the same rule (service/proxy/nginx_config.py renders it into nginx.conf).
SAFE_ID_PATTERN = r"[A-Za-z0-9._:-]{1,64}"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)


#: The request id header as WSGI names it; read from the environ, which is cheaper than request.headers.
_ENVIRON_KEY = environ_key(HEADER)

# Each hook resolves the request and g proxies once: every attribute read through a proxy costs a lookup,
# and these hooks run on every request (in-process, they were a fifth of a cache hit's cost).


def _start() -> None:
    """Note the start time (the HTTP metrics read it too) and the request id (the caller's, or a new one)."""
    context = unproxied(g)
    context.started = time.perf_counter()
    given = request.environ.get(_ENVIRON_KEY, "")
    context.request_id = given if given and _SAFE_ID.fullmatch(given) else os.urandom(16).hex()


def _echo_id(response: Response) -> Response:
    """Echo the request id."""
    response.headers.add(HEADER, g.request_id)  # add: the view never sets it, so there is nothing to replace
    return response


def _line(response: Response) -> bytes:
    """The request's log line."""
    context, current = unproxied(g), unproxied(request)
    return orjson.dumps({
        "ts": round(time.time(), 3),
        "method": current.method,
        "endpoint": current.endpoint,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - context.started) * 1000, 3),
        "cache": origin.logged if (origin := getattr(context, "cache_origin", None)) else None,
        "request_id": context.request_id,
        # The real client's address behind the proxy (ProxyFix); the caller's own without one.
        "client": current.remote_addr,
        # Whose key it was: its name from API_KEYS or LABEL_API_KEYS; None when no known key was presented.
        "key": getattr(context, "key_name", None),
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
