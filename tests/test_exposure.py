"""Who sees what (service/http/exposure.py): the operator endpoints and /health's details, inside and outside."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service import create_app
from tests.conftest import API_KEY

OPERATOR_PATHS = ("/metrics", "/openapi.json", "/docs", "/docs/static/swagger-ui.css")
INTERNAL = {"X-Regno-Internal": "1"}


@pytest.fixture(scope="module")
def behind_proxy(settings):
    """The app as make serve, compose and the pod run it: behind one proxy, operator endpoints internal only."""
    return create_app(replace(settings, forwarded_hops=1))


def test_operator_endpoints_are_internal_behind_the_proxy(behind_proxy):
    """Behind the proxy, /metrics, /docs and /openapi.json answer a request nginx marked internal, and 404 the
    others, key or not: a client's own marker is worthless, as nginx overwrites it on the public door."""
    client = behind_proxy.test_client()
    for path in OPERATOR_PATHS:
        assert client.get(path, headers=INTERNAL).status_code == 200, path
        hidden = client.get(path, headers={"x-api-key": API_KEY})
        assert hidden.status_code == 404 and hidden.get_json() == {"body": f"not found: {path}", "status": "fail"}
        assert client.get(path, headers={"X-Regno-Internal": "yes"}).status_code == 404, path


def test_public_operator_endpoints_need_a_key(settings):
    """PUBLIC_OPERATOR_ENDPOINTS: the public side gets them with an API key, 401 without; inside, no key needed."""
    client = create_app(replace(settings, forwarded_hops=1, public_operator_endpoints=True)).test_client()
    for path in OPERATOR_PATHS:
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"x-api-key": API_KEY}).status_code == 200, path
        assert client.get(path, headers=INTERNAL).status_code == 200, path


def test_metrics_key_inside_still_applies(settings):
    """METRICS_REQUIRE_KEY asks the internal side for the key on /metrics too (not on the docs)."""
    client = create_app(replace(settings, forwarded_hops=1, metrics_require_key=True)).test_client()
    assert client.get("/metrics", headers=INTERNAL).status_code == 401
    assert client.get("/metrics", headers={**INTERNAL, "x-api-key": API_KEY}).status_code == 200
    assert client.get("/openapi.json", headers=INTERNAL).status_code == 200


def test_without_a_proxy_every_caller_is_internal(app):
    """FORWARDED_HOPS=0 (make run): gunicorn is reached directly, and its caller sees everything, as before."""
    client = app.test_client()
    assert [client.get(path).status_code for path in OPERATOR_PATHS] == [200] * len(OPERATOR_PATHS)
    assert "checksum" in client.get("/health").get_json()["body"]["model"]


def test_health_details_only_inside(behind_proxy):
    """/health outside: status, version and uptime; no checksum, candidate, model source, refusal or cache."""
    client = behind_proxy.test_client()
    public = client.get("/health").get_json()["body"]
    inside = client.get("/health", headers=INTERNAL).get_json()["body"]
    assert set(public) == {"status", "model", "uptime_s"} and public["model"] == {"version": "regno-sim-1"}
    assert inside["model"]["checksum"] and {"candidate", "model_source", "model_refused", "cache"} <= set(inside)
    assert client.get("/health/ready").status_code == client.get("/health/live").status_code == 200


@pytest.mark.parametrize("method, path", [("GET", "/health//live"), ("POST", "/reg//batch"),
                                          ("GET", "/docs//static/swagger-ui.css")])
def test_routing_never_redirects(app, method, path):
    """No werkzeug redirect for merged slashes, an HTML page whose Location names the request's Host: a doubled
    slash is a 404 in the envelope."""
    response = app.test_client().open(path, method=method, headers={"Host": "evil.example"})
    assert response.status_code == 404 and "Location" not in response.headers
    assert response.get_json() == {"body": f"not found: {path}", "status": "fail"}
