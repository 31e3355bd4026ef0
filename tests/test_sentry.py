"""Sentry: a local receiver stands in for Sentry's endpoint; one forced error, one scrubbed event."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import requests
from flask import Flask

import sentry_sdk
from service.observe.sentry import REDACTED, remember_plates, scrub_event, traces_sampler
from tests.conftest import API_KEY
from loadtest.servers import gunicorn, stop

HEADERS = {"x-api-key": API_KEY, "content-type": "application/json"}


class Receiver(BaseHTTPRequestHandler):
    """Stores every envelope POSTed to it, decompressed, on the server object."""

    def do_POST(self):  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":  # the SDK prefers brotli when the package is installed
            import brotli

            body = brotli.decompress(body)
        self.server.envelopes.append((self.path, body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        """Quiet."""


@pytest.fixture
def receiver():
    """A local HTTP server on a free port standing in for Sentry's ingestion endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.envelopes = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _items(envelopes) -> list[tuple[dict, dict]]:
    """(item header, item payload) for every item of every envelope."""
    items = []
    for _, body in envelopes:
        lines = body.split(b"\n")
        for header_line, payload_line in zip(lines[1::2], lines[2::2]):
            if header_line.strip():
                items.append((json.loads(header_line), json.loads(payload_line) if payload_line.strip() else {}))
    return items


def _strings(value):
    """Every string inside a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.mark.gunicorn
def test_forced_error_reaches_sentry_once_without_plates(receiver, record, tmp_path):
    """A forced error in a worker gives exactly one event, tagged, with no plate and no body; 4xx give none."""
    port = receiver.server_address[1]
    env = {"API_KEYS": API_KEY, "SENTRY_DSN": f"http://publickey@127.0.0.1:{port}/1", "SENTRY_DEBUG_ROUTE": "true"}
    with gunicorn(env, tmp_path / "log", workers=2) as server:
        url = server.base_url
        assert requests.post(f"{url}/reg/", data=orjson.dumps(dict(record, direction=7)), headers=HEADERS).status_code == 400
        plain = {"x-api-key": API_KEY, "content-type": "text/plain"}
        assert requests.post(f"{url}/reg/", data=orjson.dumps(record), headers=plain).status_code == 415
        assert requests.post(f"{url}/reg/", data=orjson.dumps(record), headers={"content-type": "application/json"}).status_code == 401
        assert requests.get(f"{url}/nowhere").status_code == 404
        forced = requests.post(f"{url}/debug/sentry", data=orjson.dumps(record), headers=HEADERS)
        assert forced.status_code == 500
        assert forced.json() == {"body": "internal error", "status": "fail"}
        deadline = time.monotonic() + 15
        while not any(header.get("type") == "event" for header, _ in _items(receiver.envelopes)):
            assert time.monotonic() < deadline, "no event reached the receiver"
            time.sleep(0.1)
        stop(server)  # workers flush on exit: anything else queued arrives now
    events = [payload for header, payload in _items(receiver.envelopes) if header.get("type") == "event"]
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["endpoint"] == "debug.sentry_test"
    assert event["tags"]["model_version"] == "regno-sim-1"
    assert event["release"].endswith("+regno-sim-1")
    assert event["environment"] == "production"
    assert event["exception"]["values"][-1]["type"] == "ForcedError"
    assert REDACTED in event["exception"]["values"][-1]["value"]
    assert "data" not in event.get("request", {})
    raw = b"".join(body for _, body in receiver.envelopes)
    for secret in (record["afts_regno_ai"], record["regno_recognize"], API_KEY):
        assert secret.encode() not in raw
        assert not any(secret in text for _, payload in _items(receiver.envelopes) for text in _strings(payload))


def test_scrub_event_drops_bodies_and_redacts_plates():
    """Bodies, cookies, query strings and unsafe headers go; the request's plates are redacted everywhere."""
    app = Flask(__name__)
    event = {
        "request": {"data": '{"afts_regno_ai": "А812НН790"}', "cookies": "c=1", "query_string": "plate=А812НН790",
                    "headers": {"X-Api-Key": "secret", "Content-Type": "application/json", "X-Request-ID": "abc"}},
        "exception": {"values": [{"value": "bad А812НН790 vs А812НН79_"}]},
        "breadcrumbs": {"values": [{"message": "saw А812НН79_"}]},
    }
    with app.test_request_context():
        remember_plates("А812НН79_", "А812НН790")
        scrubbed = scrub_event(event)
    assert scrubbed["request"] == {"headers": {"Content-Type": "application/json", "X-Request-ID": "abc"}}
    assert scrubbed["exception"]["values"][0]["value"] == f"bad {REDACTED} vs {REDACTED}"
    assert scrubbed["breadcrumbs"]["values"][0]["message"] == f"saw {REDACTED}"


def test_health_and_metrics_are_never_traced():
    """The sampler gives 0 for probes and scrapes, the configured rate elsewhere."""
    sample = traces_sampler(0.25)
    assert sample({"wsgi_environ": {"PATH_INFO": "/health/ready"}}) == 0.0
    assert sample({"wsgi_environ": {"PATH_INFO": "/metrics"}}) == 0.0
    assert sample({"wsgi_environ": {"PATH_INFO": "/reg/"}}) == 0.25


def test_sentry_is_off_without_dsn(settings):
    """No SENTRY_DSN, no SDK."""
    from service.observe.sentry import init_sentry

    assert init_sentry(settings, "v") is False
    assert sentry_sdk.get_client().is_active() is False
