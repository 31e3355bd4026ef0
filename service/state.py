"""What the service holds per process: settings, the loaded model, keys, cache and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import Flask

from config import Settings
from model.scorer import Scorer
from service.auth import ApiKeys
from service.batcher import MicroBatcher
from service.cache import ScoreCache, answer_salt, model_identity
from service.metrics import ServiceMetrics

_EXTENSION = "regno"


@dataclass
class ServiceState:
    """Everything a view needs, built once in the app factory."""

    settings: Settings
    scorer: Scorer
    api_keys: ApiKeys
    cache: ScoreCache
    #: None when METRICS_ENABLED is false.
    metrics: ServiceMetrics | None
    #: Shares CatBoost calls between concurrent requests of this worker.
    batcher: MicroBatcher
    started: float = field(default_factory=time.monotonic)
    #: The encoded OpenAPI document, built on its first request in each process (service/docs.py).
    openapi_document: bytes | None = field(default=None, repr=False)
    #: The cache-key identity of the loaded model, derived once from it.
    model_identity: bytes = field(init=False)
    #: Keys the hashes of raw bodies whose answers are remembered, per model (see cache.answer_salt).
    answer_salt: bytes = field(init=False)

    def __post_init__(self) -> None:
        """Derive the model's cache identities from the loaded model."""
        self.model_identity = model_identity(self.scorer)
        self.answer_salt = answer_salt(self.model_identity)


def init_app(app: Flask, state: ServiceState) -> None:
    """Attach the state to the app."""
    app.extensions[_EXTENSION] = state


def service_state(app: Flask) -> ServiceState:
    """The state attached to app."""
    return app.extensions[_EXTENSION]
