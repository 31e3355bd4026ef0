"""The scoring engine: validated records in, one result per record out, for every entry point; and the pick rule.

POST /reg/, POST /reg/batch, shadow scoring and regno-score all score through ScoringEngine.score: each
record's canonical bytes once, the model that answers it (Routing), the cache lookup of all of them
together, one CatBoost call per answering model for the misses, and the writes back. No Flask here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol, Sequence

from model.records import Record, canonical_bytes
from model.routing import ModelSlot, Routing, pass_digest
from model.scorer import Score


AI, CAMERA = "afts_regno_ai", "regno_recognize"


def pick(record: Record, score: Score, threshold: float) -> tuple[str, str]:
    """(picked plate, its source field): the AI's plate when the positive score reaches threshold, else the camera's."""
    if score.positive >= threshold:
        return record.afts_regno_ai, AI
    return record.regno_recognize, CAMERA


@dataclass(frozen=True)
class Origin:
    """Where a score came from, spelled as each place that shows it spells it."""

    #: The `result` label of regno_cache_lookups_total.
    metric: str
    #: The access line's `cache` field.
    logged: str
    #: The X-Cache response header: a Redis failure reads as a plain miss to the caller.
    header: str


HIT_L1 = Origin("hit_l1", "hit-l1", "hit-l1")
HIT_L2 = Origin("hit_l2", "hit-l2", "hit-l2")
MISS = Origin("miss", "miss", "miss")
#: A miss because Redis failed or its breaker is open.
ERROR = Origin("error", "error", "miss")
ORIGINS = (HIT_L1, HIT_L2, MISS, ERROR)


class Scored(NamedTuple):
    """One record's result: its score, the model that gave it, the pick, and where the score came from."""

    score: Score
    slot: ModelSlot
    regno: str
    source: str
    origin: Origin
    #: The pass's keyed digest in hex (model.routing.pass_digest): the same pass has the same id.
    pass_id: str
    #: "current", or "canary" when the candidate answered.
    arm: str
    #: The pick threshold applied: the model's own, or PICK_THRESHOLD (ScoringEngine.threshold_of).
    threshold: float

    def answer(self) -> dict:
        """The answer body /reg/ gives: probabilities, the chosen plate and its source, the model and its threshold, the pass id."""
        return {"positive": self.score.positive, "negative": self.score.negative, "regno": self.regno,
                "source": self.source, "model": self.slot.version, "threshold": self.threshold,
                "pass_id": self.pass_id}


class ScoreStore(Protocol):
    """A cache of scores by key (service/cache is the service's: L1 in the process, Redis behind it)."""

    def key(self, identity: bytes, canonical: bytes) -> str:
        """The key of a record's canonical bytes scored by the model with this identity."""

    def get_many(self, keys: list[str]) -> list[tuple[Score | None, Origin]]:
        """The score and origin of each key, None with MISS or ERROR when not found."""

    def put(self, key: str, score: Score) -> None:
        """Store a freshly computed score."""


class Observer(Protocol):
    """What the engine reports (service/observe/metrics.py's ServiceMetrics is the service's)."""

    def scored(self, results: list[Scored], by_model: list[Scored], features_s: float, inference_s: float) -> None:
        """One engine call: all its results, those the model scored (not the cache), their time per record."""


class ScoringEngine:
    """Scores validated records with the routing it is given, through a cache when it has one.

    pass_key (model.routing.pass_key of the pass-id secret) keys the pass ids; b"" leaves them unkeyed, for
    engines whose pass ids go nowhere (shadow scoring, regno-score, benchmarks).
    """

    def __init__(self, threshold: float, cache: ScoreStore | None = None, observer: Observer | None = None,
                 pass_key: bytes = b""):
        self.threshold = threshold
        self.cache = cache
        self.observer = observer
        self.pass_key = pass_key

    def threshold_of(self, slot: ModelSlot) -> float:
        """The pick threshold of a model: its own when its metadata names one, else the engine's (PICK_THRESHOLD)."""
        return self.threshold if slot.threshold is None else slot.threshold

    def thresholds(self, routing: Routing) -> Callable[[str], float]:
        """The pick threshold by model version: the routing's models' own, the engine's for any other version."""
        own = {slot.version: self.threshold_of(slot) for slot in (routing.current, routing.candidate) if slot}
        return lambda version: own.get(version, self.threshold)

    def score(self, records: Sequence[Record], routing: Routing) -> list[Scored]:
        """One result per record, in order; the misses are scored in one CatBoost call per answering model."""
        canonical = [canonical_bytes(record) for record in records]
        digests = [pass_digest(data, self.pass_key) for data in canonical]
        slots = [routing.for_pass(digest) for digest in digests]
        if self.cache is not None:
            keys = [self.cache.key(slot.identity, data) for slot, data in zip(slots, canonical)]
            found = self.cache.get_many(keys)
        else:
            keys, found = [], [(None, MISS)] * len(records)
        missing = [position for position, (score, _) in enumerate(found) if score is None]
        features_s = inference_s = 0.0
        for slot in {id(slots[position]): slots[position] for position in missing}.values():
            group = [position for position in missing if slots[position] is slot]
            started = time.perf_counter()
            vectors = [slot.scorer.build_vector(records[position]) for position in group]
            built = time.perf_counter()
            # A lone vector goes through the micro-batcher, to share a call with concurrent requests.
            scores = [slot.batcher.score(vectors[0])] if len(vectors) == 1 else slot.scorer.predict_vectors(vectors)
            features_s, inference_s = features_s + built - started, inference_s + time.perf_counter() - built
            for position, score in zip(group, scores):
                found[position] = (score, found[position][1])
        current = routing.current
        thresholds = {id(slot): self.threshold_of(slot) for slot in (current, routing.candidate) if slot is not None}
        results = [Scored(score, slot, *pick(record, score, thresholds[id(slot)]), origin, digest.hex(),
                          "current" if slot is current else "canary", thresholds[id(slot)])
                   for record, slot, (score, origin), digest in zip(records, slots, found, digests)]
        if self.cache is not None:
            for position in missing:
                self.cache.put(keys[position], found[position][0])
        if self.observer is not None:
            count = len(missing) or 1
            self.observer.scored(results, [results[position] for position in missing], features_s / count,
                                 inference_s / count)
        return results
