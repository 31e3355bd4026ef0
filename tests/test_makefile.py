"""`make run`, the README's first command: development defaults, and the environment always wins."""

from __future__ import annotations

import shutil

import pytest
import requests
from catboost import CatBoostClassifier

from config import DEVELOPMENT_KEY
from model import BUNDLED_MODEL
from tests.conftest import readme_curl
from loadtest.servers import children, free_port, service_env, start, stop, wait_for_workers, wait_until_ready

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
