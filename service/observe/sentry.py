"""Sentry error reporting: started per worker, tagged with the model, scrubbed of bodies and plates."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import sentry_sdk
from flask import g, has_request_context, request
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

from config import Settings

#: Request headers that may reach Sentry; everything else (the API key first) is dropped.
SAFE_HEADERS = {"content-type", "content-length", "user-agent", "x-request-id", "host"}
#: Routes never traced: probes and scrapes would drown the real traffic.
UNTRACED_PREFIXES = ("/health", "/metrics")
REDACTED = "[redacted]"


def package_version() -> str:
    """The installed version of this service."""
    try:
        return metadata.version("regno-api")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def remember_plates(*plates: str) -> None:
    """Note the plates of the request in progress, so an event about it can be scrubbed of them."""
    g.sentry_plates = plates


def _redact(value: Any, plates: tuple[str, ...]) -> Any:
    """value with every plate string replaced, recursively through dicts and lists."""
    if isinstance(value, str):
        for plate in plates:
            if plate and plate in value:
                value = value.replace(plate, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: _redact(item, plates) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(item, plates) for item in value]
    return value


def scrub_event(event: dict, hint: dict | None = None) -> dict:
    """Drop request bodies, cookies, query strings and unsafe headers; redact the request's plates everywhere."""
    request_info = event.get("request")
    if isinstance(request_info, dict):
        for field in ("data", "cookies", "query_string", "env"):
            request_info.pop(field, None)
        headers = request_info.get("headers") or {}
        request_info["headers"] = {name: value for name, value in headers.items() if name.lower() in SAFE_HEADERS}
    plates = tuple(g.get("sentry_plates", ())) if has_request_context() else ()
    return _redact(event, plates) if plates else event


def traces_sampler(rate: float):
    """A sampler that traces nothing under /health and /metrics and `rate` of the rest."""
    def sample(context: dict) -> float:
        environ = context.get("wsgi_environ") or {}
        path = environ.get("PATH_INFO", "")
        return 0.0 if path.startswith(UNTRACED_PREFIXES) else rate

    return sample


def init_sentry(settings: Settings, model_version: str) -> bool:
    """Start the SDK in this process if SENTRY_DSN is set; True if it started."""
    if not settings.sentry_dsn:
        return False
    rate = settings.sentry_traces_sample_rate
    flask_integration = [FlaskIntegration()] if rate > 0 else []
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment or settings.env,
        release=f"regno-api@{package_version()}+{model_version}",
        traces_sampler=traces_sampler(rate) if rate > 0 else None,
        send_default_pii=False,
        include_local_variables=False,  # frame locals hold records and plates
        max_request_body_size="never",
        before_send=scrub_event,
        integrations=flask_integration,
        # Flask's integration wraps every request in scopes and sessions, and the logging integration sees
        # every access line: together about a tenth of a request's time here (README, Observability).
        # Errors need neither: the error handler captures them once, with the endpoint and request id.
        # So Flask's runs only when tracing is asked for, and logging's never.
        disabled_integrations=[LoggingIntegration] + ([] if flask_integration else [FlaskIntegration]),
    )
    tag_model(model_version)
    return True


def tag_model(version: str) -> None:
    """Tag this process's later events with the model that answers (at start, and again after a swap)."""
    sentry_sdk.set_tag("model_version", version)


def capture(error: BaseException) -> None:
    """Send an unhandled error of the current request to Sentry (a no-op when it is off), tagged with its endpoint."""
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("endpoint", request.endpoint or "none")
        scope.set_tag("request_id", g.get("request_id", ""))
        scope.set_transaction_name(request.endpoint or request.method)
        scope.set_context("http", {"method": request.method, "path": request.path})
        sentry_sdk.capture_exception(error)


def report_model_refused(reason: str, pointer: str, version: str, message: str) -> None:
    """Send the syncer's refusal of a model to Sentry as one warning event (a no-op when it is off)."""
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("refusal_reason", reason)
        scope.set_tag("pointer", pointer)
        scope.set_tag("refused_version", version)
        scope.set_level("warning")
        sentry_sdk.capture_message(f"model {version} refused as {pointer} ({reason}): {message}")


def flush(timeout_s: float = 2.0) -> None:
    """Send what is queued before the process exits."""
    sentry_sdk.flush(timeout=timeout_s)
