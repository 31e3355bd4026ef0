"""One JSON log line per request (service/access_log.py)."""

from __future__ import annotations

import json
import logging

from tests.conftest import API_KEY


def _lines(caplog) -> list[dict]:
    """The access lines captured, decoded."""
    return [json.loads(record.getMessage()) for record in caplog.records if record.name == "regno.access"]


def test_one_json_line_per_request(app, caplog, record):
    """Method, endpoint, status, duration, cache result and request id; no plate."""
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="regno.access"):
        response = client.post("/reg/", json=record, headers={"x-api-key": API_KEY})
        client.get("/health/live")
    scored, health = _lines(caplog)
    assert scored["method"] == "POST" and scored["endpoint"] == "scoring.score_one" and scored["status"] == 200
    assert scored["cache"] in ("miss", "hit-l1")
    assert scored["duration_ms"] > 0
    assert scored["request_id"] == response.headers["X-Request-ID"]
    assert health["endpoint"] == "health.live" and health["cache"] is None
    assert not any(record["afts_regno_ai"] in message.getMessage() for message in caplog.records)


def test_request_id_is_echoed_or_made(app, caplog):
    """A plain caller id is echoed; a missing or unsafe one is replaced by a fresh id."""
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="regno.access"):
        given = client.get("/health/live", headers={"X-Request-ID": "pass-42:retry.1"})
        unsafe = client.get("/health/live", headers={"X-Request-ID": 'x" forged {"status": 200}'})
        missing = client.get("/health/live")
    assert given.headers["X-Request-ID"] == "pass-42:retry.1"
    assert unsafe.headers["X-Request-ID"] != 'x" forged {"status": 200}' and len(unsafe.headers["X-Request-ID"]) == 32
    assert missing.headers["X-Request-ID"] != unsafe.headers["X-Request-ID"]
    assert [line["request_id"] for line in _lines(caplog)][0] == "pass-42:retry.1"
