"""Cache keys and the two-level cache without Redis (service/cache/)."""

from __future__ import annotations

import orjson
import pytest

from config import Settings
from model import BUNDLED_MODEL
from model.records import canonical_bytes, parse_record
from model.scorer import Score
from service import create_app
from model.engine import HIT_L1, MISS
from service.cache import ScoreCache
from service.cache.keys import cache_key, decode_score, encode_score
from tests.conftest import API_KEY, ApiClient


def test_equivalent_records_share_a_key(record):
    """Field order, numeric strings, T separator and extra keys give one key."""
    variants = [
        record,
        dict(reversed(list(record.items()))),
        dict(record, recognition_accuracy="93", afts_regno_ai_score="0.81", direction="1", extra=1),
        dict(record, time_check=record["time_check"].replace(" ", "T")),
        orjson.loads(orjson.dumps(record)),
    ]
    keys = {cache_key("p:", b"model", canonical_bytes(parse_record(variant))) for variant in variants}
    assert len(keys) == 1


def test_different_records_and_models_have_different_keys(record):
    """Any field change, a new model identity or another prefix gives another key."""
    parsed = canonical_bytes(parse_record(record))
    base = cache_key("p:", b"model-a", parsed)
    assert cache_key("p:", b"model-b", parsed) != base
    assert cache_key("q:", b"model-a", parsed).startswith("q:")
    for field, value in [("direction", 0), ("afts_regno_ai", "А812НН797"), ("recognition_accuracy", 93.0001),
                         ("afts_regno_ai_char_scores", "[0.99]"), ("time_check", "2021-08-01 19:11:49")]:
        assert cache_key("p:", b"model-a", canonical_bytes(parse_record(dict(record, **{field: value})))) != base, field


def test_score_encoding_is_exact():
    """Encoding and decoding gives the very same floats; other lengths are not scores."""
    score = Score(0.1 + 0.2, 1 - (0.1 + 0.2))
    assert decode_score(encode_score(score)) == score
    assert decode_score(b"garbage") is None


def test_l1_hits_and_evicts():
    """L1 answers what it was given and forgets the least recently used past its size."""
    cache = ScoreCache("p:", l1_size=2, store=None)
    assert cache.get("a") == (None, MISS)
    cache.put("a", Score(0.4, 0.6))
    cache.put("b", Score(0.3, 0.7))
    assert cache.get("a") == (Score(0.4, 0.6), HIT_L1)
    cache.put("c", Score(0.2, 0.8))  # evicts b, the least recently used
    assert cache.get("b") == (None, MISS)
    assert cache.status() == {"l1": {"size": 2, "max": 2}, "redis": {"state": "off"}}


def test_l1_size_zero_turns_it_off():
    """CACHE_L1_SIZE=0 caches nothing in process."""
    cache = ScoreCache("p:", l1_size=0, store=None)
    cache.put("a", Score(0.4, 0.6))
    assert cache.get("a") == (None, MISS)


def test_header_says_where_the_answer_came_from(record):
    """The first request is a miss, the same record again an L1 hit, with the same bytes."""
    app = create_app(Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,)))
    client = ApiClient(app.test_client())
    first, second = client.post(json=record), client.post(json=dict(record, direction="1"))
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit-l1")
    assert first.data == second.data
    assert "cache" not in orjson.loads(first.data)["body"]


def test_errors_are_never_cached(record):
    """A rejected record leaves nothing in the cache."""
    app = create_app(Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,)))
    client = ApiClient(app.test_client())
    assert client.post(json=dict(record, direction=5)).status_code == 400
    assert app.extensions["regno"].cache.status()["l1"]["size"] == 0


@pytest.mark.parametrize("value", ["ftp://x", "localhost:6379"])
def test_bad_redis_url_stops_start_up(value):
    """A REDIS_URL redis-py cannot use is refused at start-up, not discovered at the first request."""
    from config import SettingsError

    with pytest.raises(SettingsError, match="REDIS_URL"):
        Settings(api_keys=("k",), redis_url=value).check()


def test_resent_bytes_reuse_the_remembered_answer(record):
    """The very same body again is answered from memory, byte for byte, and counted as an L1 hit."""
    app = create_app(Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,)))
    client = ApiClient(app.test_client())
    state = app.extensions["regno"]
    body = orjson.dumps(record)
    first = client.post(data=body)
    state.cache._l1.clear()  # only the remembered answer is left: the repeat must come from it
    second = client.post(data=body)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit-l1")
    assert second.data == first.data
    assert client.post(data=body + b" ").headers["X-Cache"] == "miss"  # other bytes, other key, scored again
    bad = orjson.dumps(dict(record, direction=4))
    assert client.post(data=bad).status_code == 400
    assert client.post(data=bad).status_code == 400  # a failure is never remembered


def test_answers_are_remembered_per_model(record):
    """Two models never share remembered answers: their salts differ."""
    from model.routing import answer_salt
    from service.cache import body_key

    body = orjson.dumps(record)
    assert body_key(answer_salt(b"model-a"), body) != body_key(answer_salt(b"model-b"), body)
    assert body_key(answer_salt(b"model-a"), body) == body_key(answer_salt(b"model-a"), body)


def test_remembered_answers_keep_only_their_own_bytes():
    """orjson's output holds its whole write buffer; a remembered answer must cost about its length, not 4 kB."""
    import tracemalloc

    cache = ScoreCache("t:", l1_size=1000, store=None)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(500):
            cache.remember_answer(index.to_bytes(16, "big"), orjson.dumps({"body": {"positive": index}, "status": "ok"}))
        per_answer = (tracemalloc.get_traced_memory()[0] - before) / 500
    finally:
        tracemalloc.stop()
    assert per_answer < 600, f"{per_answer:.0f} bytes per remembered answer"
    assert cache.answer_for((7).to_bytes(16, "big")) == (b'{"body":{"positive":7},"status":"ok"}', None)
