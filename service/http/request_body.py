"""Reading JSON request bodies: content type, size, JSON, double encoding."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from model.records import json_kind
from service.internals import unproxied


def _is_json(mimetype: str) -> bool:
    """True for application/json and the +json family."""
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def read_body(request: Request) -> bytes:
    """The raw body, at most max_content_length bytes; 413 past that, with or without Content-Length."""
    request = unproxied(request)
    limit = request.max_content_length
    length = request.content_length
    stream = request.environ["wsgi.input"]
    if length is not None:
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        # Read exactly Content-Length from the server's stream: werkzeug's wrapper around it costs more
        # than the read itself (py-spy: 9% of a worker's time on cache hits).
        return stream.read(length) if length else b""
    if limit is not None and request.environ.get("wsgi.input_terminated"):
        # A chunked upload: werkzeug would cut it at the limit without a word, so read one byte more
        # from the server's (self-terminating) stream to tell a body at the limit from a longer one.
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise RequestEntityTooLarge()
        return data
    return request.get_data(cache=False)


def read_json_body(request: Request) -> bytes:
    """The raw body of a JSON request: 415 for another content type, 413 past the size limit."""
    request = unproxied(request)
    # The usual header is exactly this; only other ones pay for werkzeug's header parsing.
    if request.environ.get("CONTENT_TYPE") != "application/json" and not _is_json(request.mimetype):
        shown = request.mimetype or "none"
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {shown}")
    return read_body(request)


def read_json_object(request: Request) -> dict:
    """The request's JSON object; a JSON string holding an object is decoded once more (old clients)."""
    return decode_json_object(read_json_body(request))


def decode_json_object(data: bytes) -> dict:
    """A body's JSON object; a JSON string holding an object is decoded once more (old clients)."""
    value = decode_json(data)
    if not isinstance(value, dict):
        raise BadRequest(f"request body must be a JSON object holding one record, got {json_kind(value)}")
    return value


def decode_json(data: bytes) -> Any:
    """A body's JSON value; a JSON string holding JSON is decoded once more (old clients double-encode)."""
    if not data.strip():
        raise BadRequest("request body is empty; send JSON")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadRequest("request body is a JSON string that does not hold JSON") from None
    return value
