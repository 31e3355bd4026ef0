"""The regno-api Flask application: create_app builds it from settings."""

from __future__ import annotations

import logging
import sys

from flask import Flask

from config import Settings, SettingsError
from model.scorer import ModelLoadError, Scorer
from service import envelope, health, scoring, state
from service.auth import ApiKeys
from service.cache import ScoreCache, model_identity

log = logging.getLogger("regno")

#: gunicorn's exit code for "App failed to load": its master halts instead of respawning workers.
APP_LOAD_ERROR = 4


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app: check settings, load the model once, register blueprints and error handlers."""
    settings = settings or Settings.from_env()
    settings.check()
    configure_logger(settings)
    scorer = Scorer.load(settings.model_path)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    keys = ApiKeys(settings.effective_api_keys())
    cache = ScoreCache.from_settings(settings)
    state.init_app(app, state.ServiceState(settings, scorer, keys, cache, model_identity(scorer)))
    register_blueprints(app)
    envelope.register_error_handlers(app)
    log.info("model %s loaded from %s (sha256 %s)", scorer.version, scorer.path, scorer.checksum[:12])
    log.info("cache: L1 %d entries per worker, L2 %s", settings.cache_l1_size,
             "redis" if settings.redis_url else "off")
    if settings.development and not settings.api_keys:
        log.warning("development mode: accepting the development API key only")
    return app


def create_app_or_exit(settings: Settings | None = None) -> Flask:
    """create_app, or one line an operator can act on and exit, instead of a traceback from gunicorn."""
    try:
        return create_app(settings)
    except (SettingsError, ModelLoadError) as error:
        print(f"regno-api cannot start: {error}", file=sys.stderr, flush=True)
        sys.exit(APP_LOAD_ERROR)


def register_blueprints(app: Flask) -> None:
    """One blueprint per concern."""
    app.register_blueprint(scoring.bp)
    app.register_blueprint(health.bp)


def configure_logger(settings: Settings) -> None:
    """Log the service's own lines to stderr at the configured level."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(settings.log_level)


def warm_up(app: Flask) -> None:
    """Run the probe prediction in this process (called in each gunicorn worker after the fork)."""
    score = state.service_state(app).scorer.probe()
    log.info("worker warmed up: probe positive=%.6f", score.positive)
