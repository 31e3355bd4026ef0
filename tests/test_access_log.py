"""One JSON line per request on stderr (service/observe/access_log.py)."""

from __future__ import annotations

import json
from dataclasses import replace

from config import key_name
from service import create_app
from tests.conftest import API_KEY, LABEL_KEY, LABEL_KEY_NAME


def _lines(capfd) -> list[dict]:
    """The access lines written to stderr, decoded."""
    return [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith('{"ts"')]


def test_one_json_line_per_request(app, capfd, record):
    """Time, method, endpoint, status, duration, cache result and request id; no plate."""
    client = app.test_client()
    capfd.readouterr()
    response = client.post("/reg/", json=record, headers={"x-api-key": API_KEY})
    client.get("/health/live")
    err = capfd.readouterr().err
    scored, health = [json.loads(line) for line in err.splitlines() if line.startswith('{"ts"')]
    assert scored["method"] == "POST" and scored["endpoint"] == "scoring.score_one" and scored["status"] == 200
    assert scored["cache"] in ("miss", "hit-l1")
    assert scored["duration_ms"] > 0 and scored["ts"] > 1.7e9
    assert scored["request_id"] == response.headers["X-Request-ID"]
    assert health["endpoint"] == "health.live" and health["cache"] is None
    assert record["afts_regno_ai"] not in err


def test_request_id_is_echoed_or_made(app, capfd):
    """A plain caller id is echoed; a missing or unsafe one is replaced by a fresh id."""
    client = app.test_client()
    capfd.readouterr()
    given = client.get("/health/live", headers={"X-Request-ID": "pass-42:retry.1"})
    unsafe = client.get("/health/live", headers={"X-Request-ID": 'x" forged {"status": 200}'})
    missing = client.get("/health/live")
    assert given.headers["X-Request-ID"] == "pass-42:retry.1"
    assert unsafe.headers["X-Request-ID"] != 'x" forged {"status": 200}' and len(unsafe.headers["X-Request-ID"]) == 32
    assert missing.headers["X-Request-ID"] != unsafe.headers["X-Request-ID"]
    assert [line["request_id"] for line in _lines(capfd)][0] == "pass-42:retry.1"


def test_log_level_above_info_turns_access_lines_off(settings, capfd):
    """LOG_LEVEL=WARNING writes no access lines, but still echoes request ids."""
    app = create_app(replace(settings, log_level="WARNING"))
    capfd.readouterr()
    response = app.test_client().get("/health/live")
    assert response.headers["X-Request-ID"]
    assert _lines(capfd) == []


def test_the_line_names_the_key_never_the_key_itself(settings, tmp_path, capfd, record):
    """The access line carries the name of the key presented (a label key's own, a bare scoring key's hash name)."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path))
    client = app.test_client()
    capfd.readouterr()
    client.post("/reg/", json=record, headers={"x-api-key": API_KEY})
    client.post("/reg/feedback", json={"pass_id": "ffffffffffffffff", "true_regno": "А1"},
                headers={"x-api-key": LABEL_KEY})
    client.post("/reg/feedback", json=[], headers={"x-api-key": API_KEY})  # a scoring key: 403, still named
    client.get("/health/live")
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith('{"ts"')]
    assert [(line["status"], line["key"]) for line in lines] == [(200, key_name(API_KEY)), (422, LABEL_KEY_NAME),
                                                                 (403, key_name(API_KEY)), (200, None)]
    assert API_KEY not in err and LABEL_KEY not in err
