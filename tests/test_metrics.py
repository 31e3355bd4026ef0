"""Prometheus metrics in one process (Flask's test client): what is counted, and who may read it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import create_app
from tests.conftest import API_KEY, ApiClient


def _samples(app, **headers) -> dict[tuple, float]:
    """/metrics parsed into {(sample name, sorted labels): value}."""
    response = app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def samples_after(app, name: str, labels: tuple) -> float:
    """One sample's value from a fresh scrape."""
    return _samples(app)[(name, labels)]


@pytest.fixture
def fresh(settings):
    """A new app and client, so counts start at zero."""
    app = create_app(settings)
    return app, ApiClient(app.test_client())


def test_requests_are_counted_by_endpoint_and_status(fresh, record):
    """Scoring requests count by endpoint and status; the latency histogram has sub-millisecond buckets."""
    app, client = fresh
    for _ in range(5):
        client.post(json=record)
    client.post(json=dict(record, direction=3))
    client.post("/no/such/path", json=record)
    samples = _samples(app)
    count = "regno_http_request_duration_seconds_count"
    assert samples[(count, (("endpoint", "scoring.score_one"), ("method", "POST"), ("status", "200")))] == 5
    assert samples[(count, (("endpoint", "scoring.score_one"), ("method", "POST"), ("status", "400")))] == 1
    # an unknown path is counted under no endpoint, never under its raw path
    assert samples[(count, (("endpoint", "None"), ("method", "POST"), ("status", "404")))] == 1
    assert not any("no/such" in str(labels) for _, labels in samples)
    _samples(app)
    assert not any("prometheus_metrics" in str(labels) for _, labels in _samples(app))  # scrapes are not traffic
    weird = app.test_client().open("/reg/", method="BREW")
    assert weird.status_code == 405
    assert samples_after(app, count, (("endpoint", "None"), ("method", "other"), ("status", "405"))) == 1
    bucket = ("regno_http_request_duration_seconds_bucket",
              (("endpoint", "scoring.score_one"), ("le", "0.0005"), ("method", "POST"), ("status", "200")))
    assert bucket in samples


def test_service_metrics(fresh, record):
    """Inference and features are timed on a miss; cache outcomes, picks, scores and failures are counted."""
    app, client = fresh
    first = client.post(json=record).json["body"]
    client.post(json=record)
    client.post(json=dict(record, time_check="noon"))
    client.post(data=b"[", key=API_KEY)
    client.post(json=record, content_type="text/plain")
    samples = _samples(app)
    assert samples[("regno_inference_seconds_count", ())] == 1
    assert samples[("regno_features_seconds_count", ())] == 1
    assert samples[("regno_cache_lookups_total", (("result", "miss"),))] == 1
    assert samples[("regno_cache_lookups_total", (("result", "hit_l1"),))] == 1
    # the drift signals count model calls only: the repeat was a cache hit
    assert samples[("regno_picks_total", (("model", first["model"]), ("source", first["source"])))] == 1
    assert samples[("regno_positive_score_sum", (("model", first["model"]),))] == pytest.approx(first["positive"])
    for field in ("time_check", "body", "content_type"):
        assert samples[("regno_validation_failures_total", (("field", field),))] == 1
    scorer = app.extensions["regno"].scorer
    assert samples[("regno_model_info", (("checksum", scorer.checksum), ("version", scorer.version)))] == 1
    assert samples[("regno_redis_breaker_state", ())] == -1  # no Redis configured
    assert samples[("regno_workers_alive", ())] == 1


def test_metrics_need_no_key_unless_configured(settings):
    """/metrics is open by default; METRICS_REQUIRE_KEY closes it to callers without a key."""
    assert create_app(settings).test_client().get("/metrics").status_code == 200
    closed = create_app(replace(settings, metrics_require_key=True))
    assert closed.test_client().get("/metrics").status_code == 401
    assert closed.test_client().get("/metrics", headers={"x-api-key": API_KEY}).status_code == 200


def test_metrics_can_be_turned_off(settings, record):
    """METRICS_ENABLED=false serves no /metrics and still scores."""
    app = create_app(replace(settings, metrics_enabled=False))
    assert app.test_client().get("/metrics").status_code == 404
    assert ApiClient(app.test_client()).post(json=record).status_code == 200
