"""The OpenAPI 3.0 document of the service, built from the record schema the validator shares."""

from __future__ import annotations

from config import Settings
from model.record_schema import plate_schema, record_schema
from model.records import PLATE_FORBIDDEN_CHARS, TIMESTAMP_PATTERN
from model.scorer import PROBE_RECORD

VERSION = "3.0.3"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(body: dict, status: str) -> dict:
    """The {"body": ..., "status": ...} envelope around body."""
    return {"type": "object", "required": ["body", "status"],
            "properties": {"body": body, "status": {"type": "string", "enum": [status]}}}


def _json(schema: dict, description: str, example: object | None = None, headers: dict | None = None) -> dict:
    """A response with a JSON body."""
    content = {"schema": schema}
    if example is not None:
        content["example"] = example
    response = {"description": description, "content": {"application/json": content}}
    if headers:
        response["headers"] = headers
    return response


def _fail(description: str) -> dict:
    """A failure response in the fail envelope."""
    return _json(_ref("Fail"), description)


_REQUEST_ID = {"X-Request-ID": {"description": "the caller's request id when it is short and plain, else a new one",
                                "schema": {"type": "string"}}}


def build(settings: Settings, model_version: str, answer_example: dict) -> dict:
    """The whole document for an app with these settings; answer_example is the model's answer to PROBE_RECORD."""
    bad_record = {**PROBE_RECORD, "direction": 7}
    key_failures = {"401": _fail("no API key, or one that is not accepted")}
    scoring_key_failures = {**key_failures, "403": _fail("a label key: label keys do not score")}
    body_failures = {
        "400": _fail("the body is not JSON of the expected shape, or a record field is wrong (the message names it)"),
        "413": _fail("the body is larger than the limit"),
        "415": _fail("the Content-Type is not application/json"),
    }
    scoring = {"security": [{"apiKey": []}], "tags": ["scoring"]}
    metrics_security = [{"apiKey": []}] if settings.metrics_require_key else []
    document = {
        "openapi": VERSION,
        "info": {
            "title": "regno-api",
            "version": model_version,
            "description": "Decides whether the AI recogniser's plate should replace the camera's. Every answer "
                           "is an envelope: `{\"body\": ..., \"status\": \"ok\"}` or `{\"body\": \"<what went "
                           "wrong>\", \"status\": \"fail\"}`.",
        },
        "paths": {
            "/reg/": {"post": {
                **scoring,
                "operationId": "score",
                "summary": "Score one pass",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"anyOf": [_ref("Record"), {
                        "type": "string", "description": "the record JSON-encoded once more (older clients)"}]},
                    "example": PROBE_RECORD}}},
                "responses": {
                    "200": _json(_envelope(_ref("Answer"), "ok"), "the model's probabilities and the plate it picks",
                                 {"body": answer_example, "status": "ok"},
                                 {**_REQUEST_ID, "X-Cache": {"description": "where the score came from",
                                                             "schema": {"type": "string",
                                                                        "enum": ["hit-l1", "hit-l2", "miss"]}},
                                  "X-Pass-Id": {"description": "the pass id, as in the body",
                                                "schema": {"type": "string"}}}),
                    **body_failures, **scoring_key_failures,
                },
            }},
            "/reg/batch": {"post": {
                **scoring,
                "operationId": "scoreBatch",
                "summary": "Score many passes in one call",
                "description": f"At most {settings.batch_request_max_records} records and "
                               f"{settings.batch_request_max_bytes} bytes. One result per record, in order. A record "
                               "that fails validation gets an error result and the others are still scored.",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"anyOf": [_ref("Batch"), {
                        "type": "object", "required": ["records"], "properties": {"records": _ref("Batch")}}]},
                    "example": [PROBE_RECORD, bad_record]}}},
                "responses": {
                    "200": _json(_envelope({"type": "array", "items": {"anyOf": [_ref("Answer"), _ref("RecordError")]}},
                                           "ok"), "one result per record, in order",
                                 {"body": [answer_example, {"error": "direction: must be 0 or 1, got 7", "index": 1}],
                                  "status": "ok"}, _REQUEST_ID),
                    **body_failures, **scoring_key_failures,
                },
            }},
            "/reg/explain": {"post": {
                **scoring,
                "operationId": "explain",
                "summary": "Score one pass and show which features made the score",
                "description": "The answer POST /reg/ gives, by the same model, never from the cache, with CatBoost's "
                               "SHAP values: expected_value + the sum of every feature's contribution is raw_score "
                               "(log-odds), and sigmoid(raw_score) is positive.",
                "parameters": [{"name": "top", "in": "query", "required": False,
                                "description": "how many contributions to list, largest first: 1 to the model's "
                                               "number of features, or all (default 10)",
                                "schema": {"type": "string", "pattern": "^(all|[1-9][0-9]*)$"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("Record"), "example": PROBE_RECORD}}},
                "responses": {
                    "200": _json(_envelope(_ref("Explanation"), "ok"), "the answer and its explanation",
                                 headers=_REQUEST_ID),
                    **body_failures,
                    "400": _fail("the body is not a JSON object, a record field is wrong (the message names it), "
                                 "or top is out of range"),
                    **scoring_key_failures,
                },
            }},
            "/reg/feedback": {"post": {
                "security": [{"labelKey": []}], "tags": ["labels"],
                "operationId": "feedback",
                "summary": "Send the true plates of answered passes (labels)",
                "description": f"Needs a label key (LABEL_API_KEYS): a scoring key gets 403. One label, an array of "
                               f"them, or {{\"labels\": [...]}}; at most {settings.batch_request_max_records} "
                               "labels. One result per label, in order: accepted (a correction, \"correction\": "
                               "true, names the label it replaced in corrects), or rejected with the reason "
                               "(malformed, unknown_pass, ambiguous, duplicate, uncorrectable, not_stored: send it "
                               "again). Needs the prediction log (PREDICTION_LOG_DIR).",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"anyOf": [_ref("Label"), {"type": "array", "items": {}}, {
                        "type": "object", "required": ["labels"],
                        "properties": {"labels": {"type": "array", "items": {}}}}]},
                    "example": {"pass_id": "3f9c2a0b7d1e4c55", "true_regno": PROBE_RECORD["afts_regno_ai"],
                                "source": "manual_review"}}}},
                "responses": {
                    "200": _json(_envelope(_object({
                        "accepted": {"type": "integer", "minimum": 0}, "rejected": {"type": "integer", "minimum": 0},
                        "results": {"type": "array", "items": _ref("LabelResult")}}), "ok"),
                        "one result per label, in order", headers=_REQUEST_ID),
                    "404": _fail("the prediction log is off: labels have nothing to join"),
                    "422": _fail("one label whose pass is unknown (never answered, sampled out or too old)"),
                    "409": _fail("one label whose pass is already labelled, a correction of a pass with no label, "
                                 "or a request id of several passes"),
                    "403": _fail("a scoring key, not a label key (or no label key is configured)"),
                    "503": _fail("one label the log could not queue: send it again"),
                    **body_failures, **key_failures,
                },
            }},
            "/health": {"get": {"operationId": "status", "summary": "Status, model and cache", "tags": ["health"],
                                "responses": {"200": _json(_envelope(_ref("Status"), "ok"), "the service's status")}}},
            "/health/live": {"get": {"operationId": "live", "summary": "The process answers", "tags": ["health"],
                                     "responses": {"200": _json(_envelope(_object({"status": _string()}), "ok"),
                                                                "alive")}}},
            "/health/ready": {"get": {
                "operationId": "ready", "summary": "The model answers a probe in this worker", "tags": ["health"],
                "responses": {"200": _json(_envelope(_object({"status": _string(), "model": _string()}), "ok"),
                                           "ready"),
                              "503": _fail("the probe prediction failed")}}},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document", "tags": ["operations"],
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document")}}},
            "/docs": {"get": {
                "operationId": "docs", "summary": "Swagger UI for this document", "tags": ["operations"],
                "responses": {"200": {"description": "an HTML page",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/metrics": {"get": {
                "operationId": "metrics", "summary": "Prometheus metrics of all workers", "tags": ["operations"],
                "security": metrics_security,
                "responses": {"200": {"description": "Prometheus text format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **(key_failures if settings.metrics_require_key else {})}}},
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                           "description": "a scoring key (API_KEYS)"},
                                "labelKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                             "description": "a label key (LABEL_API_KEYS): labels only"}},
            "schemas": {
                "Record": {**record_schema(), "example": PROBE_RECORD},
                # The record limit is in the description, not maxItems: past it the answer is 413, which JSON
                # Schema tools do not expect for a schema violation.
                "Batch": {"type": "array",
                          "description": f"records to score, at most {settings.batch_request_max_records}; an item "
                                         "that is not a valid Record gets an error result",
                          "items": {}},
                "Answer": _object({
                    "positive": {"type": "number", "minimum": 0, "maximum": 1,
                                 "description": "probability that the AI plate is the right one"},
                    "negative": {"type": "number", "minimum": 0, "maximum": 1},
                    "regno": {"type": "string", "description": "the picked plate"},
                    "source": {"type": "string", "enum": ["afts_regno_ai", "regno_recognize"]},
                    "model": {"type": "string", "description": "version of the model that answered"},
                    "threshold": {"type": "number", "minimum": 0, "maximum": 1,
                                  "description": "the pick threshold applied: the model's own when its metadata names "
                                                 "one, else PICK_THRESHOLD"},
                    "pass_id": {"type": "string", "pattern": "^[0-9a-f]{16}$",
                                "description": "the pass's id (a keyed hash of the record): labels name the pass "
                                               "by it"},
                }),
                "Explanation": {"allOf": [_ref("Answer"), _object({
                    "raw_score": {"type": "number", "description": "log-odds of positive"},
                    "expected_value": {"type": "number", "description": "the SHAP base value"},
                    "contributions": {"type": "array", "description": "largest absolute contribution first",
                                      "items": _object({
                                          "feature": _string(),
                                          "value": {"description": "the feature's value (null for NaN)"},
                                          "contribution": {"type": "number"}})},
                    "other": {"type": "number", "description": "the sum of the contributions not listed"},
                    "features": {"type": "integer", "minimum": 1, "description": "how many features the model has"},
                })]},
                "Label": {"type": "object", "required": ["true_regno"], "additionalProperties": False,
                          "oneOf": [{"required": ["pass_id"]}, {"required": ["request_id"]}], "properties": {
                    "pass_id": {"type": "string", "pattern": "^[0-9a-f]{16}$",
                                "description": "the pass, as its answer named it; or give request_id"},
                    "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$",
                                   "description": "the X-Request-ID of a request that scored one pass"},
                    "true_regno": {**plate_schema("the true plate, whole: no '_'"),
                                   "pattern": f"^[^_{PLATE_FORBIDDEN_CHARS}]+$"},
                    "source": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$",
                               "description": "where the truth came from: manual_review, dispute, ..."},
                    "labelled_at": {"type": "string", "pattern": f"^{TIMESTAMP_PATTERN}$",
                                    "description": "when the truth was found (UTC unless it has an offset); not "
                                                   "in the future, nor before the pass (LABEL_CLOCK_SKEW_S allowed)"},
                    "correction": {"type": "boolean", "description": "true replaces the label the pass has; "
                                                                     "without it, a second label is a duplicate"}}},
                "LabelResult": {"type": "object", "required": ["index", "status"], "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "status": {"type": "string", "enum": ["accepted", "rejected"]},
                    "pass_id": _string(), "model": _string(), "arm": _string(),
                    "label_id": {"type": "string", "description": "the stored label's id"},
                    "corrects": {"type": "string", "description": "a correction: the id of the label it replaced"},
                    "error": {"type": "string", "enum": ["malformed", "unknown_pass", "ambiguous", "duplicate",
                                                        "uncorrectable", "not_stored"]},
                    "message": _string()}},
                "RecordError": _object({"error": {"type": "string", "description": "the field and its problem"},
                                        "index": {"type": "integer", "minimum": 0}}),
                "Status": _object({"status": _string(), "model": _object({"version": _string(), "checksum": _string()}),
                                   "candidate": {"type": "object", "nullable": True,
                                                 "description": "the candidate model and its canary and shadow shares"},
                                   "model_refused": {"type": "object", "nullable": True,
                                                     "description": "the last model folder refused, and why"},
                                   "uptime_s": {"type": "number"}, "cache": {"type": "object"}}),
                "Fail": _envelope({"type": "string", "description": "what went wrong"}, "fail"),
            },
        },
    }
    if settings.sentry_debug_route:
        document["paths"]["/debug/sentry"] = {"post": {
            **scoring, "tags": ["operations"], "operationId": "debugSentry",
            "summary": "Fail on purpose with a record's plates in the error, to check Sentry gets it scrubbed",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Record")}}},
            "responses": {"500": _fail("always, after reporting the error to Sentry"), **body_failures,
                          **scoring_key_failures}}}
    return document


def _string() -> dict:
    return {"type": "string"}


def _object(properties: dict) -> dict:
    """An object that has all these properties."""
    return {"type": "object", "required": list(properties), "properties": properties}
