"""The API document: valid OpenAPI, in step with the validator, served with Swagger UI, and fuzzed live."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from dataclasses import replace

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

from model.record_schema import record_schema
from model.records import FIELDS, RecordError, parse_record
from service import create_app
from tests.conftest import API_KEY, KEYS_ENV
from loadtest.servers import gunicorn

RECORD_SCHEMA = record_schema()
#: Problems the schema cannot express, which the service answers with a 400 naming the field instead.
UNEXPRESSED = ("must be a number, got", "must be between", "must be a list of numbers", "must hold finite numbers",
               "must be a bracketed list",
               "is not a real date", "must be a finite number", "must be 0 or 1", "must be a timestamp",
               # a format character past U+FFFF in a plate: the document's pattern cannot name those (records.py)
               "must not contain format characters")


def test_document_is_valid_openapi(app, client):
    """/openapi.json passes an OpenAPI 3 validator and describes every route the app serves."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    rules = {rule.rule for rule in app.url_map.iter_rules()} - {"/docs/static/<path:filename>", "/reg"}
    assert set(document["paths"]) == rules
    schemes = document["components"]["securitySchemes"]
    for scheme in ("apiKey", "labelKey"):  # scoring keys and label keys, in the same header
        assert {name: schemes[scheme][name] for name in ("type", "in", "name")} == {"type": "apiKey", "in": "header",
                                                                                  "name": "x-api-key"}
    assert document["paths"]["/reg/feedback"]["post"]["security"] == [{"labelKey": []}]
    assert "403" in document["paths"]["/reg/feedback"]["post"]["responses"]


def test_debug_route_is_documented_when_served(settings):
    """With SENTRY_DEBUG_ROUTE on, /debug/sentry is served and documented too; the document stays valid."""
    app = create_app(replace(settings, sentry_debug_route=True))
    document = app.test_client().get("/openapi.json").get_json()
    validate(document)
    assert "/debug/sentry" in {rule.rule for rule in app.url_map.iter_rules()}
    assert set(document["paths"]["/debug/sentry"]["post"]["responses"]) == {"500", "400", "413", "415", "401", "403"}


def test_document_examples_are_real_answers(client):
    """The example request is a real record, and the example answer is what the model says for it."""
    document = client.get("/openapi.json").get_json()
    operation = document["paths"]["/reg/"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    answer = client.post("/reg/", json=example).get_json()
    assert operation["responses"]["200"]["content"]["application/json"]["example"] == answer


def test_record_schema_lists_the_contract_fields_in_order():
    """Every field of the contract, required, in the contract's order."""
    assert tuple(RECORD_SCHEMA["properties"]) == FIELDS
    assert RECORD_SCHEMA["required"] == list(FIELDS)


def test_schema_accepts_every_record_the_validator_accepts(record, simulated_records, team_sample):
    """Never stricter than the validator: accepted records (JSON numbers or CSV strings) conform to the schema."""
    checker = jsonschema.Draft4Validator(RECORD_SCHEMA)
    variants = [record, dict(record, time_check="2021-08-01T09:02:59.5+03:00", direction="1", extra=[1]),
                dict(record, recognition_accuracy="42.5", afts_regno_ai_char_scores="[]")]
    for accepted in [*variants, *simulated_records, *team_sample]:
        parse_record(accepted)
        assert checker.is_valid(accepted), list(checker.iter_errors(accepted))


@pytest.mark.parametrize("field,value", [
    ("regno_recognize", "А 812"), ("regno_recognize", ""), ("afts_regno_ai", "A\u2028B"), ("afts_regno_ai", "Б" * 21),
    ("recognition_accuracy", 100.5), ("afts_regno_ai_score", -0.1), ("afts_regno_ai_score", True),
    ("afts_regno_ai_char_scores", "["), ("camera_type", "x" * 129), ("time_check", "01.08.2021 09:02"),
    ("direction", 2), ("direction", None),
])
def test_schema_and_validator_reject_the_same_bad_fields(record, field, value):
    """A rule the schema expresses rejects what the validator rejects, for the same field."""
    bad = dict(record, **{field: value})
    assert not jsonschema.Draft4Validator(RECORD_SCHEMA).is_valid(bad)
    with pytest.raises(RecordError) as error:
        parse_record(bad)
    assert error.value.field == field


def _record_strategy():
    """Records drawn from the record schema by schemathesis' own generator (the one the fuzz test uses)."""
    document = {"openapi": "3.0.3", "info": {"title": "records", "version": "1"}, "paths": {"/r": {"post": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": RECORD_SCHEMA}}},
        "responses": {"200": {"description": "ok"}}}}}}
    return schemathesis.openapi.from_dict(document)["/r"]["POST"].as_strategy()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_record_strategy())
def test_records_the_schema_generates_pass_or_fail_only_on_unexpressed_rules(case):
    """A record the schema allows is accepted, unless it breaks one of the rules the schema cannot express."""
    assert isinstance(case.body, dict)
    try:
        parse_record(case.body)
    except RecordError as error:
        assert error.problem.startswith(UNEXPRESSED), error


def test_swagger_ui_is_served(client):
    """/docs is an HTML page that loads Swagger UI's bundle, served by the app itself, on /openapi.json."""
    page = client.get("/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert '"/openapi.json"' in html
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        assert asset in html
        assert client.get(asset).status_code == 200


#: The schemathesis checks left out, and why: the service rejects, with a 400 naming the field, some
#: records the schema allows (a numeric string out of range, 30 February), which this check counts as
#: failures. Everything else runs: server errors, status codes, content types, headers, response
#: bodies against the document, schema-violating requests rejected, and auth enforced.
EXCLUDED_CHECKS = "positive_data_acceptance"


@pytest.mark.gunicorn
def test_schemathesis_finds_nothing_against_live_gunicorn(tmp_path):
    """schemathesis' CLI, from /openapi.json, against a real 2-worker gunicorn: a bounded, seeded run, no failure."""
    # With the prediction log on, so POST /reg/feedback is reached (without it, it is a 404).
    # Its key is a scoring key: POST /reg/feedback answers it 403, as documented.
    environment = {**KEYS_ENV, "PREDICTION_LOG_DIR": str(tmp_path / "log")}
    with gunicorn(environment, tmp_path / "gunicorn.log", workers=2) as server:
        paths = requests.get(f"{server.base_url}/openapi.json", timeout=10).json()["paths"]
        # Every operation but GET /openapi.json: schemathesis leaves out the document it was loaded from.
        operations = sum(method in ("get", "post") for path in paths.values() for method in path) - 1
        run = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{server.base_url}/openapi.json",
             "--header", f"x-api-key: {API_KEY}", "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
             "--max-examples", "50", "--seed", "20261122", "--no-color"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
        log = server.output()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert tested and int(tested.group(1)) == operations, run.stdout[-2000:]  # every operation of the document
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated and int(generated.group(1)) >= 100 and generated.group(1) == generated.group(2), run.stdout[-2000:]
    assert "Traceback" not in log and '"status":500' not in log
