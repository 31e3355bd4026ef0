"""Model swaps from the models directory: in process, refusals and rollback; under a real multi-worker gunicorn."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from model import BUNDLED_MODEL
from model.records import parse_record
from model.registry import CANDIDATE, CURRENT, load_folder, publish, write_pointer
from model.scorer import PROBE_RECORD
from service import create_app
from tests.conftest import API_KEY, ApiClient
from loadtest.servers import ROOT, gunicorn
from tests.test_metrics import _samples


@pytest.fixture(scope="session")
def second_model(tmp_path_factory) -> Path:
    """A small model of its own (version tiny-2), trained by the project's script, so answers differ from v1's."""
    path = tmp_path_factory.mktemp("tiny") / "tiny2.cbm"
    subprocess.run([sys.executable, "-m", "training.train", "--rows", "400", "--iterations", "10", "--version", "tiny-2",
                    "--out", str(path)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    return path


@pytest.fixture
def models_dir(tmp_path, second_model) -> Path:
    """A models directory with v1 (the bundled model) current and v2 (the small one) published."""
    publish(BUNDLED_MODEL, tmp_path, "v1")
    publish(second_model, tmp_path, "v2")
    write_pointer(tmp_path, CURRENT, "v1")
    return tmp_path


def test_swap_refusal_and_rollback_in_process(settings, models_dir, record):
    """A new pointer swaps the model; a corrupt folder is refused while the old one serves; rollback is a pointer."""
    app = create_app(replace(settings, models_dir=models_dir))
    client, state = ApiClient(app.test_client()), app.extensions["regno"]
    first = client.post(json=record).get_json()["body"]
    assert first["model"] == "v1"
    assert state.watcher.check() is False  # nothing changed

    write_pointer(models_dir, CURRENT, "v2")
    assert state.watcher.check() is True
    second = client.post(json=record).get_json()["body"]
    expected = load_folder(models_dir / "v2").score(parse_record(record))
    assert (second["model"], second["positive"]) == ("v2", expected.positive)
    assert second["positive"] != first["positive"]

    broken = publish(BUNDLED_MODEL, models_dir, "v3")
    (broken / "model.cbm").write_bytes(b"corrupt")
    write_pointer(models_dir, CURRENT, "v3")
    assert state.watcher.check() is False
    assert client.post(json=record).get_json()["body"]["model"] == "v2"
    refusal = client.get("/health").get_json()["body"]["model_refused"]
    assert refusal["version"] == "v3" and "does not match the checksum" in refusal["error"]
    assert _samples(app)[("regno_model_refusals_total", ())] == 1

    write_pointer(models_dir, CURRENT, "v1")  # rollback: the same operation
    assert state.watcher.check() is True
    assert client.post(json=record).get_json() == {"body": first, "status": "ok"}
    assert _samples(app)[("regno_model_swaps_total", ())] == 2
    assert client.get("/health").get_json()["body"]["model"]["version"] == "v1"


def test_start_up_needs_a_current_pointer(settings, tmp_path):
    """With MODELS_DIR and no `current` pointer, the service refuses to start and says why."""
    from model.scorer import ModelLoadError

    with pytest.raises(ModelLoadError, match="must name the model folder to serve"):
        create_app(replace(settings, models_dir=tmp_path))


@pytest.mark.gunicorn
def test_swap_under_load_in_gunicorn_fails_nothing(models_dir, simulated_records, tmp_path):
    """Mid-run pointer change on 2 workers: zero failures, each answer exactly one model's, all on v2 at the end."""
    models = {name: load_folder(models_dir / name) for name in ("v1", "v2")}
    expected = {name: [scorer.score(parse_record(r)).positive for r in simulated_records]
                for name, scorer in models.items()}
    env = {"API_KEYS": API_KEY, "MODELS_DIR": str(models_dir), "MODEL_POLL_S": "0.2", "CACHE_L1_SIZE": "0"}
    answers, failures, stop = [], [], threading.Event()

    def post_until_stopped(server, offset):
        with requests.Session() as session:
            index = offset
            while not stop.is_set():
                record_index = index % len(simulated_records)
                try:
                    response = session.post(f"{server.base_url}/reg/", json=simulated_records[record_index],
                                            headers={"x-api-key": API_KEY}, timeout=10)
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        answers.append((time.monotonic(), record_index, response.json()["body"]))
                except requests.RequestException as error:
                    failures.append(repr(error))
                index += 1

    with gunicorn(env, tmp_path / "gunicorn.log", workers=2) as server:
        threads = [threading.Thread(target=post_until_stopped, args=(server, offset)) for offset in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        write_pointer(models_dir, CURRENT, "v2")
        swapped_at = time.monotonic()
        time.sleep(2.5)
        stop.set()
        for thread in threads:
            thread.join()
        log = server.output()

    assert failures == []
    assert len(answers) > 100
    for _, record_index, body in answers:
        assert body["positive"] == expected[body["model"]][record_index], body  # one model's answer, never a mix
    assert {body["model"] for _, _, body in answers} == {"v1", "v2"}
    late = [body["model"] for at, _, body in answers if at > swapped_at + 1.5]
    assert late and set(late) == {"v2"}
    assert log.count("models: current v2") == 2  # each worker swapped once


@pytest.fixture
def with_candidate(settings, models_dir):
    """An app serving v1, with v2 as the candidate at a 30% canary share and a full shadow share."""
    write_pointer(models_dir, CANDIDATE, "v2")
    app = create_app(replace(settings, models_dir=models_dir, canary_share=0.3, shadow_share=1.0))
    assert app.extensions["regno"].watcher.check() is True  # what each worker's watcher does first
    return app


def test_canary_share_is_sticky_per_record_and_named_in_the_answer(with_candidate, models_dir):
    """About 30% of passes meet v2, always the same ones: a pass reworded meets its model again."""
    from training.simulate import simulate_records

    client = ApiClient(with_candidate.test_client())
    scorers = {name: load_folder(models_dir / name) for name in ("v1", "v2")}
    records = simulate_records(400, seed=31)
    answers = [client.post(json=record).get_json()["body"] for record in records]
    share = sum(answer["model"] == "v2" for answer in answers) / len(answers)
    assert 0.3 - 4 * (0.21 / 400) ** 0.5 < share < 0.3 + 4 * (0.21 / 400) ** 0.5  # 4 standard deviations
    for record, answer in zip(records[:60], answers):
        assert answer["positive"] == scorers[answer["model"]].score(parse_record(record)).positive
        reworded = dict(reversed(list(record.items())), recognition_accuracy=str(record["recognition_accuracy"]))
        assert client.post(json=reworded).get_json()["body"]["model"] == answer["model"]
    batch = client.post("/reg/batch", json=records[:60]).get_json()["body"]
    assert [result["model"] for result in batch] == [answer["model"] for answer in answers[:60]]
    health = client.get("/health").get_json()["body"]
    assert health["candidate"]["version"] == "v2" and health["candidate"]["canary_share"] == 0.3


def test_shadow_scores_after_the_answer_is_sent(with_candidate, monkeypatch):
    """A slow candidate does not slow the answer: it scores in the response's close, and the metrics compare."""
    import io

    import orjson

    from training.simulate import simulate_records

    state = with_candidate.extensions["regno"]
    candidate = state.routing.candidate.scorer
    slow = candidate.predict_vectors
    monkeypatch.setattr(candidate, "predict_vectors", lambda vectors: time.sleep(0.3) or slow(vectors))
    records = [r for r in simulate_records(40, seed=32)
               if state.routing.for_record(parse_record(r), state.engine.pass_key) is state.routing.current]
    for record in records[:5]:
        body = orjson.dumps(record)
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/reg/", "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(body)), "HTTP_X_API_KEY": API_KEY, "SERVER_NAME": "test",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body)}
        started = time.perf_counter()
        chunks = with_candidate(environ, lambda status, headers, exc_info=None: None)
        answer = b"".join(chunks)  # what the server sends
        sent = time.perf_counter()
        chunks.close()  # what the server calls after sending
        closed = time.perf_counter()
        assert orjson.loads(answer)["body"]["model"] == "v1"
        assert sent - started < 0.25 <= closed - sent
    samples = _samples(with_candidate)
    compared = sum(value for (name, labels), value in samples.items() if name == "regno_shadow_comparisons_total"
                   and dict(labels)["current"] == "v1" and dict(labels)["candidate"] == "v2")
    assert compared == 5
    assert samples[("regno_shadow_score_difference_count", (("candidate", "v2"), ("current", "v1")))] == 5


def test_candidate_pointer_removed_ends_canary_and_shadow(with_candidate, models_dir, record):
    """Removing the candidate pointer routes every pass to the current model again."""
    write_pointer(models_dir, CANDIDATE, None)
    assert with_candidate.extensions["regno"].watcher.check() is True
    client = ApiClient(with_candidate.test_client())
    assert with_candidate.extensions["regno"].routing.candidate is None
    assert client.get("/health").get_json()["body"]["candidate"] is None
    assert client.post(json=record).get_json()["body"]["model"] == "v1"


def test_broken_candidate_is_refused_while_the_current_model_serves(settings, models_dir, record):
    """A candidate folder that does not exist, or whose model changed, is refused; current serves alone."""
    app = create_app(replace(settings, models_dir=models_dir, canary_share=1.0))
    state, client = app.extensions["regno"], ApiClient(app.test_client())
    write_pointer(models_dir, CANDIDATE, "no-such-version")
    assert state.watcher.check() is False
    assert state.model_refusal["pointer"] == "candidate" and "no metadata.json" in state.model_refusal["error"]
    broken = publish(BUNDLED_MODEL, models_dir, "v4")
    (broken / "model.cbm").write_bytes((broken / "model.cbm").read_bytes()[:1000])
    write_pointer(models_dir, CANDIDATE, "v4")
    assert state.watcher.check() is False
    assert state.routing.candidate is None
    assert client.post(json=record).get_json()["body"]["model"] == "v1"  # canary_share 1.0, but no candidate
    assert client.get("/health").get_json()["body"]["model_refused"]["version"] == "v4"


@pytest.mark.gunicorn
def test_shadow_and_canary_in_gunicorn_reach_the_metrics(models_dir, simulated_records, tmp_path):
    """On 2 workers: canary answers carry v2, and each v1 answer is shadow-compared in /metrics, summed over workers."""
    write_pointer(models_dir, CANDIDATE, "v2")
    env = {"API_KEYS": API_KEY, "MODELS_DIR": str(models_dir), "MODEL_POLL_S": "0.2", "CANARY_SHARE": "0.5",
           "SHADOW_SHARE": "1", "CACHE_L1_SIZE": "0"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2) as server:
        time.sleep(1.0)  # each worker's watcher loads the candidate on its first look
        models = [requests.post(f"{server.base_url}/reg/", json=record, headers={"x-api-key": API_KEY},
                                timeout=10).json()["body"]["model"] for record in simulated_records]
        time.sleep(0.5)
        metrics = requests.get(f"{server.base_url}/metrics", timeout=10).text
    assert set(models) == {"v1", "v2"}
    compared = sum(float(value) for value in re.findall(
        r'^regno_shadow_comparisons_total\{[^}]*candidate="v2"[^}]*current="v1"[^}]*\} ([\d.]+)$', metrics, re.M))
    assert compared == models.count("v1")


def test_openapi_example_follows_a_swap(settings, models_dir):
    """After a swap, /openapi.json names the new model, and its example answer is the new model's."""
    app = create_app(replace(settings, models_dir=models_dir))
    client = app.test_client()
    before = client.get("/openapi.json").get_json()
    assert before["info"]["version"] == "v1"
    write_pointer(models_dir, CURRENT, "v2")
    assert app.extensions["regno"].watcher.check() is True
    after = client.get("/openapi.json").get_json()
    example = after["paths"]["/reg/"]["post"]["responses"]["200"]["content"]["application/json"]["example"]["body"]
    expected = load_folder(models_dir / "v2").score(parse_record(PROBE_RECORD))
    assert after["info"]["version"] == "v2"
    assert (example["model"], example["positive"]) == ("v2", expected.positive)


def test_regno_score_takes_the_model_the_service_serves(settings, models_dir, tmp_path):
    """With MODELS_DIR set, regno-score scores with its current model, not MODEL_PATH's, exactly as /reg/ does."""
    from loadtest.bench.score_file import REGNO_SCORE, write_records
    from tests.conftest import read_csv
    from training.simulate import simulate_records

    write_pointer(models_dir, CURRENT, "v2")
    records = simulate_records(20, seed=41)
    passes = tmp_path / "passes.csv"
    write_records(passes, records)
    env = {**os.environ, "MODELS_DIR": str(models_dir), "MODEL_PATH": str(BUNDLED_MODEL)}
    result = subprocess.run([REGNO_SCORE, str(passes)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "model v2;" in result.stderr
    client = ApiClient(create_app(replace(settings, models_dir=models_dir)).test_client())
    served = [client.post(json=record).get_json()["body"] for record in records]
    assert {answer["model"] for answer in served} == {"v2"}
    rows = read_csv(tmp_path / "passes.scored.csv")
    assert [float(row["positive"]) for row in rows] == [answer["positive"] for answer in served]
    assert [row["regno"] for row in rows] == [answer["regno"] for answer in served]
