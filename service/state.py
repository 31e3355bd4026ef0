"""What the service holds per process: settings, the loaded model, keys, cache and metrics."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from flask import Flask

from config import Settings
from model.records import Record, canonical_bytes
from model.scorer import Scorer
from service.auth import ApiKeys
from service.batcher import MicroBatcher
from service.cache import ScoreCache, answer_salt, model_identity
from service.metrics import ServiceMetrics

_EXTENSION = "regno"


@dataclass(frozen=True)
class ModelSlot:
    """A loaded model and what derives from it: never one model's cache key with another's score."""

    scorer: Scorer
    #: Shares CatBoost calls between concurrent requests of this worker.
    batcher: MicroBatcher
    #: The cache-key identity of the model (see cache.model_identity).
    identity: bytes

    @classmethod
    def of(cls, scorer: Scorer, batch_max_size: int) -> "ModelSlot":
        """The slot of a loaded scorer."""
        return cls(scorer, MicroBatcher(scorer.predict_vectors, batch_max_size), model_identity(scorer))


@dataclass(frozen=True)
class Routing:
    """Which model answers which pass: the current one, and the candidate for a canary share of passes.

    Replaced whole when a model or the candidate changes, so a request that reads state.routing once is
    answered by one model, even across a swap.
    """

    current: ModelSlot
    candidate: ModelSlot | None = None
    canary_share: float = 0.0
    #: Keys the remembered answers: it changes with either model, so no answer outlives the routing it came from.
    salt: bytes = field(init=False)

    def __post_init__(self) -> None:
        candidate = self.candidate.identity if self.candidate is not None else b""
        object.__setattr__(self, "salt", answer_salt(self.current.identity + b"\0" + candidate))

    def for_record(self, record: Record) -> ModelSlot:
        """The model that answers this pass: the candidate for the canary share of record hashes, else the current."""
        if self.candidate is None or self.canary_share <= 0.0:
            return self.current
        bucket = int.from_bytes(hashlib.blake2b(canonical_bytes(record), digest_size=8).digest(), "big") / 2.0 ** 64
        return self.candidate if bucket < self.canary_share else self.current


@dataclass
class ServiceState:
    """Everything a view needs, built once in the app factory; only `model` changes, by a swap."""

    settings: Settings
    routing: Routing
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
    def model(self) -> ModelSlot:
        """The current model (a request reads `routing` once instead, and asks it which model answers)."""
        return self.routing.current

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
