"""The app factory: create_app builds the regno-api Flask application from settings, and the worker hooks."""

from __future__ import annotations

import functools
import logging
import sys

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Settings, SettingsError, named_keys
from model.engine import ScoringEngine
from model.registry import load_serving
from model.routing import ModelSlot, Routing, pass_key
from model.scorer import ModelLoadError
from service import quality, state
from service.api import debug, docs, explain, feedback, health, scoring
from service.cache import ScoreCache
from service.http import envelope, exposure
from service.http.auth import ApiKeys
from service.internals import ServiceFlask
from service.lifecycle.shadow import ShadowScorer
from service.lifecycle.source_status import SourceStatus
from service.lifecycle.watcher import ModelWatcher
from service.observe import access_log, sentry
from service.observe.metrics import init_metrics
from service.predictions import log_setup

log = logging.getLogger("regno")

#: gunicorn's exit code for "App failed to load": its master halts instead of respawning workers.
APP_LOAD_ERROR = 4


def create_app(settings: Settings | None = None, shared_metrics: bool = False) -> Flask:
    """Build the app from settings: the model, the parts that score and observe, the blueprints.

    shared_metrics: the process is one of gunicorn's workers, which share their metrics through the folder
    gunicorn.conf.py sets up; otherwise the process is its own and only worker.
    """
    settings = settings or Settings.from_env()
    settings.check()
    configure_logger(settings)
    scorer, pointer = load_serving(settings.models_dir, settings.model_path)
    app = ServiceFlask(__name__, static_folder=None)  # no static files of its own; Swagger UI brings its own
    no_redirects(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    keys = ApiKeys(named_keys(settings.effective_api_keys(), "API_KEYS"),
                   certificate_suffices=settings.client_cert_suffices)
    # A client certificate never stands in for a label key: labels need a key of their own.
    label_keys = ApiKeys(named_keys(settings.effective_label_api_keys(), "LABEL_API_KEYS"), scope="label")
    access_log.init_app(app, enabled=logging.getLevelName(settings.log_level) <= logging.INFO)
    scrape_guard = functools.partial(exposure.require_operator, settings, keys, key_inside=settings.metrics_require_key)
    metrics = init_metrics(app, scrape_guard, shared_metrics) if settings.metrics_enabled else None
    cache = ScoreCache.from_settings(settings, observer=metrics)
    routing = Routing(ModelSlot.of(scorer, settings.batch_max_size), canary_share=settings.canary_share)
    pass_index = quality.pass_index(settings)
    prediction_log, shipper = log_setup.from_settings(settings, observer=metrics, index=pass_index)
    app_state = state.ServiceState(settings, routing, keys, cache, metrics,
                                   engine=ScoringEngine(settings.pick_threshold, cache, observer=metrics,
                                                        pass_key=pass_key(settings.effective_pass_id_secret())),
                                   shadow=ShadowScorer(settings.shadow_share, settings.pick_threshold, metrics),
                                   prediction_log=prediction_log, shipper=shipper, pass_index=pass_index,
                                   label_keys=label_keys)
    if pointer is not None:
        app_state.watcher = ModelWatcher(app_state, settings.models_dir, settings.model_poll_s, pointer)
        app_state.source_status = SourceStatus(settings.models_dir, metrics)
        if not shared_metrics:  # gunicorn's workers read it in their watcher; the master exports nothing
            app_state.source_status.refresh()
    state.init_app(app, app_state)
    register_blueprints(app, settings)
    envelope.register_error_handlers(app)
    trust_proxies(app, settings.forwarded_hops)
    if metrics is not None and not shared_metrics:
        metrics.worker_started(scorer, cache.breaker_state)  # one process: it is its own worker
        metrics.quality_targets(settings.quality_pick_accuracy_floor, settings.quality_min_labels)
    log.info("model %s loaded from %s (sha256 %s)", scorer.version, scorer.path, scorer.checksum[:12])
    log.info("cache: L1 %d entries per worker, L2 %s; metrics %s; sentry %s; prediction log %s",
             settings.cache_l1_size, "redis" if settings.redis_url else "off", "on" if metrics else "off",
             "on" if settings.sentry_dsn else "off",
             "off" if prediction_log is None else f"to {settings.prediction_log_nats_url or 'parquet'}")
    if settings.development and not settings.api_keys:
        log.warning("development mode: accepting the development API key only")
    log_label_keys(settings, label_keys)
    return app


def log_label_keys(settings: Settings, label_keys: ApiKeys) -> None:
    """One start-up line when labels are refused for want of a label key, or taken with the development one."""
    if not label_keys:
        log.warning("no label key is set (LABEL_API_KEYS or LABEL_API_KEYS_FILE): POST /reg/feedback refuses "
                    "every label with 403")
    elif settings.development and not settings.label_api_keys:
        log.warning("development mode: accepting the development label key only")


def create_app_or_exit(settings: Settings | None = None, shared_metrics: bool = False) -> Flask:
    """create_app, or one line an operator can act on and exit, instead of a traceback from gunicorn."""
    try:
        return create_app(settings, shared_metrics)
    except (SettingsError, ModelLoadError) as error:
        print(f"regno-api cannot start: {error}", file=sys.stderr, flush=True)
        sys.exit(APP_LOAD_ERROR)


def register_blueprints(app: Flask, settings: Settings) -> None:
    """One blueprint per concern; the debug one only when asked for."""
    app.register_blueprint(scoring.bp)
    app.register_blueprint(explain.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(docs.bp)
    if settings.sentry_debug_route:
        app.register_blueprint(debug.bp)


def no_redirects(app: Flask) -> None:
    """Route without werkzeug's redirects (a doubled slash merged, a trailing slash added): Flask sends them as
    HTML, to an absolute URL built from the request's Host header. A doubled slash is a 404 in the envelope, and a
    rule matches with or without its trailing slash. Set before any rule is added: each reads them then."""
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False


def trust_proxies(app: Flask, hops: int) -> None:
    """Take the client address, scheme and host from the X-Forwarded-* headers of that many proxies in front.

    Only the proxy can reach gunicorn when there is one (a unix socket or loopback), and nginx overwrites these
    headers, so a client cannot forge its address; with no proxy (hops 0) the headers are ignored.
    """
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def configure_logger(settings: Settings) -> None:
    """Service lines to stderr at the configured level."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(settings.log_level)


def start_worker(app: Flask) -> None:
    """Per-worker start, after the fork: Sentry, the probe prediction, the worker's gauges."""
    if "regno" not in app.extensions:
        return  # another app under this gunicorn config (the benchmark's floor)
    current = state.service_state(app)
    sentry.init_sentry(current.settings, current.scorer.version)
    score = current.scorer.probe()
    if current.watcher is not None:
        current.watcher.start()  # threads do not survive the fork: each worker starts its own
    if current.metrics is not None:
        current.metrics.worker_started(current.scorer, current.cache.breaker_state)
        settings = current.settings
        current.metrics.quality_targets(settings.quality_pick_accuracy_floor, settings.quality_min_labels)
    if current.prediction_log is not None:
        current.prediction_log.start()
        # gunicorn.conf.py runs the spool's shipper in a process of its own; this one stands by in case it stops.
        current.shipper.start(standby=True)
    log.info("worker warmed up: probe positive=%.6f", score.positive)


def stop_worker(app: Flask) -> None:
    """Per-worker clean exit: write what the prediction log holds and seal its segment, flush Sentry."""
    if "regno" in app.extensions:
        current = state.service_state(app)
        if current.prediction_log is not None:
            current.prediction_log.close()
    sentry.flush()
