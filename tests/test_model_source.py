"""Models from a source: verification, S3 through moto's real server, the syncer, outages, two gunicorns under load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
from catboost import CatBoostClassifier, Pool

from model import BUNDLED_MODEL
from model.registry import CANDIDATE, CURRENT, METADATA_FILE, MODEL_FILE, PREVIOUS, describe, read_pointer
from model.sources import SourceOptions, open_source
from model.lifecycle.sync import ModelSyncer, read_status
from model.lifecycle.verify import Refused, verify
from service import create_app
from tests.conftest import API_KEY, ApiClient
from loadtest.servers import ROOT, Moto, gunicorn, serve, wait_for_line
from tests.test_metrics import _samples
from tests.test_sentry import _items, receiver  # noqa: F401 - a fixture
from tests.test_model_swap import second_model  # noqa: F401 - a fixture

#: Credentials of the S3 tests: boto3 takes them from the environment; none may show anywhere we write.
AWS = {"AWS_ACCESS_KEY_ID": "AKIAREGNOTESTKEY0001", "AWS_SECRET_ACCESS_KEY": "regno-test-secret-never-shown",
       "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's standalone S3 server for the module."""
    with Moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3(moto, monkeypatch) -> str:
    """A new bucket on the moto server; its s3:// URI with a prefix."""
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    bucket = f"models-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/plates"


@pytest.fixture(scope="session")
def wrong_features(tmp_path_factory) -> Path:
    """A CatBoost model that loads but declares features the contract does not build."""
    rng = np.random.default_rng(7)
    data = rng.random((200, 2))
    model = CatBoostClassifier(iterations=5, verbose=False, random_seed=7)
    model.fit(Pool(data, (data[:, 0] > 0.5).astype(int), feature_names=["speed", "lane"]))
    path = tmp_path_factory.mktemp("wrong") / "wrong.cbm"
    model.save_model(str(path))
    return path


def options(moto) -> SourceOptions:
    """Options of a source on the moto server, quick to fail."""
    return SourceOptions(timeout_s=1.0, s3_endpoint=moto.url)


def bucket_of(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of an s3:// URI."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def regno_model(*args: str, env: dict) -> subprocess.CompletedProcess:
    """Run regno-model (its module, as the console script does) with env added."""
    return subprocess.run([sys.executable, "-m", "model.lifecycle.manage", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_verify_refuses_each_failure_with_its_reason(tmp_path, wrong_features):
    """Checksum, unloadable, features and probe each refuse with their reason; no checksum is said, not refused."""
    published = describe(BUNDLED_MODEL)
    good = verify(BUNDLED_MODEL, published)
    assert good.checksum_recorded and good.sha256 == published["sha256"]
    assert good.probe_positive == published["probe_positive"]
    assert verify(BUNDLED_MODEL, {}).checksum_recorded is False
    truncated = tmp_path / "truncated.cbm"
    truncated.write_bytes(BUNDLED_MODEL.read_bytes()[:5000])
    cases = {
        "checksum": (BUNDLED_MODEL, {**published, "sha256": "0" * 64}),
        "unloadable": (truncated, {}),
        "features": (wrong_features, {}),
        "probe": (BUNDLED_MODEL, {**published, "probe_positive": 0.123}),
    }
    for reason, (path, recorded) in cases.items():
        with pytest.raises(Refused) as refused:
            verify(path, recorded)
        assert refused.value.reason == reason, refused.value


def test_a_folder_source_round_trip(tmp_path, second_model):  # noqa: F811 - fixture
    """Publish, promote and roll back in a folder; the syncer follows into its own MODELS_DIR."""
    source_dir, cache = tmp_path / "source", tmp_path / "cache"
    assert regno_model("publish", str(BUNDLED_MODEL), "--to", str(source_dir), "--version", "v1", "--current",
                       env={}).stdout.strip() == "v1"
    assert regno_model("publish", str(second_model), "--to", str(source_dir), "--version", "v2", "--candidate",
                       env={}).returncode == 0
    syncer = ModelSyncer(open_source(str(source_dir), SourceOptions()), cache)
    assert syncer.sync_once() and read_pointer(cache, CURRENT).name == "v1"
    assert read_pointer(cache, CANDIDATE).name == "v2"
    assert regno_model("promote", "--to", str(source_dir), env={}).stdout.strip() == "v2"
    syncer.sync_once()
    assert (read_pointer(cache, CURRENT).name, read_pointer(cache, CANDIDATE).name) == ("v2", None)
    assert regno_model("rollback", "--to", str(source_dir), env={}).stdout.strip() == "v1"
    syncer.sync_once()
    assert read_pointer(cache, CURRENT).name == "v1"
    shown = json.loads(regno_model("show", "--to", str(source_dir), env={}).stdout)
    assert shown == {"current": "v1", "candidate": None, "previous": "v2"}


def test_s3_publish_promote_and_rollback_round_trip(s3, moto, second_model):  # noqa: F811 - fixture
    """regno-model against S3: metadata last with checksum and probe, pointers moved, nothing overwritten."""
    env = {**AWS, "MODEL_SOURCE": s3, "MODEL_SOURCE_S3_ENDPOINT": moto.url}
    first = regno_model("publish", str(BUNDLED_MODEL), "--version", "v1", "--current", env=env)
    assert (first.returncode, first.stdout.strip()) == (0, "v1"), first.stderr
    assert regno_model("publish", str(second_model), "--version", "v2", "--candidate", env=env).returncode == 0
    assert json.loads(regno_model("show", env=env).stdout) == {"current": "v1", "candidate": "v2", "previous": None}
    assert regno_model("promote", env=env).stdout.strip() == "v2"
    assert json.loads(regno_model("show", env=env).stdout) == {"current": "v2", "candidate": None, "previous": "v1"}
    assert regno_model("rollback", env=env).stdout.strip() == "v1"
    assert json.loads(regno_model("show", env=env).stdout) == {"current": "v1", "candidate": None, "previous": "v2"}
    again = regno_model("publish", str(BUNDLED_MODEL), "--version", "v1", env=env)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    missing = regno_model("promote", "v9", env=env)
    assert missing.returncode == 2 and "holds no version v9" in missing.stderr
    bucket, prefix = bucket_of(s3)
    client = boto3.client("s3", endpoint_url=moto.url)
    metadata = json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/v1/{METADATA_FILE}")["Body"].read())
    assert metadata["sha256"] == describe(BUNDLED_MODEL)["sha256"] and 0 < metadata["probe_positive"] < 1
    for run in (first, again, missing):
        assert AWS["AWS_SECRET_ACCESS_KEY"] not in run.stdout + run.stderr


def _upload(client, bucket: str, prefix: str, version: str, model: bytes, metadata: dict | None) -> None:
    """Put a version's objects by hand, as a broken or foreign publisher would."""
    client.put_object(Bucket=bucket, Key=f"{prefix}/{version}/{MODEL_FILE}", Body=model)
    if metadata is not None:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{version}/{METADATA_FILE}", Body=json.dumps(metadata))


def test_the_syncer_follows_s3_and_refuses_each_bad_model(s3, moto, settings, tmp_path, record, second_model,  # noqa: F811
                                                          wrong_features):
    """Good versions reach the workers; each bad one is refused with its reason, counted, and v2 keeps answering."""
    source, cache = open_source(s3, options(moto)), tmp_path / "cache"
    bucket, prefix = bucket_of(s3)
    client = boto3.client("s3", endpoint_url=moto.url)
    from model.lifecycle.manage import promote, publish

    publish(source, BUNDLED_MODEL, "v1", CURRENT)
    syncer = ModelSyncer(source, cache)
    assert syncer.sync_once()
    app = create_app(replace(settings, models_dir=cache))
    api, state = ApiClient(app.test_client()), app.extensions["regno"]
    assert api.post(json=record).get_json()["body"]["model"] == "v1"
    publish(source, second_model, "v2", CANDIDATE)
    promote(source)
    assert syncer.sync_once() and read_pointer(cache, CURRENT).name == "v2"
    assert state.watcher.check() is True
    assert api.post(json=record).get_json()["body"]["model"] == "v2"

    publish(source, BUNDLED_MODEL, "tampered")  # then its file is replaced behind the publisher's back
    client.put_object(Bucket=bucket, Key=f"{prefix}/tampered/{MODEL_FILE}", Body=second_model.read_bytes())
    _upload(client, bucket, prefix, "truncated", BUNDLED_MODEL.read_bytes()[:4000], {"version": "truncated"})
    _upload(client, bucket, prefix, "wrong-features", wrong_features.read_bytes(), {"version": "wrong-features"})
    _upload(client, bucket, prefix, "changed-probe", BUNDLED_MODEL.read_bytes(),
            {**describe(BUNDLED_MODEL), "version": "changed-probe", "probe_positive": 0.25})
    bad = {"tampered": "checksum", "truncated": "unloadable", "wrong-features": "features", "changed-probe": "probe",
           "deleted": "missing"}
    for version, reason in bad.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/current", Body=version.encode())
        assert syncer.sync_once() is True  # the source answered; the model did not pass
        assert read_pointer(cache, CURRENT).name == "v2", version
        assert not (cache / version).exists()
        assert state.watcher.check() is False
        assert api.post(json=record).get_json()["body"]["model"] == "v2"
        assert syncer.status["refused"][-1]["reason"] == reason, syncer.status["refused"][-1]
    assert syncer.sync_once()  # the same refused version is neither fetched nor counted again
    status = read_status(cache)
    assert status["refusals"] == {reason: 1 for reason in bad.values()}
    assert status["source_versions"] == {"current": "deleted", "candidate": None}
    state.watcher.check()  # the watcher mirrors the status into the metrics and /health
    samples = _samples(app)
    for reason in bad.values():
        assert samples[("regno_model_sync_refusals_total", (("reason", reason),))] == 1
    assert samples[("regno_model_source_version_info", (("pointer", "current"), ("version", "deleted")))] == 1
    assert samples[("regno_model_source_info", (("kind", "s3"), ("source", s3)))] == 1
    assert samples[("regno_model_sync_last_success_timestamp_seconds", ())] == pytest.approx(time.time(), abs=30)
    health = api.get("/health").get_json()["body"]["model_source"]
    assert health["state"] == "in sync" and health["last_refused"]["reason"] == "missing"

    promote(source, "v1")  # a good version again: followed at once
    assert syncer.sync_once() and read_pointer(cache, CURRENT).name == "v1"
    assert state.watcher.check() is True
    assert api.post(json=record).get_json()["body"]["model"] == "v1"
    assert read_pointer(cache, PREVIOUS).name is None  # `previous` lives at the source only
    everything = json.dumps(status) + json.dumps(api.get("/health").get_json())
    assert AWS["AWS_SECRET_ACCESS_KEY"] not in everything and AWS["AWS_ACCESS_KEY_ID"] not in everything


def regno_sync(*args: str, env: dict) -> subprocess.Popen:
    """Start regno-sync (its module) with env added; stderr captured."""
    return subprocess.Popen([sys.executable, "-m", "service.lifecycle.sync_main", *args], cwd=ROOT,
                            env={**os.environ, **env}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def test_the_source_down_at_start_warm_cold_and_mid_run(s3, moto, settings, tmp_path, second_model):  # noqa: F811
    """Warm: starts on the cache and says so. Cold: waits with one line, then syncs once back. Mid-run: catches up."""
    source = open_source(s3, options(moto))
    from model.lifecycle.manage import promote, publish

    publish(source, BUNDLED_MODEL, "v1", CURRENT)
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    env = {**AWS, "MODEL_SOURCE": s3, "MODEL_SOURCE_S3_ENDPOINT": moto.url, "MODEL_SOURCE_TIMEOUT_S": "1",
           "MODEL_SYNC_S": "0.5"}
    assert regno_sync("--once", env={**env, "MODELS_DIR": str(warm)}).wait(60) == 0
    moto.pause()
    try:
        once = regno_sync("--once", env={**env, "MODELS_DIR": str(warm)})
        assert once.wait(60) == 0  # the source is away, the cache holds a verified model: start on it
        warm_log = once.stderr.read()
        assert "sync failed (source)" in warm_log
        status = read_status(warm)
        assert status["failures"]["source"] == 1 and status["last_error"]
        app = create_app(replace(settings, models_dir=warm))
        health = ApiClient(app.test_client()).get("/health").get_json()["body"]
        assert health["model"]["version"] == "v1"
        assert health["model_source"]["state"] == "source unreachable: serving the cached model"

        waiting = regno_sync("--until-ready", env={**env, "MODELS_DIR": str(cold)})
        time.sleep(6)
        assert waiting.poll() is None  # no model: it waits, and the service it guards does not start
    finally:
        moto.resume()
    assert waiting.wait(60) == 0  # the source is back: the first verified model ends the wait
    cold_log = waiting.stderr.read()
    assert cold_log.count("no verified model in") == 1, cold_log  # one clear line, not one per poll
    assert read_pointer(cold, CURRENT).name == "v1"

    failed_before = read_status(warm)["failures"]["source"]
    running = regno_sync(env={**env, "MODELS_DIR": str(warm)})
    try:
        moto.pause()
        deadline = time.monotonic() + 30
        while read_status(warm)["failures"]["source"] < failed_before + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        moto.resume()
        publish(source, second_model, "v2")
        promote(source, "v2")
        deadline = time.monotonic() + 30
        while read_pointer(warm, CURRENT).name != "v2" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert read_pointer(warm, CURRENT).name == "v2"
        assert read_status(warm)["failures"]["source"] >= failed_before + 2  # counted while it was away
    finally:
        running.terminate()
        running_log = running.stderr.read()
        running.wait(30)
    for text in (warm_log, cold_log, running_log):
        assert AWS["AWS_SECRET_ACCESS_KEY"] not in text and AWS["AWS_ACCESS_KEY_ID"] not in text


@pytest.mark.gunicorn
def test_two_instances_follow_one_source_under_load(s3, moto, tmp_path, simulated_records, second_model):  # noqa: F811
    """Two gunicorns, each with its own MODELS_DIR and syncer: a promotion reaches every worker, a bad model none,
    and no request fails."""
    source = open_source(s3, options(moto))
    from model.lifecycle.manage import promote, publish

    publish(source, BUNDLED_MODEL, "v1", CURRENT)
    publish(source, second_model, "v2")
    bucket, prefix = bucket_of(s3)
    client = boto3.client("s3", endpoint_url=moto.url)
    publish(source, BUNDLED_MODEL, "corrupt")
    client.put_object(Bucket=bucket, Key=f"{prefix}/corrupt/{MODEL_FILE}", Body=b"not a model")
    env = {**AWS, "API_KEYS": API_KEY, "MODEL_SOURCE": s3, "MODEL_SOURCE_S3_ENDPOINT": moto.url, "MODEL_SYNC_S": "1",
           "MODEL_POLL_S": "0.5", "MODEL_SOURCE_TIMEOUT_S": "2", "CACHE_L1_SIZE": "0"}
    answers, failures, stop = [], [], threading.Event()

    def post_until_stopped(server, offset):
        with requests.Session() as session:
            index = offset
            while not stop.is_set():
                try:
                    response = session.post(f"{server.base_url}/reg/", timeout=10, headers={"x-api-key": API_KEY},
                                            json=simulated_records[index % len(simulated_records)])
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        answers.append((time.monotonic(), server.base_url, response.json()["body"]["model"]))
                except requests.RequestException as error:
                    failures.append(repr(error))
                index += 1

    with gunicorn({**env, "MODELS_DIR": str(tmp_path / "a")}, tmp_path / "a.log", workers=2) as first, \
            gunicorn({**env, "MODELS_DIR": str(tmp_path / "b")}, tmp_path / "b.log", workers=2) as second:
        for server in (first, second):
            wait_for_line(server, "model syncer:")  # the syncer beside the workers, started once they are up
        threads = [threading.Thread(target=post_until_stopped, args=(server, offset))
                   for offset, server in enumerate((first, second, first, second))]
        for thread in threads:
            thread.start()
        time.sleep(1)
        promote(source, "v2")
        promoted_at = time.monotonic()
        time.sleep(8)  # MODEL_SYNC_S + MODEL_POLL_S, and room for a loaded machine
        client.put_object(Bucket=bucket, Key=f"{prefix}/current", Body=b"corrupt")
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join()
        metrics = [requests.get(f"{server.base_url}/metrics", timeout=5).text for server in (first, second)]
        health = [requests.get(f"{server.base_url}/health", timeout=5).json()["body"] for server in (first, second)]
        logs = first.output() + second.output()

    assert failures == []
    assert {model for _, _, model in answers} == {"v1", "v2"}
    last_v1 = max(at for at, _, model in answers if model == "v1") - promoted_at
    assert last_v1 < 1 + 0.5 + 5, last_v1  # MODEL_SYNC_S + MODEL_POLL_S, with room for a loaded machine
    late = [url for at, url, model in answers if at > promoted_at + last_v1]
    assert set(late) == {first.base_url, second.base_url}  # both answered on, with v2, and none with the corrupt one
    for text in metrics:
        assert 'regno_model_sync_refusals_total{reason="checksum"} 1.0' in text
        assert 'regno_model_source_version_info{pointer="current",version="corrupt"} 1.0' in text
    assert [h["model"]["version"] for h in health] == ["v2", "v2"]
    assert all(h["model_source"]["last_refused"]["version"] == "corrupt" for h in health)
    assert logs.count("current corrupt refused (checksum)") == 2  # once per instance's syncer
    for text in (logs, *metrics, json.dumps(health)):
        assert AWS["AWS_SECRET_ACCESS_KEY"] not in text and AWS["AWS_ACCESS_KEY_ID"] not in text


def test_make_serve_runs_the_syncer_for_a_remote_source(s3, moto, tmp_path, record, second_model):  # noqa: F811
    """make serve's stack (nginx before gunicorn) on an s3:// source: it starts on the verified model, /health says
    where it came from, and a promotion at the source reaches the answers through the proxy."""
    source = open_source(s3, options(moto))
    from model.lifecycle.manage import promote, publish

    publish(source, BUNDLED_MODEL, "v1", CURRENT)
    publish(source, second_model, "v2", CANDIDATE)
    env = {**AWS, "API_KEYS": API_KEY, "MODEL_SOURCE": s3, "MODEL_SOURCE_S3_ENDPOINT": moto.url, "MODEL_SYNC_S": "1",
           "MODEL_POLL_S": "0.5", "MODELS_DIR": str(tmp_path / "models"), "CACHE_L1_SIZE": "0"}

    def served(stack) -> str:
        answer = requests.post(f"{stack.base_url}/reg/", json=record, headers={"x-api-key": API_KEY}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["body"]["model"]

    with serve(env, tmp_path / "stack.log") as stack:
        assert served(stack) == "v1"
        health = requests.get(f"{stack.internal_url}/health", timeout=10).json()["body"]["model_source"]
        assert (health["kind"], health["state"], health["source_versions"]) == ("s3", "in sync", {"current": "v1",
                                                                                               "candidate": "v2"})
        promote(source)
        # Each worker swaps on its own poll: done when ten answers in a row (both workers) come from v2.
        deadline, in_a_row = time.monotonic() + 15, 0
        while in_a_row < 10 and time.monotonic() < deadline:
            in_a_row = in_a_row + 1 if served(stack) == "v2" else 0
        assert in_a_row == 10
    log = (tmp_path / "stack.log").read_text(encoding="utf-8")
    assert "model syncer: " + s3 in log
    assert AWS["AWS_SECRET_ACCESS_KEY"] not in log and AWS["AWS_ACCESS_KEY_ID"] not in log


def test_a_refusal_reaches_sentry_with_its_reason(tmp_path, receiver):
    """regno-sync with SENTRY_DSN (a local receiver): a damaged current model is one warning event, tagged with
    the check it failed, the pointer and the version; the syncer exits 1 with nothing verified to serve."""
    source = tmp_path / "source"
    from model.lifecycle.manage import publish

    publish(open_source(str(source), SourceOptions()), BUNDLED_MODEL, "v1", CURRENT)
    (source / "v1" / MODEL_FILE).write_bytes(BUNDLED_MODEL.read_bytes()[:4000])
    dsn = f"http://public@127.0.0.1:{receiver.server_address[1]}/1"
    once = regno_sync("--once", env={"MODEL_SOURCE": str(source), "MODELS_DIR": str(tmp_path / "models"),
                                     "SENTRY_DSN": dsn})
    assert once.wait(60) == 1, once.stderr.read()
    events = [payload for header, payload in _items(receiver.envelopes) if header.get("type") == "event"]
    assert len(events) == 1, events
    event = events[0]
    assert event["level"] == "warning" and "model v1 refused as current (checksum)" in event["message"]
    assert {key: event["tags"][key] for key in ("refusal_reason", "pointer", "refused_version")} == {
        "refusal_reason": "checksum", "pointer": "current", "refused_version": "v1"}
