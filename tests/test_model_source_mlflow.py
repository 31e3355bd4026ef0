"""Models from an MLflow registry: a real `mlflow server` (SQLite, local artifacts) and MLflow's own client."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from model import BUNDLED_MODEL
from model.lifecycle.manage import promote, publish, rollback
from model.registry import CANDIDATE, CURRENT, PREVIOUS, read_pointer
from model.scorer import Scorer
from model.sources import SourceOptions, open_source
from model.lifecycle.sync import ModelSyncer, read_status
from tests.conftest import API_KEY
from loadtest.servers import ROOT, Mlflow, gunicorn, wait_for_line
from tests.test_model_swap import second_model  # noqa: F401 - a fixture

mlflow = pytest.importorskip("mlflow", reason="MLflow's client is in the test extra: make test installs it")
from mlflow.tracking import MlflowClient  # noqa: E402 - after the check above

#: A password in the tracking URI: MLflow sends it as basic auth; nothing we write may show it.
PASSWORD = "regno-mlflow-password-never-shown"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real MLflow tracking server for the module."""
    with Mlflow(tmp_path_factory.mktemp("mlflow")) as store:
        yield store


@pytest.fixture
def registry(server) -> tuple[str, SourceOptions]:
    """A new registered model's models:/ URI, and options naming the server with a user and password."""
    authority = server.url.removeprefix("http://")
    options = SourceOptions(timeout_s=5.0, mlflow_tracking_uri=f"http://regno:{PASSWORD}@{authority}")
    return f"models:/plates-{uuid.uuid4().hex[:8]}", options


def test_publish_promote_and_rollback_move_the_aliases(registry, second_model, tmp_path):  # noqa: F811 - fixture
    """Publish registers a version with its checksum tags; promote and rollback move champion and challenger."""
    uri, options = registry
    source = open_source(uri, options)
    name = uri.removeprefix("models:/")
    first = publish(source, BUNDLED_MODEL, point=CURRENT)
    second = publish(source, second_model, point=CANDIDATE)
    assert (first, second) == (f"{name}-v1", f"{name}-v2")
    client = MlflowClient(tracking_uri=options.mlflow_tracking_uri)
    tags = client.get_model_version(name, "1").tags
    assert 0 < float(tags["regno.probe_positive"]) < 1 and len(tags["regno.sha256"]) == 64
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "2"

    cache = tmp_path / "cache"
    syncer = ModelSyncer(source, cache)
    assert syncer.sync_once()
    assert (read_pointer(cache, CURRENT).name, read_pointer(cache, CANDIDATE).name) == (first, second)
    assert Scorer.load(cache / second / "model.cbm").score  # the registry's file, verified, loads
    assert promote(source) == second
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_model_version_by_alias(name, "champion-previous").version == "1"
    syncer.sync_once()
    assert (read_pointer(cache, CURRENT).name, read_pointer(cache, CANDIDATE).name) == (second, None)
    assert rollback(source) == first
    syncer.sync_once()
    assert read_pointer(cache, CURRENT).name == first
    assert source.read_pointer(PREVIOUS) == second
    assert read_status(cache)["refusals"] == {}


def test_the_command_line_publishes_to_the_registry(registry, server):
    """regno-model publish --to models:/... with MLFLOW_TRACKING_URI: the version's name on stdout, no password."""
    uri, options = registry
    run = subprocess.run([sys.executable, "-m", "model.lifecycle.manage", "publish", str(BUNDLED_MODEL), "--to", uri,
                          "--current"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                         env={**os.environ, "MLFLOW_TRACKING_URI": options.mlflow_tracking_uri})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{uri.removeprefix('models:/')}-v1"
    assert PASSWORD not in run.stdout + run.stderr


def test_a_model_another_tool_logged_is_taken_as_it_is(registry, tmp_path, caplog):
    """MLflow's CatBoost flavour, no tags of ours: verified without a checksum, and the log says so."""
    uri, options = registry
    name = uri.removeprefix("models:/")
    mlflow.set_tracking_uri(options.mlflow_tracking_uri)
    with mlflow.start_run():
        info = mlflow.catboost.log_model(Scorer.load(BUNDLED_MODEL).model, name="model", registered_model_name=name)
    MlflowClient(tracking_uri=options.mlflow_tracking_uri).set_registered_model_alias(
        name, "champion", info.registered_model_version)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="regno"):
        assert ModelSyncer(open_source(uri, options), cache).sync_once()
    assert read_pointer(cache, CURRENT).name == f"{name}-v1"
    assert read_status(cache)["checked_without_checksum"] == [f"{name}-v1"]
    assert "has no recorded sha256" in caplog.text
    metadata = json.loads((cache / f"{name}-v1" / "metadata.json").read_text())
    assert metadata["checksum_recorded"] is False and metadata["mlflow"]["version"] == "1"


def _serving_the_bundled_model(registry, cache: Path):
    """The bundled model published as champion, and a syncer that has verified it into cache."""
    uri, options = registry
    source = open_source(uri, options)
    publish(source, BUNDLED_MODEL, point=CURRENT)
    syncer = ModelSyncer(source, cache)
    assert syncer.sync_once()
    return source, syncer


def test_an_alias_whose_version_is_deleted_is_refused(registry, second_model, tmp_path, caplog):  # noqa: F811
    """Deleting the champion's version takes its alias with it: refused as missing, the last good model stays."""
    uri, options = registry
    name = uri.removeprefix("models:/")
    cache = tmp_path / "cache"
    _, syncer = _serving_the_bundled_model(registry, cache)
    MlflowClient(tracking_uri=options.mlflow_tracking_uri).delete_model_version(name, "1")
    with caplog.at_level(logging.INFO, logger="regno"):
        assert syncer.sync_once()
    assert read_pointer(cache, CURRENT).name == f"{name}-v1"  # the verified copy keeps serving
    status = read_status(cache)
    assert status["refusals"] == {"missing": 1} and status["source_versions"]["current"] is None
    assert PASSWORD not in caplog.text + json.dumps(status)
    assert status["source"] == f"{uri} at {options.mlflow_tracking_uri.replace(f'regno:{PASSWORD}@', '')}"


def test_the_registry_down_counts_and_catches_up(registry, server, second_model, tmp_path):  # noqa: F811
    """A paused tracking server is a counted failure, the cache serves on, and the next pass catches up."""
    uri, _ = registry
    cache = tmp_path / "cache"
    source, syncer = _serving_the_bundled_model(registry, cache)
    second = publish(source, second_model)
    server.pause()
    try:
        assert syncer.sync_once() is False
    finally:
        server.resume()
    assert read_status(cache)["failures"]["source"] == 1
    assert read_pointer(cache, CURRENT).name == f"{uri.removeprefix('models:/')}-v1"
    promote(source, second)
    assert syncer.sync_once() and read_pointer(cache, CURRENT).name == second
    assert Path(cache / second / "metadata.json").is_file()


def test_a_gunicorn_follows_the_registry_under_load_through_corruption_and_a_restart(
        registry, server, second_model, tmp_path, simulated_records):  # noqa: F811 - fixture
    """gunicorn with its syncer on models:/: champion moves under load; a version whose file was damaged in the
    artifact store is refused; the server killed and started again is counted and caught up; no answer fails."""
    uri, options = registry
    source = open_source(uri, options)
    first = publish(source, BUNDLED_MODEL, point=CURRENT)
    second = publish(source, second_model)
    damaged = publish(source, second_model)
    # The store's copy of that version (a logged model, models:/m-<id>), cut short behind the publisher's back.
    logged = MlflowClient(tracking_uri=options.mlflow_tracking_uri).get_model_version(
        uri.removeprefix("models:/"), damaged.rsplit("-v", 1)[1]).source.rsplit("/", 1)[-1]
    target = next(path for path in (server.folder / "artifacts").rglob("model.cb") if logged in path.parts)
    target.write_bytes(target.read_bytes()[:-100])
    env = {"API_KEYS": API_KEY, "MODEL_SOURCE": uri, "MLFLOW_TRACKING_URI": options.mlflow_tracking_uri,
           "MODELS_DIR": str(tmp_path / "models"), "MODEL_SYNC_S": "1", "MODEL_POLL_S": "0.5",
           "MODEL_SOURCE_TIMEOUT_S": "2", "CACHE_L1_SIZE": "0"}
    answers, failures, stop = [], [], threading.Event()

    def post_until_stopped(base_url: str) -> None:
        with requests.Session() as session:
            for index in itertools.count():
                if stop.is_set():
                    return
                try:
                    record = simulated_records[index % len(simulated_records)]
                    response = session.post(f"{base_url}/reg/", json=record, timeout=10, headers={"x-api-key": API_KEY})
                    if response.status_code == 200:
                        answers.append(response.json()["body"]["model"])
                    else:
                        failures.append(response.text)
                except requests.RequestException as error:
                    failures.append(repr(error))

    def served_only(version: str, seconds: float = 15) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            count = len(answers)
            time.sleep(1.5)  # MODEL_SYNC_S + MODEL_POLL_S
            if answers[count:] and set(answers[count:]) == {version}:
                return True
        return False

    with gunicorn(env, tmp_path / "gunicorn.log", workers=2) as instance:
        wait_for_line(instance, "model syncer:")
        senders = [threading.Thread(target=post_until_stopped, args=(instance.base_url,)) for _ in range(2)]
        for sender in senders:
            sender.start()
        try:
            assert served_only(first)
            promote(source, second)
            assert served_only(second)
            promote(source, damaged)
            wait_for_line(instance, f"current {damaged} refused (checksum)")
            assert served_only(second)
            server.stop()
            time.sleep(3)  # several failed polls
            server.start()
            promote(source, first)
            assert served_only(first)
        finally:
            stop.set()
            for sender in senders:
                sender.join()
        health = requests.get(f"{instance.base_url}/health", timeout=5).json()["body"]
        log = instance.output()
    assert failures == [] and len(answers) > 100
    status = read_status(tmp_path / "models")
    assert status["failures"]["source"] >= 1 and status["refusals"] == {"checksum": 1}
    assert health["model"]["version"] == first and health["model_source"]["state"] == "in sync"
    assert health["model_source"]["last_refused"]["version"] == damaged
    assert PASSWORD not in log + json.dumps(health)


def test_error_messages_lose_the_tracking_uris_user_and_password():
    """What the client says on failure quotes the URL it called: the password and any user:password@ go."""
    from model.sources.mlflow_registry import scrubbed

    uri = f"http://regno:{PASSWORD}@mlflow:5000"
    message = (f"API request to {uri}/api/2.0/mlflow/registered-models/alias failed: Max retries exceeded "
               f"(password {PASSWORD}; also https://other:secret@proxy:3128/)")
    cleaned = scrubbed(message, uri)
    assert PASSWORD not in cleaned and "secret" not in cleaned and "regno:" not in cleaned
    assert "http://mlflow:5000/api/2.0/mlflow/registered-models/alias" in cleaned and "https://proxy:3128/" in cleaned
    assert scrubbed("plain", "http://mlflow:5000") == "plain"


class _Constant(mlflow.pyfunc.PythonModel):
    """A model of another flavour (pyfunc only): what someone might register under our name by mistake."""

    def predict(self, context, model_input: list[float], params=None) -> list[float]:
        """Always 0.5."""
        return [0.5] * len(model_input)


def test_a_model_of_another_flavour_is_refused(registry, tmp_path):
    """A pyfunc model under the champion alias: refused as unloadable, saying it is not CatBoost's flavour."""
    uri, options = registry
    name = uri.removeprefix("models:/")
    cache = tmp_path / "cache"
    _, syncer = _serving_the_bundled_model(registry, cache)
    mlflow.set_tracking_uri(options.mlflow_tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=_Constant(), registered_model_name=name,
                                       pip_requirements=[])
    MlflowClient(tracking_uri=options.mlflow_tracking_uri).set_registered_model_alias(
        name, "champion", info.registered_model_version)
    assert syncer.sync_once()
    assert read_pointer(cache, CURRENT).name == f"{name}-v1"  # the verified CatBoost model keeps serving
    refused = read_status(cache)["refused"][-1]
    assert refused["reason"] == "unloadable" and "CatBoost flavour" in refused["error"], refused
