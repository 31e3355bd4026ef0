"""The health blueprint: liveness, readiness and a status summary; no key needed.

The summary's details (checksums, the candidate, the model source and its errors, refusals, the cache) go to the
internal side only (service/http/exposure.py); the public door gets the status, the model's version and uptime.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app

from service.http.envelope import fail, ok
from service.http.exposure import internal
from service.state import service_state

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("/live")
def live():
    """The process answers."""
    return ok({"status": "alive"})


@bp.get("/ready")
def ready():
    """The model is loaded and a probe prediction has succeeded in this worker."""
    scorer = service_state(current_app).scorer
    if not scorer.ready():
        return fail("not ready: the probe prediction failed", 503)
    return ok({"status": "ready", "model": scorer.version})


@bp.get("", strict_slashes=False)
def status():
    """Status, model identity and uptime; the details only to the internal side."""
    state = service_state(current_app)
    routing = state.routing
    uptime_s = round(time.monotonic() - state.started, 3)
    if not internal(state.settings):
        return ok({"status": "ok", "model": {"version": routing.current.scorer.version}, "uptime_s": uptime_s})
    candidate = routing.candidate
    return ok(
        {
            "status": "ok",
            "model": _model(routing.current, state.engine),
            "candidate": None if candidate is None else {**_model(candidate, state.engine), "canary_share": routing.canary_share,
                                                         "shadow_share": state.settings.shadow_share},
            "model_refused": state.model_refusal,
            "model_source": None if state.source_status is None else state.source_status.summary(),
            "uptime_s": uptime_s,
            "cache": state.cache.status(),
        }
    )


def _model(slot, engine) -> dict:
    """A model's version, checksum and the pick threshold it is answered with (and whether it is its own)."""
    return {"version": slot.scorer.version, "checksum": slot.scorer.checksum,
            "threshold": engine.threshold_of(slot), "threshold_source": "pick_threshold" if slot.threshold is None
            else "model"}
