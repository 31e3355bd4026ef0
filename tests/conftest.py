"""Shared fixtures: settings, the app and its client, the team's files, records."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_redis import factories

from config import Settings
from loadtest.servers import ROOT, service_env
from model import BUNDLED_MODEL
from service import create_app

CUSTOMER = Path(__file__).resolve().parents[2] / "shared" / "customer"
API_KEY = "test-key"
#: The tests' label key (LABEL_API_KEYS), named: POST /reg/feedback takes only label keys.
LABEL_KEY_NAME, LABEL_KEY = "test-labeller", "test-label-key"
#: The tests' pass-id secret (PASS_ID_SECRET): production settings with the prediction log need one.
PASS_ID_SECRET = "test-pass-id-secret-0123456789"
#: The environment a production gunicorn of the tests gets its keys and secret from.
KEYS_ENV = {"API_KEYS": API_KEY, "LABEL_API_KEYS": f"{LABEL_KEY_NAME}:{LABEL_KEY}", "PASS_ID_SECRET": PASS_ID_SECRET}
#: The contract's 41 features in the team's model order, written out so a change elsewhere shows here.
TEAM_ORDER = [
    "afts_regno_ai_score", "direction", "recognition_accuracy", "max_sym_score", "min_sym_score",
    "max_len_score", "ai_len", "cam_len", "1", "8", "7", "9", "5", "В", "Р", "М", "0", "2", "4", "О",
    "6", "А", "Х", "3", "К", "Е", "D", "С", "Н", "Т", "У", "foreign_sym", "hour", "camera_type",
    "camera_class", "weekday", "month", "regno_template", "regno_template_ai", "afts_regno_ai_text",
    "regno_recognize_text",
]


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine for the session; one the session started is stopped after it."""
    from loadtest.containers import ensure_engine, stop_engine

    started = ensure_engine()
    yield
    stop_engine(started)


@pytest.fixture(scope="session")
def images(docker_engine):
    """Every image the compose stack, its load profile and the pod run, built (or pulled) as `make images` does."""
    from loadtest.containers import IMAGES, build_images

    build_images(IMAGES)


def readme_curl() -> tuple[dict, dict]:
    """The record the README's curl example sends, and the answer the README shows."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sent = re.search(r"^curl -s http://127\.0\.0\.1:5000/reg/.*?-d '(\{.*?\})'$", text, re.M | re.S)
    shown = re.search(r"^```json\n(\{\"body\".*?)\n```", text, re.M | re.S)
    assert sent and shown, "the README lost its curl example or its answer"
    return json.loads(sent.group(1)), json.loads(shown.group(1))


def with_pass_id_of(answer: dict, record: dict, secret: str) -> dict:
    """The README's answer as a service with another PASS_ID_SECRET gives it: the same but for the pass id."""
    from model.records import canonical_bytes, parse_record
    from model.routing import pass_digest, pass_key

    pass_id = pass_digest(canonical_bytes(parse_record(record)), pass_key(secret)).hex()
    return {**answer, "body": {**answer["body"], "pass_id": pass_id}}


#: A real redis-server on a free port for the whole session, and a client that empties it after each test.
redis_server = factories.redis_proc(executable=shutil.which("redis-server") or "redis-server", port=None)
redis_client = factories.redisdb("redis_server")
#: A second one that tests may kill and restart.
redis_flaky = factories.redis_proc(executable=shutil.which("redis-server") or "redis-server", port=None)


def redis_url(process) -> str:
    """The URL of a pytest-redis process."""
    return f"redis://{process.host}:{process.port}/0"


def clean_venv(folder: Path) -> dict[str, str]:
    """A new venv in folder, and an environment that runs its programs first, without PYTHONPATH or our settings."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    env = service_env(PATH=f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    return env


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="session")
def customer() -> Path:
    """The data-science team's hand-over folder, read in place from ../shared."""
    if not (CUSTOMER / "micromodel.cbm").is_file():
        pytest.skip(f"the team's files are not at {CUSTOMER}: parity with their code cannot be checked here")
    return CUSTOMER


@pytest.fixture(scope="session")
def team_model(customer: Path) -> Path:
    """The team's model file."""
    return customer / "micromodel.cbm"


@pytest.fixture(scope="session")
def team_sample(customer: Path) -> list[dict[str, str]]:
    """The team's 100 sample records, as the CSV gives them (all strings)."""
    return read_csv(customer / "test_data.csv")


@pytest.fixture(scope="session")
def team_expected(customer: Path) -> list[tuple[float, float]]:
    """(negative, positive) the team's code gives for each sample row."""
    return [(float(row["negative"]), float(row["positive"])) for row in read_csv(customer / "expected.csv")]


@pytest.fixture
def record() -> dict:
    """One good record as production sends it."""
    return {
        "regno_recognize": "А812НН79_",
        "afts_regno_ai": "А812НН790",
        "recognition_accuracy": 93.0,
        "afts_regno_ai_score": 0.81,
        "afts_regno_ai_char_scores": "[0.99, 0.98, 0.99, 0.97, 0.99, 0.99, 0.98, 0.97, 0.81]",
        "afts_regno_ai_length_scores": "[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01, 0.99, 0.0]",
        "camera_type": "Стационарная",
        "camera_class": "Астра-Трафик",
        "time_check": "2021-08-01 19:11:48",
        "direction": 1,
    }


@pytest.fixture(scope="session")
def simulated_records() -> list[dict]:
    """Twenty simulated records, all different."""
    from training.simulate import simulate_records

    return simulate_records(20, seed=99)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Production settings with the bundled model, one scoring key, one label key and a pass-id secret."""
    return Settings(env="production", model_path=BUNDLED_MODEL, api_keys=(API_KEY,),
                    label_api_keys=(f"{LABEL_KEY_NAME}:{LABEL_KEY}",), pass_id_secret=PASS_ID_SECRET)


@pytest.fixture(scope="session")
def app(settings: Settings):
    """The app, built once for the session (the model loads once)."""
    return create_app(settings)


@pytest.fixture
def client(app):
    """A test client that sends the API key unless told otherwise."""
    return ApiClient(app.test_client())


class ApiClient:
    """Posts records to /reg/ with the key and JSON content type by default."""

    def __init__(self, client):
        self.client = client

    def post(self, path="/reg/", json=None, data=None, key=API_KEY, content_type="application/json", **kwargs):
        """POST with the API key header and content type (None leaves either out)."""
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["x-api-key"] = key
        if json is not None:
            import orjson

            data = orjson.dumps(json)
        return self.client.post(path, data=data, headers=headers, content_type=content_type, **kwargs)

    def label(self, json=None, key=LABEL_KEY, **kwargs):
        """POST labels to /reg/feedback with the label key."""
        return self.post("/reg/feedback", json=json, key=key, **kwargs)

    def get(self, path, **kwargs):
        """GET, with no key."""
        return self.client.get(path, **kwargs)


def raw_http(url: str, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send request's bytes as they are to an http://host:port server; its answer's status, headers (names in lower
    case) and body. What no HTTP client would send: a broken request line, control bytes, oversized headers."""
    import socket

    host, port = url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except OSError:  # the server may answer and close before it has read all of an oversized request
            pass
        stream = sock.makefile("rb")
        status = int(stream.readline().split()[1])
        headers = {}
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, stream.read(int(headers.get("content-length", 0)))
