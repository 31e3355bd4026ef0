"""The explain blueprint: POST /reg/explain scores one record and says which features made its score; needs a key.

Off the scoring path on purpose: no cache, no micro-batcher, no scoring metrics, no prediction-log row.
"""

from __future__ import annotations

from flask import Blueprint, current_app, request
from werkzeug.exceptions import BadRequest

from model.engine import pick
from model.explain import explain
from model.records import canonical_bytes, parse_record
from model.routing import pass_digest
from service.api.scoring import require_api_key
from service.http.envelope import ok
from service.http.request_body import decode_json_object, read_json_body
from service.observe.sentry import remember_plates
from service.state import service_state

#: Contributions listed when the request does not say how many.
DEFAULT_TOP = 10


def parse_top(text: str | None, features: int) -> int | None:
    """The ?top= of a request: a count in 1..features, or None for "all"; 400 for anything else."""
    if text is None:
        return min(DEFAULT_TOP, features)
    if text == "all":
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= features:
        raise BadRequest(f'top must be a whole number from 1 to {features}, or "all"; got {text[:20]!r}')
    return int(text)


bp = Blueprint("explain", __name__, url_prefix="/reg")
bp.before_request(require_api_key)  # the key is checked the way scoring checks it
# A bad record gets the app's 400 (service/http/envelope.py); unlike /reg/, no prediction-log row and no count of
# validation failures: explaining is not a pass.


@bp.post("/explain")
def explain_one():
    """Score one record with the model that would answer it, and list the features' SHAP contributions."""
    state = service_state(current_app)
    routing = state.routing  # read once: the answer and its explanation come from one model, even across a swap
    record = parse_record(decode_json_object(read_json_body(request)))
    remember_plates(record.regno_recognize, record.afts_regno_ai)
    digest = pass_digest(canonical_bytes(record), state.engine.pass_key)  # the id /reg/ gives the same record
    slot = routing.for_pass(digest)
    top = parse_top(request.args.get("top"), len(slot.scorer.feature_names))
    explanation = explain(slot.scorer, record, top)
    threshold = state.engine.threshold_of(slot)
    regno, source = pick(record, explanation.score, threshold)
    return ok({"positive": explanation.score.positive, "negative": explanation.score.negative, "regno": regno,
               "source": source, "model": slot.version, "threshold": threshold, "pass_id": digest.hex(),
               "raw_score": explanation.raw_score, "expected_value": explanation.expected_value,
               "contributions": [contribution.answer() for contribution in explanation.contributions],
               "other": explanation.other, "features": explanation.features})
