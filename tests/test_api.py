"""The HTTP API through Flask's test client: answers, auth, and the fail envelope for bad input."""

from __future__ import annotations

import orjson
import pytest

from dataclasses import replace

from config import Settings
from model import BUNDLED_MODEL
from model.engine import ScoringEngine
from model.records import canonical_bytes, parse_record
from model.routing import ModelSlot, Routing, pass_digest, pass_key
from model.scorer import Scorer
from training.simulate import simulate_records
from service import create_app
from tests.conftest import API_KEY, PASS_ID_SECRET, ApiClient


def _body(response):
    """The decoded envelope, checked for its two keys."""
    envelope = orjson.loads(response.data)
    assert set(envelope) == {"body", "status"}
    return envelope


def test_score_answers_envelope(client, app, record):
    """A good record gives probabilities, the pick, the model version and the threshold it picked at."""
    response = client.post(json=record)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    envelope = _body(response)
    body = envelope["body"]
    assert envelope["status"] == "ok"
    assert set(body) == {"positive", "negative", "regno", "source", "model", "threshold", "pass_id"}
    assert body["threshold"] == app.extensions["regno"].settings.pick_threshold  # the bundled model names none
    assert body["positive"] + body["negative"] == pytest.approx(1.0)
    assert body["pass_id"] == pass_digest(canonical_bytes(parse_record(record)), pass_key(PASS_ID_SECRET)).hex()
    assert response.headers["X-Pass-Id"] == body["pass_id"]
    again = client.post(json=record)  # a remembered answer carries the same pass id
    assert again.headers["X-Cache"] == "hit-l1" and again.headers["X-Pass-Id"] == body["pass_id"]
    assert body["model"] == app.extensions["regno"].scorer.version
    expected_source = "afts_regno_ai" if body["positive"] >= 0.5 else "regno_recognize"
    assert body["source"] == expected_source
    assert body["regno"] == record[expected_source]


def test_reg_without_slash_does_not_redirect(client, record):
    """/reg and /reg/ both score, with no redirect."""
    with_slash = client.post("/reg/", json=record)
    without = client.post("/reg", json=record)
    assert without.status_code == 200
    assert without.data == with_slash.data


def test_threshold_decides_the_pick(record):
    """The threshold setting moves the pick between the two plates."""
    bodies = {}
    for threshold in (0.0, 1.0):
        app = create_app(Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,), pick_threshold=threshold))
        bodies[threshold] = _body(ApiClient(app.test_client()).post(json=record))["body"]
    assert (bodies[0.0]["source"], bodies[0.0]["regno"]) == ("afts_regno_ai", record["afts_regno_ai"])
    assert (bodies[1.0]["source"], bodies[1.0]["regno"]) == ("regno_recognize", record["regno_recognize"])


def test_equivalent_encodings_give_one_answer(client, record):
    """Double encoding, numeric strings, other field order and extra keys change nothing."""
    plain = client.post(json=record).data
    double = client.post(data=orjson.dumps(orjson.dumps(record).decode()))
    strings = client.post(json=dict(record, recognition_accuracy="93", direction="1", afts_regno_ai_score="0.81"))
    reordered = client.post(json=dict(reversed(list(record.items())), note="extra"))
    charset = client.post(json=record, content_type="application/json; charset=utf-8")
    for response in (double, strings, reordered, charset):
        assert response.status_code == 200
        assert response.data == plain


@pytest.mark.parametrize("key", [None, "", "wrong", API_KEY + "x", "тест"])
def test_missing_or_wrong_key_is_401(client, record, key):
    """No key or a wrong one gives 401 in the envelope, before the body is read."""
    response = client.post(json=record, key=key)
    assert response.status_code == 401
    envelope = _body(response)
    assert envelope["status"] == "fail"
    assert "x-api-key" in envelope["body"]


def test_rotated_keys_all_work(record):
    """Every configured key is accepted, so keys can rotate without downtime."""
    app = create_app(Settings(model_path=BUNDLED_MODEL, api_keys=("old", "new")))
    client = ApiClient(app.test_client())
    assert client.post(json=record, key="old").status_code == 200
    assert client.post(json=record, key="new").status_code == 200
    assert client.post(json=record, key="older").status_code == 401


def _with(record, **changes):
    """A copy of record with fields changed (None removes a field)."""
    changed = dict(record, **changes)
    return {key: value for key, value in changed.items() if value is not None}


# (name, how to send it, expected status, words the message must contain)
BAD_REQUESTS = [
    ("missing field", lambda r: {"json": _with(r, direction=None)}, 400, "direction: is missing"),
    ("plate not a string", lambda r: {"json": _with(r, afts_regno_ai=190)}, 400, "afts_regno_ai: must be a string"),
    ("plate null", lambda r: {"json": {**r, "regno_recognize": None}}, 400, "regno_recognize: must be a string"),
    ("number as list", lambda r: {"json": _with(r, recognition_accuracy=[1])}, 400, "recognition_accuracy"),
    ("number as bool", lambda r: {"json": _with(r, afts_regno_ai_score=True)}, 400, "afts_regno_ai_score"),
    ("number as word", lambda r: {"json": _with(r, afts_regno_ai_score="high")}, 400, "afts_regno_ai_score"),
    ("NaN string", lambda r: {"json": _with(r, recognition_accuracy="NaN")}, 400, "finite"),
    ("Infinity string", lambda r: {"json": _with(r, afts_regno_ai_score="-Infinity")}, 400, "finite"),
    ("NaN literal", lambda r: {"data": orjson.dumps(r).replace(b"93.0", b"NaN")}, 400, "not valid JSON"),
    ("overflowing number", lambda r: {"data": orjson.dumps(r).replace(b"93.0", b"1e400")}, 400, "not valid JSON"),
    ("accuracy out of range", lambda r: {"json": _with(r, recognition_accuracy=101)}, 400, "recognition_accuracy"),
    ("unparsable scores", lambda r: {"json": _with(r, afts_regno_ai_char_scores="[0.9, oops]")}, 400,
     "afts_regno_ai_char_scores"),
    ("scores without brackets", lambda r: {"json": _with(r, afts_regno_ai_length_scores="0.1, 0.9")}, 400,
     "afts_regno_ai_length_scores"),
    ("scores as JSON array", lambda r: {"json": _with(r, afts_regno_ai_char_scores=[0.9])}, 400,
     "afts_regno_ai_char_scores"),
    ("unparsable timestamp", lambda r: {"json": _with(r, time_check="01/08/2021 09:02")}, 400, "time_check"),
    ("impossible date", lambda r: {"json": _with(r, time_check="2021-13-01 09:02:59")}, 400, "time_check"),
    ("direction 2", lambda r: {"json": _with(r, direction=2)}, 400, "direction: must be 0 or 1"),
    ("direction word", lambda r: {"json": _with(r, direction="north")}, 400, "direction"),
    ("empty plate", lambda r: {"json": _with(r, afts_regno_ai="")}, 400, "afts_regno_ai: must not be empty"),
    ("huge plate", lambda r: {"json": _with(r, regno_recognize="А" * 5000)}, 400, "regno_recognize"),
    ("camera type object", lambda r: {"json": _with(r, camera_type={"a": 1})}, 400, "camera_type"),
    ("not JSON", lambda r: {"data": b"{regno: 1"}, 400, "not valid JSON"),
    ("invalid UTF-8", lambda r: {"data": b'{"a": "\xff"}'}, 400, "not valid JSON"),
    ("empty body", lambda r: {"data": b""}, 400, "empty"),
    ("JSON array", lambda r: {"json": [r]}, 400, "got an array"),
    ("JSON number", lambda r: {"data": b"42"}, 400, "got a number"),
    ("JSON null", lambda r: {"data": b"null"}, 400, "got null"),
    ("string not holding JSON", lambda r: {"data": b'"hello"'}, 400, "does not hold JSON"),
    ("string holding an array", lambda r: {"data": orjson.dumps(orjson.dumps([r]).decode())}, 400, "got an array"),
    ("triple encoding", lambda r: {"data": orjson.dumps(orjson.dumps(orjson.dumps(r).decode()).decode())}, 400,
     "got a string"),
    ("body over the limit", lambda r: {"json": _with(r, pad="x" * 70_000)}, 413, "larger than"),
    ("form content type", lambda r: {"json": r, "content_type": "application/x-www-form-urlencoded"}, 415,
     "Content-Type must be application/json"),
    ("text content type", lambda r: {"json": r, "content_type": "text/plain"}, 415, "Content-Type"),
    ("no content type", lambda r: {"json": r, "content_type": None}, 415, "Content-Type"),
]


@pytest.mark.parametrize("make, status, words", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_gets_fail_envelope(client, record, make, status, words):
    """Each kind of bad input gets its 4xx and a message in the fail envelope."""
    response = client.post(**make(record))
    assert response.status_code == status
    envelope = _body(response)
    assert envelope["status"] == "fail"
    assert isinstance(envelope["body"], str)
    assert words in envelope["body"]


def test_unknown_path_is_404_envelope(client):
    """Unknown paths answer 404 in the envelope."""
    response = client.post("/nowhere", json={})
    assert response.status_code == 404
    assert _body(response) == {"body": "not found: /nowhere", "status": "fail"}


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_wrong_method_is_405_envelope(app, method):
    """Wrong methods answer 405 in the envelope, with the Allow header kept."""
    response = getattr(app.test_client(), method)("/reg/")
    assert response.status_code == 405
    assert _body(response)["status"] == "fail"
    assert "POST" in response.headers["Allow"]


def test_health_needs_no_key(app):
    """Liveness, readiness and status answer without a key."""
    client = app.test_client()
    live, ready, status = client.get("/health/live"), client.get("/health/ready"), client.get("/health")
    assert (live.status_code, ready.status_code, status.status_code) == (200, 200, 200)
    body = _body(status)["body"]
    scorer = app.extensions["regno"].scorer
    assert body["model"] == {"version": scorer.version, "checksum": scorer.checksum, "threshold": 0.5,
                             "threshold_source": "pick_threshold"}
    assert body["uptime_s"] >= 0
    assert _body(ready)["body"]["model"] == scorer.version


def test_ready_is_503_when_the_probe_fails(record):
    """A model that cannot predict makes readiness fail in the envelope."""
    app = create_app(Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,)))
    scorer = app.extensions["regno"].scorer
    scorer.cat_features = [0]  # feeds a number column as a category: CatBoost refuses to predict
    response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert _body(response) == {"body": "not ready: the probe prediction failed", "status": "fail"}


def test_a_bug_is_500_in_the_envelope(record):
    """An unexpected exception is answered 500 in the envelope without details."""
    app = create_app(Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,)))
    app.extensions["regno"].scorer.build_vector = None  # calling None raises TypeError inside the view
    response = ApiClient(app.test_client()).post(json=record)
    assert response.status_code == 500
    assert _body(response) == {"body": "internal error", "status": "fail"}


def test_service_answers_after_bad_input(client, record):
    """After every kind of bad input, a good record still scores."""
    for _, make, _, _ in BAD_REQUESTS:
        client.post(**make(record))
    assert client.post(json=record).status_code == 200


def test_pass_ids_are_keyed_with_the_secret(settings, record):
    """A pass id depends on PASS_ID_SECRET, not on the record alone; a resent pass keeps its id, and replicas that
    share the secret give the same one."""
    canonical = canonical_bytes(parse_record(record))
    first = ApiClient(create_app(settings).test_client())
    replica = ApiClient(create_app(settings).test_client())
    other = ApiClient(create_app(replace(settings, pass_id_secret="another-secret-of-enough-length")).test_client())
    pass_id = first.post(json=record).get_json()["body"]["pass_id"]
    resent = first.post(json=dict(reversed(list(record.items()))))  # the same pass, its fields in another order
    assert resent.get_json()["body"]["pass_id"] == pass_id == replica.post(json=record).get_json()["body"]["pass_id"]
    assert other.post(json=record).get_json()["body"]["pass_id"] != pass_id
    assert pass_id != pass_digest(canonical, b"").hex()  # the unkeyed hash anyone could compute from the record
    assert pass_digest(canonical, pass_key("another-secret-of-enough-length")) != pass_digest(canonical, b"")


def test_canary_assignment_stays_sticky_under_the_secret():
    """With a secret, each pass meets the same model every time and on every replica; another secret deals anew."""
    scorer = Scorer.load(BUNDLED_MODEL)
    current, candidate = ModelSlot.of(scorer, 8), ModelSlot.of(scorer, 8)
    records = [parse_record(raw) for raw in simulate_records(200, seed=41)]
    key = pass_key(PASS_ID_SECRET)

    def arms(routing: Routing, key: bytes) -> list[str]:
        return ["canary" if routing.for_record(record, key) is candidate else "current" for record in records]

    dealt = arms(Routing(current, candidate, canary_share=0.5), key)
    assert dealt == arms(Routing(current, candidate, canary_share=0.5), key)  # a new routing: a swap, a replica
    assert 60 < dealt.count("canary") < 140
    scored = ScoringEngine(0.5, pass_key=key).score(records, Routing(current, candidate, canary_share=0.5))
    assert [result.arm for result in scored] == dealt  # the engine routes by the same keyed digest
    assert arms(Routing(current, candidate, canary_share=0.5), pass_key("another-secret-of-enough-length")) != dealt
