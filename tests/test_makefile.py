"""`make run`, the README's first command: development defaults, and the environment always wins."""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest
import requests
from catboost import CatBoostClassifier

from config import DEVELOPMENT_KEY, DEVELOPMENT_LABEL_KEY
from model import BUNDLED_MODEL
from tests.conftest import readme_curl
from loadtest.servers import ROOT, children, free_port, service_env, start, stop, wait_for_workers, wait_until_ready

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _record_post(server, record, key):
    """POST record to the server's /reg/ with key."""
    return requests.post(f"{server.base_url}/reg/", json=record, headers={"x-api-key": key}, timeout=5)


def _make_run(env: dict, log, port: int):
    """Start `make run` with env and wait until it serves with all its workers."""
    server = start(["make", "--no-print-directory", "run"], service_env(**env), log, port)
    try:
        wait_until_ready(server, seconds=120)  # a first run may still be installing
        wait_for_workers(server, int(env["WORKERS"]))
    except Exception:
        stop(server)
        raise
    return server


def test_make_run_answers_the_readme_curl(tmp_path):
    """With only BIND changed, make run takes the README's curl with the development key and gives its answer."""
    record, answer = readme_curl()
    port = free_port()
    server = _make_run({"BIND": f"127.0.0.1:{port}", "WORKERS": "2"}, tmp_path / "log", port)
    try:
        response = _record_post(server, record, DEVELOPMENT_KEY)
        assert response.status_code == 200
        assert response.json() == answer
        assert _record_post(server, record, "other").status_code == 401
    finally:
        stop(server)


def test_environment_wins_over_make_run_defaults(tmp_path, record):
    """API_KEYS, MODEL_PATH, BIND and WORKERS from the environment are the ones used."""
    model = CatBoostClassifier().load_model(str(BUNDLED_MODEL))
    model.get_metadata()["version"] = "from-the-environment"
    model.save_model(str(tmp_path / "env.cbm"))
    port = free_port()
    env = {"BIND": f"127.0.0.1:{port}", "WORKERS": "3", "API_KEYS": "env-key", "MODEL_PATH": str(tmp_path / "env.cbm")}
    server = _make_run(env, tmp_path / "log", port)
    try:
        assert _record_post(server, record, DEVELOPMENT_KEY).status_code == 401
        response = _record_post(server, record, "env-key")
        assert response.status_code == 200
        assert response.json()["body"]["model"] == "from-the-environment"
        (gunicorn_master,) = children(server.process.pid)  # make's one child is gunicorn's master
        assert len(children(gunicorn_master)) == 3
    finally:
        stop(server)


def readme_label() -> tuple[str, dict]:
    """The key and the label the README's POST /reg/feedback example sends."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sent = re.search(r"^curl -s http://127\.0\.0\.1:5000/reg/feedback .*?-H 'x-api-key: ([^']+)'.*?-d '(\{.*?\})'$",
                     text, re.M | re.S)
    assert sent, "the README lost its feedback example"
    return sent.group(1), json.loads(sent.group(2))


def test_make_run_takes_the_readme_label(tmp_path):
    """With PREDICTION_LOG_DIR, make run answers the README's record with the README's pass id and takes the
    README's label with its development label key; its scoring key may not label."""
    record, answer = readme_curl()
    key, label = readme_label()
    assert key == DEVELOPMENT_LABEL_KEY and label["pass_id"] == answer["body"]["pass_id"]
    port = free_port()
    server = _make_run({"BIND": f"127.0.0.1:{port}", "WORKERS": "1", "PREDICTION_LOG_DIR": str(tmp_path / "log")},
                       tmp_path / "log.txt", port)
    try:
        assert _record_post(server, record, DEVELOPMENT_KEY).json() == answer
        deadline = time.monotonic() + 10
        while True:  # the log's writer indexes the pass within 50 ms
            taken = requests.post(f"{server.base_url}/reg/feedback", json=label, headers={"x-api-key": key},
                                  timeout=5)
            if taken.status_code != 422 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert taken.status_code == 200, taken.text
        assert taken.json()["body"]["results"][0]["pass_id"] == label["pass_id"]
        refused = requests.post(f"{server.base_url}/reg/feedback", json=label,
                                headers={"x-api-key": DEVELOPMENT_KEY}, timeout=5)
        assert refused.status_code == 403
    finally:
        stop(server)
