"""The debug blueprint: POST /debug/sentry fails on purpose, to check that errors reach Sentry scrubbed."""

from __future__ import annotations

from flask import Blueprint, request

from model.records import parse_record
from service.http.request_body import read_json_object
from service.api.scoring import require_api_key
from service.observe.sentry import remember_plates

bp = Blueprint("debug", __name__, url_prefix="/debug")
bp.before_request(require_api_key)  # debug routes need a key, checked the way scoring checks it


class ForcedError(RuntimeError):
    """The error /debug/sentry raises."""


@bp.post("/sentry")
def sentry_test():
    """Raise an error that carries the record's plate, as a careless bug would."""
    record = parse_record(read_json_object(request))
    remember_plates(record.regno_recognize, record.afts_regno_ai)
    raise ForcedError(f"forced error while scoring {record.afts_regno_ai} against {record.regno_recognize}")
