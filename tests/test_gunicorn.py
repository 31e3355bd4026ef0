"""The service under a real multi-worker gunicorn: parity over HTTP, bad input, start-up failures."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import orjson
import pytest
import requests

from tests.conftest import API_KEY, raw_http
from loadtest.servers import gunicorn, run_gunicorn

pytestmark = pytest.mark.gunicorn
HEADERS = {"x-api-key": API_KEY, "content-type": "application/json"}


def _as_production_sends(row: dict[str, str]) -> dict:
    """A CSV row turned into the JSON types production sends."""
    return dict(row, recognition_accuracy=float(row["recognition_accuracy"]),
                afts_regno_ai_score=float(row["afts_regno_ai_score"]), direction=int(row["direction"]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """gunicorn with three workers on the bundled model."""
    log = tmp_path_factory.mktemp("gunicorn") / "stderr.log"
    with gunicorn({"API_KEYS": API_KEY}, log, workers=3) as running:
        yield running


def test_team_model_parity_over_http(team_model, team_sample, team_expected, tmp_path):
    """Through gunicorn with the team's model, every sample row gives the team's probabilities."""
    with gunicorn({"API_KEYS": API_KEY, "MODEL_PATH": str(team_model)}, tmp_path / "log", workers=2) as running:
        with requests.Session() as session:
            for index, (row, (negative, positive)) in enumerate(zip(team_sample, team_expected)):
                response = session.post(f"{running.base_url}/reg/", data=orjson.dumps(_as_production_sends(row)),
                                        headers=HEADERS, timeout=5)
                assert response.status_code == 200, response.text
                body = response.json()["body"]
                assert body["positive"] == pytest.approx(positive, abs=1e-9), f"row {index}"
                assert body["negative"] == pytest.approx(negative, abs=1e-9), f"row {index}"


def test_workers_share_one_preloaded_model(server):
    """The model loads once in the master; each of the three workers warms up on its own."""
    workers = server.worker_pids()
    assert len(workers) == 3
    output = server.output()
    loads = re.findall(r"\[(\d+)\] INFO regno: model .* loaded", output)
    warmed = {int(pid) for pid in re.findall(r"\[(\d+)\] INFO regno: worker warmed up", output)}
    assert loads == [str(server.process.pid)]
    assert warmed == set(workers)


def test_scores_and_survives_bad_input(server, record):
    """Bad requests of every sort get 4xx envelopes and the workers keep answering."""
    url = f"{server.base_url}/reg/"
    bad = [
        (b"{", HEADERS, 400),
        (b"[]", HEADERS, 400),
        (orjson.dumps(dict(record, direction=7)), HEADERS, 400),
        (b"x" * 200_000, HEADERS, 413),
        (orjson.dumps(record), {"x-api-key": API_KEY, "content-type": "text/plain"}, 415),
        (orjson.dumps(record), {"content-type": "application/json"}, 401),
    ]
    for _ in range(3):  # enough rounds to reach every worker
        for data, headers, status in bad:
            response = requests.post(url, data=data, headers=headers, timeout=5)
            assert response.status_code == status
            assert response.json()["status"] == "fail"
    assert requests.get(f"{server.base_url}/missing", timeout=5).json() == {"body": "not found: /missing",
                                                                            "status": "fail"}
    good = [requests.post(url, data=orjson.dumps(record), headers=HEADERS, timeout=5) for _ in range(12)]
    assert {response.status_code for response in good} == {200}
    assert len({response.content for response in good}) == 1


def test_chunked_body_over_limit_is_413(server):
    """A chunked upload with no Content-Length is still cut off at the limit."""
    def chunks():
        for _ in range(100):
            yield b"x" * 4096

    response = requests.post(f"{server.base_url}/reg/", data=chunks(), headers=HEADERS, timeout=5)
    assert response.status_code == 413
    assert response.json()["status"] == "fail"


#: Requests gunicorn itself refuses before the app sees them, and the status it answers each with.
REFUSED = {
    "request line over 4,094 bytes": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "over 100 header fields": (b"GET /health/live HTTP/1.1\r\nHost: x\r\n"
                               + b"".join(b"X-Field-%d: f\r\n" % index for index in range(150)) + b"\r\n", 431),
    "a header line over 8,190 bytes": (b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
                                       431),
    "ESC in a header": (b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Note: a\x1bb\r\n\r\n", 400),
    "unknown transfer coding": (b"POST /reg/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    "malformed request line": (b"GET / HTTP/1.1 trailing\r\nHost: x\r\n\r\n", 400),
}


def test_what_gunicorn_refuses_is_an_envelope(server):
    """gunicorn reached directly (make run): what it refuses before the app sees it is a JSON envelope with a 4xx
    (no longer its HTML page, nor 501 for a transfer coding), a fresh request id, and one log line of its kind."""
    for name, (request, expected) in REFUSED.items():
        status, headers, body = raw_http(server.base_url, request)
        assert (status, headers.get("content-type")) == (expected, "application/json"), (name, status, body[:300])
        assert orjson.loads(body)["status"] == "fail", name
        assert re.fullmatch(r"[0-9a-f]{32}", headers.get("x-request-id", "")), name
    assert "refused a request: LimitRequestLine, answered 414" in server.output()
    assert "aaaaaaaaaa" not in server.output()  # the kind of error is logged, never the request's bytes


def test_no_redirect_takes_its_host_from_the_request(server):
    """Direct, with Host: evil.example, a doubled slash is a 404 in the envelope, not werkzeug's HTML redirect to
    http://evil.example/health/live."""
    status, headers, body = raw_http(server.base_url, b"GET /health//live HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert (status, "location" in headers) == (404, False)
    assert orjson.loads(body) == {"body": "not found: /health//live", "status": "fail"}


def test_threaded_workers_refuse_in_the_envelope_too(tmp_path):
    """THREADS=2 (gunicorn's gthread worker, as gunicorn itself turns sync with threads into): its refusals are
    envelopes as well."""
    with gunicorn({"API_KEYS": API_KEY, "THREADS": "2"}, tmp_path / "log", workers=1) as running:
        answers = [raw_http(running.base_url, request) for request, _ in REFUSED.values()]
        served = requests.get(f"{running.base_url}/health/live", timeout=5).status_code
    assert "Using worker: service.http.worker_errors.EnvelopeThreadWorker" in running.output()
    assert [status for status, _, _ in answers] == [expected for _, expected in REFUSED.values()]
    assert all(orjson.loads(body)["status"] == "fail" for _, _, body in answers) and served == 200


def test_half_sent_request_does_not_block_others(server, record):
    """A client that stops mid-body ties up one worker at most; the others keep answering."""
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"POST /reg/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"x-api-key: " + API_KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n{")
        response = requests.post(f"{server.base_url}/reg/", data=orjson.dumps(record), headers=HEADERS, timeout=5)
        assert response.status_code == 200


@pytest.mark.parametrize(
    "env, message",
    [
        ({"API_KEYS": API_KEY, "MODEL_PATH": "/nonexistent/model.cbm"}, "model file not found: /nonexistent/model.cbm"),
        ({}, "no API key configured"),
        ({"API_KEYS": API_KEY, "WORKERS": "lots"}, "WORKERS='lots' is invalid"),
        ({"API_KEYS": API_KEY, "PRELOAD": "false", "MODEL_PATH": "/nonexistent/model.cbm"}, "model file not found"),
    ],
    ids=["missing model", "no key in production", "bad setting", "missing model without preload"],
)
def test_bad_start_is_one_clear_line(env, message):
    """A start-up that cannot work exits non-zero with one line naming the problem, no traceback."""
    result = run_gunicorn(dict(env, BIND="127.0.0.1:0", WORKERS=env.get("WORKERS", "2")))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "regno-api cannot start" in line]
    assert len(lines) >= 1 and message in lines[0]


def test_corrupt_model_is_one_clear_line(tmp_path):
    """A corrupt model file stops start-up with one line."""
    broken = tmp_path / "broken.cbm"
    broken.write_bytes(b"\x00not a model" * 100)
    result = run_gunicorn({"API_KEYS": API_KEY, "MODEL_PATH": str(broken), "BIND": "127.0.0.1:0"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"regno-api cannot start: model file {broken} is not a CatBoost model" in result.stderr


def test_sigterm_lets_in_flight_request_finish(tmp_path, record):
    """On SIGTERM a worker finishes the request it is reading before it exits (graceful shutdown)."""
    body = orjson.dumps(record)
    with gunicorn({"API_KEYS": API_KEY, "GRACEFUL_TIMEOUT": "10"}, tmp_path / "log", workers=2) as running:
        port = int(running.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"POST /reg/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-api-key: "
                           + API_KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                           + body[:10])
            time.sleep(0.5)  # the worker is now inside the request, waiting for the rest of the body
            os.kill(running.process.pid, signal.SIGTERM)
            time.sleep(0.5)
            client.sendall(body[10:])
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        assert b'"status":"ok"' in answer
        running.process.wait(15)
        assert running.process.returncode == 0


def test_threaded_workers_batch_without_mixing_answers(tmp_path, simulated_records):
    """Under gthread workers concurrent requests share CatBoost calls; every answer is still its own record's."""
    from concurrent.futures import ThreadPoolExecutor

    from model import BUNDLED_MODEL
    from model.records import parse_record
    from model.scorer import Scorer

    scorer = Scorer.load(BUNDLED_MODEL)
    records = simulated_records * 5
    env = {"API_KEYS": API_KEY, "WORKER_CLASS": "gthread", "THREADS": "4", "CACHE_L1_SIZE": "0"}
    with gunicorn(env, tmp_path / "log", workers=2) as running:
        def post(record):
            return requests.post(f"{running.base_url}/reg/", data=orjson.dumps(record), headers=HEADERS, timeout=10)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, records))
    for record, response in zip(records, responses):
        assert response.status_code == 200
        assert response.json()["body"]["positive"] == scorer.score(parse_record(record)).positive
