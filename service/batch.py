"""Scoring many records in one request: validation per record, the cache, then one CatBoost call."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from model.records import json_kind, parse_records
from service.answer import answer_body
from service.state import ServiceState


def batch_records(value: Any, limit: int) -> list:
    """The records of a batch body: a JSON array, or an object whose "records" is one; 413 past limit."""
    if isinstance(value, dict):
        if "records" not in value:
            raise BadRequest('a batch object must hold its records in "records"')
        value = value["records"]
    if not isinstance(value, list):
        raise BadRequest(f"a batch must be a JSON array of records or {{\"records\": [...]}}, got {json_kind(value)}")
    if len(value) > limit:
        raise RequestEntityTooLarge(f"a batch holds at most {limit} records, got {len(value)}")
    return value


def score_records(state: ServiceState, records: list) -> list[dict]:
    """One result per record, in order: the answer /reg/ gives, or {"error", "index"} for a bad record.

    Valid records are looked up in the cache together (one Redis round trip), and the ones it does not
    have are scored in one CatBoost call per answering model (the candidate answers its canary share).
    """
    results: list[dict | None] = [None] * len(records)
    valid, errors, failures = parse_records(records)
    for index, message in errors.items():
        results[index] = {"error": message, "index": index}
    routing = state.routing  # read once: a swap during the batch does not change who answers it
    models = [routing.for_record(record) for _, record in valid]
    keys = [state.cache.key(model.identity, record) for model, (_, record) in zip(models, valid)]
    found = state.cache.get_many(keys)
    missing = [position for position, (score, _) in enumerate(found) if score is None]
    features_s = inference_s = 0.0
    for model in {id(models[position]): models[position] for position in missing}.values():
        # One CatBoost call per model: the current one, and the candidate for its canary share.
        group = [position for position in missing if models[position] is model]
        started = time.perf_counter()
        vectors = [model.scorer.build_vector(valid[position][1]) for position in group]
        built = time.perf_counter()
        scores = model.scorer.predict_vectors(vectors)
        features_s, inference_s = features_s + built - started, inference_s + time.perf_counter() - built
        for position, score in zip(group, scores):
            found[position] = (score, found[position][1])
            state.cache.put(keys[position], score)
    threshold = state.settings.pick_threshold
    for model, (index, record), (score, _) in zip(models, valid, found):
        results[index] = answer_body(record, score, threshold, model.scorer.version)
    if state.metrics is not None:
        state.metrics.batch_scored(
            [results[valid[position][0]] for position in missing],
            Counter(where for _, where in found), failures,
            *((features_s / len(missing), inference_s / len(missing)) if missing else (0.0, 0.0)))
    return results
