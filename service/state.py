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


@dataclass(frozen=True)
class ModelSlot:
    """A loaded model and what derives from it. A swap replaces the whole slot, so a request that reads
    state.model once uses one model throughout: never one model's cache key with another's score."""

    scorer: Scorer
    #: Shares CatBoost calls between concurrent requests of this worker.
    batcher: MicroBatcher
    #: The cache-key identity of the model (see cache.model_identity).
    identity: bytes
    #: Keys the hashes of raw bodies whose answers are remembered, per model (see cache.answer_salt).
    salt: bytes

    @classmethod
    def of(cls, scorer: Scorer, batch_max_size: int) -> "ModelSlot":
        """The slot of a loaded scorer."""
        identity = model_identity(scorer)
        return cls(scorer, MicroBatcher(scorer.predict_vectors, batch_max_size), identity, answer_salt(identity))


@dataclass
class ServiceState:
    """Everything a view needs, built once in the app factory; only `model` changes, by a swap."""

    settings: Settings
    model: ModelSlot
    api_keys: ApiKeys
    cache: ScoreCache
    #: None when METRICS_ENABLED is false.
    metrics: ServiceMetrics | None
    started: float = field(default_factory=time.monotonic)
    #: The encoded OpenAPI document, built on its first request in each process (service/docs.py).
    openapi_document: bytes | None = field(default=None, repr=False)
    #: The last model the watcher refused: {"version", "error", "at"}, for /health.
    model_refusal: dict | None = None
    #: Watches MODELS_DIR's `current` pointer (service/model_watcher.py); None with MODEL_PATH.
    watcher: object | None = field(default=None, repr=False)

    @property
    def scorer(self) -> Scorer:
        """The current model's scorer (a request that needs several of its parts reads `model` once instead)."""
        return self.model.scorer


def init_app(app: Flask, state: ServiceState) -> None:
    """Attach the state to the app."""
    app.extensions[_EXTENSION] = state


def service_state(app: Flask) -> ServiceState:
    """The state attached to app."""
    return app.extensions[_EXTENSION]
