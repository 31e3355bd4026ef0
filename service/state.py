"""What the service holds per process: settings, the loaded model, keys, cache and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import Flask

from config import Settings
from model.engine import ScoringEngine
from model.routing import Routing
from model.scorer import Scorer
from service.cache import ScoreCache
from service.http.auth import ApiKeys
from service.lifecycle.shadow import ShadowScorer
from service.observe.metrics import ServiceMetrics
from service.predictions.shipper import Shipper
from service.predictions.spool import PredictionLog
from service.quality import PassIndex

_EXTENSION = "regno"


@dataclass
class ServiceState:
    """Everything a view needs, built once in the app factory; only `routing` changes, by a swap."""

    settings: Settings
    routing: Routing
    api_keys: ApiKeys
    cache: ScoreCache
    #: None when METRICS_ENABLED is false.
    metrics: ServiceMetrics | None
    #: Scores through the cache, reporting to the metrics.
    engine: ScoringEngine
    shadow: ShadowScorer
    started: float = field(default_factory=time.monotonic)
    #: The encoded OpenAPI document and the identity of the model it shows (service/api/docs.py).
    openapi_document: tuple[bytes, bytes] | None = field(default=None, repr=False)
    #: The last model the watcher refused: {"version", "error", "at"}, for /health.
    model_refusal: dict | None = None
    #: The prediction log and its shipper; None when PREDICTION_LOG_DIR is unset.
    prediction_log: PredictionLog | None = None
    shipper: Shipper | None = field(default=None, repr=False)
    #: The host's pass index, which labels are matched with; None when the prediction log is off.
    pass_index: PassIndex | None = field(default=None, repr=False)
    #: The keys POST /reg/feedback takes (LABEL_API_KEYS); api_keys are the scoring keys.
    label_keys: ApiKeys | None = field(default=None, repr=False)
    #: Watches MODELS_DIR's pointers (service/lifecycle/watcher.py); None with MODEL_PATH.
    watcher: object | None = field(default=None, repr=False)
    #: What the model syncer last did (service/lifecycle/source_status.py); None with MODEL_PATH.
    source_status: object | None = field(default=None, repr=False)

    @property
    def scorer(self) -> Scorer:
        """The current model's scorer."""
        return self.routing.current.scorer


def init_app(app: Flask, state: ServiceState) -> None:
    """Attach the state to the app."""
    app.extensions[_EXTENSION] = state


def service_state(app: Flask) -> ServiceState:
    """The state attached to app."""
    return app.extensions[_EXTENSION]
