"""The front door (service/proxy/): a real nginx before a real multi-worker gunicorn, as `make serve` runs them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import requests

from config import Settings
from model.scorer import PROBE_RECORD
from service.proxy.nginx_config import REFUSALS, render, upstream_address
from service.proxy.serve import find_program
from tests.conftest import API_KEY, raw_http
from loadtest.bench.bulk import rss_mib
from loadtest.bulk_clients import BatchClients, max_batch_body
from loadtest.servers import ROOT, children, serve, start_stack, stop, wait_for_line, workers_of

pytestmark = pytest.mark.gunicorn
HEADERS = {"x-api-key": API_KEY, "content-type": "application/json"}
BODY = orjson.dumps(PROBE_RECORD)


def _post(url: str, body: bytes = BODY, session=None, **kwargs) -> requests.Response:
    """POST a body to the proxy's /reg/ with the key."""
    return (session or requests).post(f"{url}/reg/", data=body, headers={**HEADERS, **kwargs.pop("headers", {})},
                                      timeout=kwargs.pop("timeout", 10), **kwargs)


def _address(url: str) -> tuple[str, int]:
    """(host, port) of an http URL."""
    host, port = url.split("//")[1].split(":")
    return host, int(port)


def _service_lines(stack) -> list[dict]:
    """The service's own access lines (gunicorn's workers), decoded."""
    return [orjson.loads(line) for line in stack.output().splitlines()
            if line.startswith('{"ts"') and '"proxy":"nginx"' not in line]


def _proxy_lines(stack) -> list[dict]:
    """The proxy's lines for answers it gave itself, decoded from the bytes nginx wrote (orjson takes UTF-8 only)."""
    return [orjson.loads(line) for line in stack.log.read_bytes().splitlines() if b'"proxy":"nginx"' in line]


def _proxy_line(stack, request_id: str, seconds: float = 5) -> dict:
    """The proxy's line for one request id, once nginx has written it (it logs after it answers)."""
    deadline = time.monotonic() + seconds
    while not (found := [line for line in _proxy_lines(stack) if line["request_id"] == request_id]):
        assert time.monotonic() < deadline, f"no proxy line for {request_id}"
        time.sleep(0.05)
    return found[-1]


def _answers(stack) -> dict[str, float]:
    """regno_proxy_answers_total by status, from the stack's mtail."""
    text = requests.get(f"{stack.answers_url}/metrics", timeout=5).text
    return {status: float(value) for status, value in
            re.findall(r'^regno_proxy_answers_total\{[^}]*status="(\d+)"[^}]*\} (\S+)$', text, re.M)}


def _wait_for_answers(stack, status: str, count: float, seconds: float = 10) -> dict[str, float]:
    """mtail's counts once status has reached count (nginx logs after the answer is sent)."""
    deadline = time.monotonic() + seconds
    while _answers(stack).get(status, 0) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return _answers(stack)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """make serve's stack with two sync workers and short timeouts, so cut clients are seen quickly."""
    log = tmp_path_factory.mktemp("stack") / "stderr.log"
    env = {"API_KEYS": API_KEY, "PROXY_HEADER_TIMEOUT_S": "3", "PROXY_BODY_TIMEOUT_S": "0.5"}
    with serve(env, log, workers=2) as running:
        yield running


def _stall(address: tuple[str, int], part: bytes) -> socket.socket:
    """A connection that sent part of a request and then goes quiet."""
    sock = socket.create_connection(address)
    sock.sendall(part)
    return sock


STALLED_HEADER = b"POST /reg/ HTTP/1.1\r\nHost: stalled\r\nx-api-key: "
STALLED_BODY = (b"POST /reg/ HTTP/1.1\r\nHost: stalled\r\nContent-Type: application/json\r\nx-api-key: "
                + API_KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"regno")


def test_stalled_clients_do_not_stall_the_service(tmp_path):
    """200 connections stalled in their header and 200 mid-body, held open: normal traffic is all answered."""
    env = {"API_KEYS": API_KEY, "PROXY_HEADER_TIMEOUT_S": "60", "PROXY_BODY_TIMEOUT_S": "60"}
    with serve(env, tmp_path / "log", workers=2) as running:
        address = _address(running.base_url)
        stalled = [_stall(address, STALLED_HEADER) for _ in range(200)]
        stalled += [_stall(address, STALLED_BODY) for _ in range(200)]
        try:
            def caller(_):
                with requests.Session() as session:
                    return [_post(running.base_url, session=session).status_code for _ in range(100)]

            with ThreadPoolExecutor(4) as pool:
                statuses = [status for batch in pool.map(caller, range(4)) for status in batch]
            active = requests.get(f"{running.exporter_url}/metrics", timeout=5).text
        finally:
            for sock in stalled:
                sock.close()
    assert statuses == [200] * 400
    # nginx held all 400 while it answered: reading their headers, or past the header (nginx counts those as writing).
    state = {name: float(value) for name, value in re.findall(r"^nginx_connections_(\w+) (\S+)$", active, re.M)}
    assert state["reading"] >= 200 and state["writing"] >= 200
    # gunicorn saw the 400 whole requests and not one of the stalled ones.
    assert len([line for line in _service_lines(running) if line["endpoint"] == "scoring.score_one"]) == 400


def test_trickled_body_is_cut_at_the_body_timeout(stack):
    """A body trickled at one byte a second is cut after the body timeout, counted as 408 and never reaches gunicorn."""
    before = _answers(stack).get("408", 0)
    sock = socket.create_connection(_address(stack.base_url))
    request_id = "trickle-1"
    sock.sendall(STALLED_BODY.replace(b"Host: stalled", b"Host: trickle\r\nX-Request-ID: " + request_id.encode()))
    started, cut = time.monotonic(), None
    for _ in range(10):
        time.sleep(1)
        try:
            sock.sendall(b"a")
        except OSError:
            cut = time.monotonic() - started
            break
    sock.close()
    assert cut is not None, "the proxy kept a body trickled at 1 byte/s for 10 s"
    counts = _wait_for_answers(stack, "408", before + 1)
    assert counts["408"] == before + 1
    assert any(line["request_id"] == request_id and line["status"] == 408 for line in _proxy_lines(stack))
    assert not any(line["request_id"] == request_id for line in _service_lines(stack))


def test_header_stalled_client_is_cut_at_the_header_timeout(stack):
    """A header that never ends is cut after PROXY_HEADER_TIMEOUT_S (3 s here), without a worker ever seeing it."""
    sock = _stall(_address(stack.base_url), STALLED_HEADER)
    sock.settimeout(15)
    started = time.monotonic()
    assert sock.recv(1024) == b""  # closed by the proxy
    assert time.monotonic() - started < 14
    sock.close()


def test_oversized_body_is_refused_by_the_proxy(stack):
    """Over MAX_BODY_BYTES: 413 in the envelope from nginx, no service line; a batch may be larger, up to its limit."""
    big = b'{"pad": "' + b"a" * 70_000 + b'"}'
    refused = _post(stack.base_url, big, headers={"X-Request-ID": "too-big-1"})
    assert refused.status_code == 413
    assert refused.json() == {"body": "request body is larger than 65536 bytes", "status": "fail"}
    assert refused.headers["X-Request-ID"] == "too-big-1"
    # Announced by Content-Length alone, the body is refused before it is sent.
    sock = socket.create_connection(_address(stack.base_url))
    sock.sendall(b"POST /reg/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 99999999\r\n\r\n")
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    sock.close()
    batch = requests.post(f"{stack.base_url}/reg/batch", data=orjson.dumps([PROBE_RECORD] * 300), headers=HEADERS,
                          timeout=30)
    assert len(orjson.dumps([PROBE_RECORD] * 300)) > 65536 and batch.status_code == 200
    assert len(batch.json()["body"]) == 300
    assert not any(line["request_id"] == "too-big-1" for line in _service_lines(stack))


def test_the_proxy_refusals_are_envelopes_never_html():
    """Every status nginx answers by itself, on both doors, has an envelope with a message; its internal codes map
    to real ones, and its 5xx for bad input (an unknown transfer coding, an HTTP version) to 400."""
    conf = render(Settings(env="development"), Path("/run/x"))
    for status, message in REFUSALS.items():
        target = "@regno_413" if status == 413 else f"/__regno_errors/{status}"
        assert conf.count(f"error_page {status} = {target};") == 2, status
        assert message and '"' not in message and "\\" not in message
    assert re.search(r"return 403 '\{\"body\":\"client certificate required", conf)
    assert "return 400 '{\"body\":\"request header is too large" in conf
    assert "return 400 '{\"body\":\"unsupported Transfer-Encoding" in conf
    assert "absolute_redirect off;" in conf


def test_keep_alive_connections_are_kept(stack):
    """50 requests on one kept-alive connection are all answered on that one connection."""
    sock = socket.create_connection(_address(stack.base_url))
    stream = sock.makefile("rb")
    request = (b"POST /reg/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-api-key: "
               + API_KEY.encode() + b"\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
    for _ in range(50):
        sock.sendall(request)
        status = stream.readline()
        headers = {}
        while (line := stream.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        body = stream.read(int(headers["content-length"]))
        assert status.startswith(b"HTTP/1.1 200") and orjson.loads(body)["status"] == "ok"
        assert headers.get("connection") != "close"
    sock.close()


def test_idle_kept_alive_connections_do_not_block_new_callers(stack):
    """1,000 connections left idle after an answer each: a new caller is still answered."""
    address = _address(stack.base_url)
    idle = []
    try:
        for _ in range(1000):
            sock = socket.create_connection(address)
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            idle.append(sock)
        for sock in idle:
            sock.settimeout(10)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        answers = [_post(stack.base_url).status_code for _ in range(20)]
        waiting = requests.get(f"{stack.exporter_url}/metrics", timeout=5).text
    finally:
        for sock in idle:
            sock.close()
    assert answers == [200] * 20
    assert float(re.search(r"^nginx_connections_waiting (\S+)$", waiting, re.M).group(1)) >= 1000


def test_request_id_and_client_address_pass_through(stack):
    """X-Request-ID reaches the service; the service logs the client's address from the proxy, never a forged one."""
    response = _post(stack.base_url, headers={"X-Request-ID": "through-1", "X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200 and response.headers["X-Request-ID"] == "through-1"
    made = _post(stack.base_url)
    line = next(line for line in _service_lines(stack) if line["request_id"] == "through-1")
    assert line["client"] == "127.0.0.1"
    # Without an id from the caller, the proxy's own is the one the service echoes and logs.
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    assert any(line["request_id"] == made.headers["X-Request-ID"] for line in _service_lines(stack))


def test_service_errors_pass_through_unchanged(stack):
    """The service's own 4xx answers reach the client as the service wrote them."""
    response = _post(stack.base_url, b'{"direction": 2}')
    assert response.status_code == 400 and response.json()["body"].startswith("regno_recognize: is missing")
    assert _post(stack.base_url, headers={"x-api-key": "wrong"}).status_code == 401


HOSTILE_ID = b"<script>alert(1)</script>"
_HOSTILE = b"X-Request-ID: " + HOSTILE_ID + b"\r\n"
#: Requests no HTTP client sends: (raw bytes, the status answered, whether nginx answers it rather than gunicorn).
UNREADABLE = {
    "malformed request line": (b"GET / HTTP/1.1 trailing\r\nHost: x\r\n\r\n", 400, True),
    "%00 in the path": (b"GET /reg/%00 HTTP/1.1\r\nHost: x\r\n" + _HOSTILE + b"\r\n", 400, True),
    "/../ above the root": (b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    "unknown transfer coding": (b"POST /reg/ HTTP/1.1\r\nHost: x\r\n" + _HOSTILE + b"Transfer-Encoding: gzip\r\n\r\n",
                                400, True),
    "too many headers": (b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + _HOSTILE
                         + b"".join(b"X-Filler-%04d: %s\r\n" % (index, b"f" * 24) for index in range(1100)) + b"\r\n",
                         400, True),
    "request line over the limit": (b"GET /reg/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, True),
    "header over the limit": (b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + _HOSTILE + b"X-Big: " + b"b" * 9000
                              + b"\r\n\r\n", 400, True),
    # nginx passes control bytes in a header value; gunicorn refuses them.
    "header with ESC": (b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + _HOSTILE + b"X-Note: a\x1bb\r\n\r\n", 400, False),
}


def test_what_cannot_be_read_is_answered_in_the_envelope_with_a_clean_id(stack):
    """Each request nobody can read gets a JSON envelope and a 4xx, never an HTML page or a 500, and an
    X-Request-ID of the proxy's own, never the hostile one it carried; nginx logs and counts its own as that 4xx."""
    answered = {}
    for name, (request, expected, by_proxy) in UNREADABLE.items():
        status, headers, body = raw_http(stack.base_url, request)
        assert (status, headers.get("content-type")) == (expected, "application/json"), (name, status, body[:300])
        envelope = orjson.loads(body)
        assert envelope["status"] == "fail" and envelope["body"] and set(envelope) == {"body", "status"}, name
        assert re.fullmatch(r"[0-9a-f]{32}", headers.get("x-request-id", "")), (name, headers)
        answered[name] = headers["x-request-id"], status, by_proxy
    for name, (request_id, status, by_proxy) in answered.items():
        if by_proxy:
            assert _proxy_line(stack, request_id)["status"] == status, name
    assert HOSTILE_ID.decode() not in stack.output()


def test_what_nginx_takes_gunicorn_reads(stack):
    """A request line or a header line as long as nginx takes (8,190 bytes), or 900 header fields: the service
    answers it, where gunicorn's own limits (4,094 bytes, 100 fields) refused it in an HTML page."""
    line = b"GET /health/live?pad=" + b"p" * (8190 - len(b"GET /health/live?pad= HTTP/1.1")) + b" HTTP/1.1"
    header = b"X-Pad:" + b"p" * (8190 - len(b"X-Pad:"))  # nginx passes it on as "X-Pad: ppp...", a byte longer
    fields = b"".join(b"X-Field-%d: f\r\n" % index for index in range(900))
    for request in (line + b"\r\nHost: x\r\n\r\n", b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n",
                    b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"):
        status, _, body = raw_http(stack.base_url, request)
        assert (status, orjson.loads(body)) == (200, {"body": {"status": "alive"}, "status": "ok"})
    status, _, body = raw_http(stack.base_url, line.replace(b"?pad=", b"?pad=p") + b"\r\nHost: x\r\n\r\n")
    assert (status, orjson.loads(body)["body"]) == (414, REFUSALS[414])


def test_a_hostile_request_id_is_never_echoed_logged_or_passed_on(stack):
    """An X-Request-ID the service would not take (markup, over 64 characters) gives way to the proxy's own, in
    answers nginx gives and passes on, its log and the service's; the service got the id the client was given."""
    scored = _post(stack.base_url, headers={"X-Request-ID": HOSTILE_ID.decode()})
    refused = _post(stack.base_url, b'{"pad": "' + b"a" * 70_000 + b'"}', headers={"X-Request-ID": "r" * 65})
    assert (scored.status_code, refused.status_code) == (200, 413)
    for response in (scored, refused):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"]), response.headers
    assert any(line["request_id"] == scored.headers["X-Request-ID"] for line in _service_lines(stack))
    assert _proxy_line(stack, refused.headers["X-Request-ID"])["status"] == 413
    assert "r" * 65 not in stack.output() and HOSTILE_ID.decode() not in stack.output()


def test_the_proxy_log_is_utf_8_json_whatever_the_path(stack):
    """Paths of raw and of percent-encoded bytes that are not UTF-8: the proxy's lines stay UTF-8 JSON, with the
    path as sent when it is printable ASCII, else "-", and never the query (which may hold a plate)."""
    encoded = raw_http(stack.base_url, b"POST /reg/%FF%FE?plate=A812HH79 HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 99999999\r\n\r\n")
    assert encoded[0] == 413
    assert _proxy_line(stack, encoded[1]["x-request-id"])["uri"] == "/reg/%FF%FE"
    raw = raw_http(stack.base_url, b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw[0] == 404 and _proxy_line(stack, raw[1]["x-request-id"])["uri"] == "-"
    assert not [line for line in stack.log.read_bytes().splitlines() if b'"proxy":"nginx"' in line and b"A812" in line]


def test_no_redirect_takes_its_host_from_the_request(stack):
    """With Host: evil.example, nothing answers with a redirect, on either door: a doubled slash, which werkzeug
    redirected to http://evil.example/..., is a 404 in the envelope; a trailing slash is served as it is."""
    asked = [(stack.base_url, b"GET /health//live"), (stack.base_url, b"POST /reg//batch"),
             (stack.base_url, b"GET /health/"), (stack.internal_url, b"GET /docs//static/swagger-ui.css"),
             (stack.internal_url, b"GET /health//ready")]
    for url, line in asked:
        status, headers, body = raw_http(url, line + b" HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n")
        assert status in (200, 404) and "location" not in headers, (line, status, headers)
        assert b"evil.example" not in body and orjson.loads(body)["status"] in ("ok", "fail"), line


def test_labels_up_to_the_batch_limit_pass_the_proxy(stack):
    """POST /reg/feedback takes up to BATCH_REQUEST_MAX_BYTES at the proxy, as the README's 10,000 labels need:
    130 kB of labels reach the service; a body over that limit gets a 413 that names it."""
    labels = orjson.dumps({"labels": [{"pass_id": f"{index:016x}", "regno": "А812НН790"} for index in range(3000)]})
    assert 65536 < len(labels) < Settings().batch_request_max_bytes
    response = requests.post(f"{stack.base_url}/reg/feedback", data=labels, timeout=30,
                             headers={**HEADERS, "X-Request-ID": "labels-1"})
    assert response.status_code != 413, response.text
    assert any(line["request_id"] == "labels-1" for line in _service_lines(stack))
    limit = Settings().batch_request_max_bytes
    status, _, body = raw_http(stack.base_url, b"POST /reg/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                               b"application/json\r\nContent-Length: %d\r\n\r\n" % (limit + 1))
    assert (status, orjson.loads(body)["body"]) == (413, f"request body is larger than {limit} bytes")


OPERATOR_PATHS = ("/metrics", "/docs", "/openapi.json", "/docs/static/swagger-ui.css")


def test_operator_endpoints_are_on_the_internal_door_only(stack):
    """The public door answers /metrics, /docs and /openapi.json 404 in the envelope, key or not, and /health
    without checksums, even to a forged X-Regno-Internal; the internal door serves them all, /health whole."""
    for path in OPERATOR_PATHS:
        public = requests.get(f"{stack.base_url}{path}", headers={"x-api-key": API_KEY}, timeout=10)
        assert public.status_code == 404 and public.json() == {"body": REFUSALS[404], "status": "fail"}, path
        assert requests.get(f"{stack.internal_url}{path}", timeout=10).status_code == 200, path
    assert "regno_workers_alive" in requests.get(f"{stack.internal_url}/metrics", timeout=10).text
    public = requests.get(f"{stack.base_url}/health", headers={"X-Regno-Internal": "1"}, timeout=10)
    assert public.status_code == 200 and public.json()["body"]["model"] == {"version": "regno-sim-1"}
    assert "checksum" not in public.text and "model_source" not in public.text
    inside = requests.get(f"{stack.internal_url}/health", timeout=10).json()["body"]
    assert re.fullmatch(r"[0-9a-f]{64}", inside["model"]["checksum"]) and "cache" in inside
    for path in ("/health/live", "/health/ready"):  # what probes and load balancers ask
        assert requests.get(f"{stack.base_url}{path}", timeout=10).status_code == 200, path


def test_public_operator_endpoints_need_a_key(tmp_path):
    """PUBLIC_OPERATOR_ENDPOINTS=true: the public door serves /metrics, /docs and /openapi.json to callers with an
    API key, 401 to the others; /health's details stay inside, key or not."""
    with serve({"API_KEYS": API_KEY, "PUBLIC_OPERATOR_ENDPOINTS": "true"}, tmp_path / "log", workers=1) as running:
        without = {path: requests.get(f"{running.base_url}{path}", timeout=10) for path in OPERATOR_PATHS}
        keyed = {path: requests.get(f"{running.base_url}{path}", headers={"x-api-key": API_KEY}, timeout=10)
                 for path in OPERATOR_PATHS}
        health = requests.get(f"{running.base_url}/health", headers={"x-api-key": API_KEY}, timeout=10)
    assert {path: response.status_code for path, response in without.items()} == dict.fromkeys(OPERATOR_PATHS, 401)
    assert {path: response.status_code for path, response in keyed.items()} == dict.fromkeys(OPERATOR_PATHS, 200)
    assert "regno_workers_alive" in keyed["/metrics"].text
    assert health.status_code == 200 and "checksum" not in health.text


@pytest.mark.slow
def test_sigterm_under_load_loses_no_request(tmp_path):
    """SIGTERM while batches are in flight: every request the proxy accepted is answered 200."""
    stack = start_stack({"API_KEYS": API_KEY}, tmp_path / "log", workers=2)
    body = orjson.dumps([PROBE_RECORD] * 2000)  # long enough that several are in flight at the signal
    outcomes: list[str] = []
    stop_at = time.monotonic() + 60

    def caller():
        while time.monotonic() < stop_at:
            try:
                response = requests.post(f"{stack.base_url}/reg/batch", data=body, headers={**HEADERS,
                                         "Connection": "close"}, timeout=30)
                outcomes.append("ok" if response.status_code == 200 and len(response.json()["body"]) == 2000
                                else f"status {response.status_code}")
            except requests.ConnectionError as error:
                # Refused at connect: the proxy had stopped accepting; that request was never taken in.
                if "refused" in str(error).lower():
                    outcomes.append("refused")
                    return
                outcomes.append(f"dropped: {error}")
                return

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    answered_before = outcomes.count("ok")
    os.kill(stack.process.pid, signal.SIGTERM)
    stack.process.wait(60)
    for thread in threads:
        thread.join(60)
    assert answered_before > 0 and outcomes.count("ok") > answered_before  # in-flight batches finished after the signal
    assert [outcome for outcome in outcomes if outcome not in ("ok", "refused")] == []
    assert stack.process.returncode == 0
    assert "Shutting down: Master" in stack.output()


def _openssl(*args: str, cwd: Path) -> None:
    """Run openssl quietly; fail with its output."""
    run = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def _ca(folder: Path, name: str) -> None:
    """A self-signed CA: name.key, name.pem."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", cwd=folder)


def _signed(folder: Path, name: str, ca: str, *extensions: str) -> None:
    """A certificate name.pem with key name.key, signed by ca."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=folder)
    (folder / f"{name}.ext").write_text("\n".join(extensions) + "\n", encoding="utf-8")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA, the proxy's certificate, a client certificate from that CA and one from another CA (made here)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    _ca(folder, "ca")
    _ca(folder, "other-ca")
    _signed(folder, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    _signed(folder, "client", "ca", "extendedKeyUsage=clientAuth")
    _signed(folder, "stranger", "other-ca", "extendedKeyUsage=clientAuth")
    return folder


def _tls_env(folder: Path, **extra: str) -> dict[str, str]:
    """Settings for mutual TLS at the proxy with the test certificates."""
    return {"API_KEYS": API_KEY, "PROXY_TLS_CERT_FILE": str(folder / "server.pem"),
            "PROXY_TLS_KEY_FILE": str(folder / "server.key"), "PROXY_TLS_CLIENT_CA_FILE": str(folder / "ca.pem"),
            **extra}


def test_mutual_tls_serves_good_certificates_only(certificates, tmp_path):
    """With the CA set: a client certificate it signed is served; none, or one of another CA, gets a 403 envelope."""
    folder = certificates
    with serve(_tls_env(folder), tmp_path / "log", workers=2) as running:
        def post(cert=None, key=API_KEY):
            return requests.post(f"{running.base_url}/reg/", data=BODY, verify=str(folder / "ca.pem"), cert=cert,
                                 headers={**HEADERS, "x-api-key": key}, timeout=10)

        good = post((str(folder / "client.pem"), str(folder / "client.key")))
        none = post()
        stranger = post((str(folder / "stranger.pem"), str(folder / "stranger.key")))
        no_key = post((str(folder / "client.pem"), str(folder / "client.key")), key="")
        assert running.base_url.startswith("https://")
    assert good.status_code == 200 and good.json()["status"] == "ok"
    assert none.status_code == 403 and none.json() == {"body": REFUSALS[496], "status": "fail"}
    assert stranger.status_code == 403 and stranger.json() == {"body": REFUSALS[495], "status": "fail"}
    assert no_key.status_code == 401  # the API key still applies


def test_certificate_alone_is_enough_when_the_settings_say_so(certificates, tmp_path):
    """CLIENT_CERT_SUFFICES: a verified client needs no key; a forged verification header from a client does nothing."""
    folder = certificates
    with serve(_tls_env(folder, CLIENT_CERT_SUFFICES="true"), tmp_path / "log", workers=2) as running:
        client = (str(folder / "client.pem"), str(folder / "client.key"))
        without_key = requests.post(f"{running.base_url}/reg/", data=BODY, verify=str(folder / "ca.pem"), cert=client,
                                    headers={"content-type": "application/json"}, timeout=10)
        forged = requests.post(f"{running.base_url}/reg/", data=BODY, verify=str(folder / "ca.pem"),
                               cert=(str(folder / "stranger.pem"), str(folder / "stranger.key")),
                               headers={"content-type": "application/json", "X-Client-Cert-Verified": "SUCCESS"},
                               timeout=10)
    assert without_key.status_code == 200
    assert forged.status_code == 403


def test_rate_limits_answer_429_in_the_envelope(tmp_path):
    """Past the per-address and per-key rates, /reg/ answers 429 from the proxy; health checks are never limited."""
    env = {"API_KEYS": f"{API_KEY},second-key", "PROXY_RATE_PER_KEY": "1", "PROXY_RATE_BURST": "2"}
    with serve(env, tmp_path / "log", workers=2) as running:
        first_key = [_post(running.base_url).status_code for _ in range(6)]
        other_key = _post(running.base_url, headers={"x-api-key": "second-key"})
        limited = _post(running.base_url)
        health = [requests.get(f"{running.base_url}/health/live", timeout=5).status_code for _ in range(10)]
    assert first_key[:3] == [200, 200, 200] and 429 in first_key[3:]
    assert other_key.status_code == 200
    assert limited.status_code == 429 and limited.json() == {"body": REFUSALS[429], "status": "fail"}
    assert health == [200] * 10
    with serve({"API_KEYS": API_KEY, "PROXY_RATE_PER_ADDRESS": "1", "PROXY_RATE_BURST": "0"}, tmp_path / "log2",
               workers=2) as running:
        statuses = [_post(running.base_url).status_code for _ in range(4)]
    assert statuses[0] == 200 and statuses.count(429) >= 2


def test_upstream_that_does_not_answer_gives_504_counted(tmp_path):
    """gunicorn frozen (SIGSTOP): nginx answers 504 in the envelope after its read timeout and mtail counts it."""
    with serve({"API_KEYS": API_KEY, "TIMEOUT": "1"}, tmp_path / "log", workers=2) as running:
        frozen = [running.gunicorn_pid(), *children(running.gunicorn_pid())]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            response = _post(running.base_url, timeout=30)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        counts = _wait_for_answers(running, "504", 1)
    assert response.status_code == 504
    assert response.json() == {"body": REFUSALS[504], "status": "fail"}
    assert counts["504"] == 1


def test_make_serve_starts_the_stack(tmp_path, record):
    """`make serve` with PUBLIC_BIND, API_KEYS and WORKERS: ready through the proxy, scoring, and stopped by SIGTERM."""
    stack = start_stack({"API_KEYS": "serve-key"}, tmp_path / "log", workers=2,
                        command=["make", "--no-print-directory", "serve"])
    try:
        response = requests.post(f"{stack.base_url}/reg/", json=record, headers={"x-api-key": "serve-key"}, timeout=10)
        assert response.status_code == 200 and response.json()["body"]["model"]
        assert requests.get(f"{stack.base_url}/health/ready", timeout=5).status_code == 200
    finally:
        log = stop(stack)
    assert "regno-api serving on http://127.0.0.1:" in log and "Shutting down: Master" in log


def test_an_exporter_that_cannot_start_is_a_warning_not_an_outage(tmp_path):
    """The nginx exporter's port is taken: make serve still serves, and says once what it runs without."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {"API_KEYS": API_KEY, "PROXY_EXPORTER_BIND": f"127.0.0.1:{taken.getsockname()[1]}"}
        with serve(env, tmp_path / "log", workers=2) as running:
            wait_for_line(running, "regno-api warning: nginx-exporter exited", seconds=30)
            assert _post(running.base_url).status_code == 200
            assert running.process.poll() is None
    assert running.output().count("regno-api warning:") == 1


def test_serve_fails_with_one_line_on_bad_settings(tmp_path):
    """A setting the proxy cannot use stops make serve's supervisor with one line, before anything starts."""
    from loadtest.servers import service_env

    run = subprocess.run([sys.executable, "-m", "service.proxy.serve", "gunicorn.conf.py"], cwd=ROOT,
                         env=service_env(REGNO_ENV="development", PROXY_TLS_CERT_FILE="/x.pem"), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "regno-api cannot serve: PROXY_TLS_CERT_FILE and PROXY_TLS_KEY_FILE go together: set both or neither"]


def test_rendered_configurations_pass_nginx_t(tmp_path, certificates):
    """nginx -t accepts the configuration for the defaults, TLS with client certificates, and both rate limits."""
    nginx = find_program("nginx", "nginx")
    variants = {
        "defaults": Settings(env="development"),
        "tls": Settings(env="development", proxy_tls_cert_file=certificates / "server.pem",
                        proxy_tls_key_file=certificates / "server.key",
                        proxy_tls_client_ca_file=certificates / "ca.pem"),
        "rates": Settings(env="development", proxy_rate_per_address=0.5, proxy_rate_per_key=100,
                          proxy_connections_per_address=0),
        "operators": Settings(env="development", public_operator_endpoints=True),
    }
    for name, settings in variants.items():
        folder = tmp_path / name
        folder.mkdir()
        conf = folder / "nginx.conf"
        conf.write_text(render(replace(settings, bind=f"unix:{folder}/g.sock"), folder), encoding="utf-8")
        check = subprocess.run([nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (name, check.stderr)
    assert "rate=30r/m" in (tmp_path / "rates" / "nginx.conf").read_text()
    assert "limit_conn " not in (tmp_path / "rates" / "nginx.conf").read_text()


def test_upstream_address_names_gunicorn_as_nginx_reaches_it():
    """A unix socket stays, a wildcard host becomes loopback, a named host stays."""
    assert upstream_address("unix:/run/regno/gunicorn.sock") == "unix:/run/regno/gunicorn.sock"
    assert upstream_address("0.0.0.0:8000") == "127.0.0.1:8000"
    assert upstream_address("api:8000") == "api:8000"


def _stat(pid: int) -> list[str]:
    """A process's /proc stat fields after its name, from the state on (field 3 of proc(5) is the first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _niceness(pid: int) -> int:
    """A process's nice value (proc(5)'s 19th field)."""
    return int(_stat(pid)[16])


def _cpu_s(pids: list[int]) -> float:
    """The CPU seconds (user and system, proc(5)'s 14th and 15th fields) the processes have used."""
    return sum(int(fields[11]) + int(fields[12]) for fields in map(_stat, pids)) / os.sysconf("SC_CLK_TCK")


def test_bulk_work_runs_on_a_pool_of_its_own(tmp_path):
    """Two clients sending maximum-size batches back to back beside /reg/ traffic: the batches run on the bulk pool,
    at a lower CPU priority, the main pool's workers stay free for /reg/, and a batch's memory is given back."""
    limits = Settings()
    body = max_batch_body(limits.batch_request_max_records, limits.batch_request_max_bytes)
    with serve({"API_KEYS": API_KEY}, tmp_path / "log", workers=2) as running:
        main_workers, bulk_workers = workers_of(running.gunicorn_pid()), workers_of(running.gunicorn_pid("bulk"))
        assert len(bulk_workers) == limits.bulk_workers
        assert {_niceness(pid) for pid in bulk_workers} == {limits.bulk_nice}
        assert {_niceness(pid) for pid in main_workers} == {0}
        steady = rss_mib(bulk_workers[0])
        main_before, bulk_before = _cpu_s(main_workers), _cpu_s(bulk_workers)
        with BatchClients(f"{running.base_url}/reg/batch", body, API_KEY, clients=2) as clients:
            statuses = [_post(running.base_url).status_code for _ in range(200)]
            while sum(clients.statuses.values()) < 4:
                time.sleep(0.1)
        main_cpu, bulk_cpu = _cpu_s(main_workers) - main_before, _cpu_s(bulk_workers) - bulk_before
        assert statuses == [200] * 200
        assert set(clients.statuses) == {200}, clients.statuses
        # Four batches or more (40,000 records) against 200 single records: the batches' CPU went to the bulk pool.
        assert bulk_cpu > 4 * main_cpu, (bulk_cpu, main_cpu)
        # Its objects are gone once a batch is answered: the worker is near where it started (its L1 cache now full).
        assert rss_mib(bulk_workers[0]) < steady + 100, (steady, rss_mib(bulk_workers[0]))
