"""The docs blueprint: the OpenAPI document at /openapi.json and Swagger UI at /docs, on the internal side (no key
needed), or on the public door with a key when PUBLIC_OPERATOR_ENDPOINTS allows it (service/http/exposure.py)."""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app, url_for
from swagger_ui_bundle import swagger_ui_path

from model.engine import ScoringEngine
from model.records import parse_record
from model.routing import Routing
from model.scorer import PROBE_RECORD
from service.api import openapi
from service.http.exposure import require_operator
from service.state import service_state

bp = Blueprint("docs", __name__, static_folder=swagger_ui_path, static_url_path="/docs/static")

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>regno-api</title><link rel="stylesheet" href="{css}"></head>
<body><div id="swagger-ui"></div><script src="{js}"></script>
<script>SwaggerUIBundle({{url: "{document}", dom_id: "#swagger-ui"}});</script></body>
</html>
"""


@bp.before_request
def operators_only() -> None:
    """The document, the page and its static files: for the internal side, or public callers with a key if allowed."""
    state = service_state(current_app)
    require_operator(state.settings, state.api_keys)


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI document, built once per model in each process: its example answer is the model's own."""
    state = service_state(current_app)
    current = state.routing.current
    if state.openapi_document is None or state.openapi_document[0] != current.identity:
        # Without the cache and metrics: the example is no traffic. Its pass id is the one /reg/ gives.
        engine = ScoringEngine(state.settings.pick_threshold, pass_key=state.engine.pass_key)
        example = engine.score([parse_record(PROBE_RECORD)], Routing(current))
        document = orjson.dumps(openapi.build(state.settings, current.version, example[0].answer()))
        state.openapi_document = (current.identity, document)
    return Response(state.openapi_document[1], 200, content_type="application/json")


@bp.get("/docs")
def swagger_ui():
    """Swagger UI on the OpenAPI document."""
    page = _PAGE.format(css=url_for("docs.static", filename="swagger-ui.css"),
                        js=url_for("docs.static", filename="swagger-ui-bundle.js"),
                        document=url_for("docs.openapi_document"))
    return Response(page, 200, content_type="text/html; charset=utf-8")
