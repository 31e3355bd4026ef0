"""POST /reg/batch: one result per record in order, per-record errors, limits, one CatBoost call, cache, metrics."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from service import create_app
from tests.conftest import ApiClient, redis_url
from tests.test_metrics import _samples


@pytest.fixture
def fresh(settings):
    """A new app and client (empty cache, zero counts)."""
    app = create_app(settings)
    return app, ApiClient(app.test_client())


def _bodies(response) -> list:
    assert response.status_code == 200, response.data
    envelope = response.get_json()
    assert envelope["status"] == "ok"
    return envelope["body"]


def test_mixed_batch_answers_each_record_in_order(fresh, simulated_records):
    """Good records get /reg/'s body, bad ones an error naming the field and their index; none fails the others."""
    app, client = fresh
    good = simulated_records[:3]
    batch = [good[0], dict(good[1], direction=7), good[1], "not a record", {"regno_recognize": "A1"}, good[2]]
    results = _bodies(client.post("/reg/batch", json=batch))
    singles = ApiClient(create_app(app.extensions["regno"].settings).test_client())  # its own cache, empty
    expected = [singles.post("/reg/", json=record).get_json()["body"] for record in good]
    assert results[0] == expected[0] and results[2] == expected[1] and results[5] == expected[2]
    assert results[1] == {"error": "direction: must be 0 or 1, got 7", "index": 1}
    assert results[3] == {"error": "record: must be a JSON object, got a string", "index": 3}
    assert results[4]["index"] == 4 and results[4]["error"].startswith("afts_regno_ai: is missing")
    assert len(results) == len(batch)


def test_records_object_form_and_empty_batch(fresh, simulated_records):
    """{"records": [...]} is the same as the bare array; an empty batch answers an empty list."""
    _, client = fresh
    assert _bodies(client.post("/reg/batch", json={"records": simulated_records})) == \
        _bodies(client.post("/reg/batch", json=simulated_records))
    assert _bodies(client.post("/reg/batch", json=[])) == []


@pytest.mark.parametrize("body,status,message", [
    ({"rows": []}, 400, 'hold its records in "records"'),
    ({"records": {"a": 1}}, 400, "got an object"),
    (42, 400, "got a number"),
])
def test_batch_shape_errors(fresh, body, status, message):
    """A body that is not a batch gets a 4xx fail envelope saying why."""
    _, client = fresh
    response = client.post("/reg/batch", json=body)
    assert response.status_code == status
    assert response.get_json()["status"] == "fail" and message in response.get_json()["body"]


def test_limits_give_413(settings, record):
    """More records than BATCH_REQUEST_MAX_RECORDS, or more bytes than BATCH_REQUEST_MAX_BYTES: 413."""
    client = ApiClient(create_app(replace(settings, batch_request_max_records=5,
                                          batch_request_max_bytes=20_000)).test_client())
    assert client.post("/reg/batch", json=[record] * 5).status_code == 200
    too_many = client.post("/reg/batch", json=[record] * 6)
    assert too_many.status_code == 413
    assert too_many.get_json() == {"body": "a batch holds at most 5 records, got 6", "status": "fail"}
    too_big = client.post("/reg/batch", json=[dict(record, pad="x" * 25_000)])
    assert too_big.status_code == 413 and "larger than 20000 bytes" in too_big.get_json()["body"]


def test_batch_body_may_exceed_the_single_record_limit(settings, simulated_records):
    """A batch is allowed past MAX_BODY_BYTES, up to its own limit; /reg/ keeps its own."""
    client = ApiClient(create_app(replace(settings, max_body_bytes=2_000)).test_client())
    records = simulated_records * 5
    assert len(orjson.dumps(records)) > 2_000
    assert len(_bodies(client.post("/reg/batch", json=records))) == len(records)
    assert client.post("/reg/", json=dict(simulated_records[0], pad="x" * 3_000)).status_code == 413


def test_batch_needs_the_key(fresh, record):
    """Auth works as for /reg/."""
    _, client = fresh
    assert client.post("/reg/batch", json=[record], key=None).status_code == 401
    assert client.post("/reg/batch", json=[record], key="wrong").status_code == 401


def test_valid_records_are_scored_in_one_catboost_call(fresh, simulated_records, monkeypatch):
    """All cache misses of a batch go to the model together; a repeat of the batch comes from the cache."""
    app, client = fresh
    scorer = app.extensions["regno"].scorer
    calls = []
    original = scorer.predict_vectors
    monkeypatch.setattr(scorer, "predict_vectors", lambda vectors: calls.append(len(vectors)) or original(vectors))
    first = _bodies(client.post("/reg/batch", json=simulated_records + [{"bad": 1}]))
    assert calls == [len(simulated_records)]
    assert _bodies(client.post("/reg/batch", json=simulated_records + [{"bad": 1}])) == first
    assert calls == [len(simulated_records)]  # the second time, every record was an L1 hit


def test_each_record_counts_in_the_metrics(fresh, simulated_records):
    """Cache lookups, model-scored picks and rejected records are counted per record."""
    app, client = fresh
    records = simulated_records[:4]
    _bodies(client.post("/reg/batch", json=records + [dict(records[0], direction=5), {"x": 1}]))
    _bodies(client.post("/reg/batch", json=records[:2]))
    samples = _samples(app)
    assert samples[("regno_cache_lookups_total", (("result", "miss"),))] == 4
    assert samples[("regno_cache_lookups_total", (("result", "hit_l1"),))] == 2
    picks = sum(value for (name, _), value in samples.items() if name == "regno_picks_total")
    assert picks == 4
    assert samples[("regno_validation_failures_total", (("field", "direction"),))] == 1
    assert samples[("regno_validation_failures_total", (("field", "regno_recognize"),))] == 1
    assert samples[("regno_positive_score_count", (("model", "regno-sim-1"),))] == 4


def test_batch_reads_redis_in_one_round_trip(settings, redis_server, redis_client, simulated_records):
    """Scores one app wrote to Redis are L2 hits for another app's batch, fetched with one MGET."""
    with_redis = replace(settings, redis_url=redis_url(redis_server), cache_prefix="batch:")
    writer_app = create_app(with_redis)
    first = _bodies(ApiClient(writer_app.test_client()).post("/reg/batch", json=simulated_records))
    assert writer_app.extensions["regno"].cache.store.flush_writes()
    reader_app = create_app(with_redis)
    redis_client.config_resetstat()
    again = _bodies(ApiClient(reader_app.test_client()).post("/reg/batch", json=simulated_records))
    assert again == first
    commands = redis_client.info("commandstats")
    assert commands["cmdstat_mget"]["calls"] == 1 and "cmdstat_get" not in commands
    samples = _samples(reader_app)
    assert samples[("regno_cache_lookups_total", (("result", "hit_l2"),))] == len(simulated_records)
