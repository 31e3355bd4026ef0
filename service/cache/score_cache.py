"""The two-level score cache: an LRU in each worker (L1) in front of Redis shared by all (L2)."""

from __future__ import annotations

import threading

from cachetools import LRUCache

from config import Settings
from model.engine import ERROR, HIT_L1, HIT_L2, MISS, Origin
from model.scorer import Score
from service.cache.breaker import CircuitBreaker
from service.cache.keys import cache_key, decode_score, encode_score
from service.cache.redis_store import RedisObserver, RedisStore


class ScoreCache:
    """Looks scores up in L1, then L2, and stores new ones in both; never raises, never waits on a write."""

    def __init__(self, prefix: str, l1_size: int, store: RedisStore | None):
        self.prefix = prefix
        self.store = store
        self._l1: LRUCache | None = LRUCache(maxsize=l1_size) if l1_size > 0 else None
        #: Whole answers by the exact bytes of the request body: a resent pass skips even JSON decoding.
        self._answers: LRUCache | None = LRUCache(maxsize=l1_size) if l1_size > 0 else None
        # cachetools caches are not thread-safe; gthread workers serve several requests at once.
        self._l1_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, observer: RedisObserver | None = None) -> "ScoreCache":
        """The cache the settings describe: L1 of CACHE_L1_SIZE, L2 when REDIS_URL is set, reporting to observer."""
        store = None
        if settings.redis_url:
            breaker = CircuitBreaker(settings.cache_breaker_failures, settings.cache_breaker_cooldown_s,
                                     on_change=observer.breaker_changed if observer is not None else None)
            store = RedisStore(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_ms, breaker,
                               on_event=observer.redis_event if observer is not None else None)
        return cls(settings.cache_prefix, settings.cache_l1_size, store)

    def key(self, identity: bytes, canonical: bytes) -> str:
        """The key of a record's canonical bytes scored by the model with this identity, under this cache's prefix."""
        return cache_key(self.prefix, identity, canonical)

    def get(self, key: str) -> tuple[Score | None, Origin]:
        """The cached score and where it was found (HIT_L1, HIT_L2), or None and MISS (ERROR if Redis failed)."""
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[tuple[Score | None, Origin]]:
        """get() of several keys: L1 for each, then one Redis round trip for the ones L1 did not have."""
        found: list[tuple[Score | None, Origin]] = [(None, MISS)] * len(keys)
        if self._l1 is not None:
            with self._l1_lock:
                for index, key in enumerate(keys):
                    score = self._l1.get(key)
                    if score is not None:
                        found[index] = (score, HIT_L1)
        if self.store is None:
            return found
        pending = [index for index, (score, _) in enumerate(found) if score is None]
        values, answered = self.store.get_many([keys[index] for index in pending])
        for index, data in zip(pending, values):
            score = decode_score(data) if data is not None else None
            if data is not None and score is None:
                self.store.counters.add("bad_values")
            if score is not None:
                self._remember(keys[index], score)
                found[index] = (score, HIT_L2)
            elif not answered:
                found[index] = (None, ERROR)
        return found

    def put(self, key: str, score: Score) -> None:
        """Store a freshly computed score in L1 now and in L2 in the background."""
        self._remember(key, score)
        if self.store is not None:
            self.store.put(key, encode_score(score))

    def _remember(self, key: str, score: Score) -> None:
        """Put a score in L1, if there is one."""
        if self._l1 is not None:
            with self._l1_lock:
                self._l1[key] = score

    @property
    def breaker_state(self) -> str:
        """The Redis breaker's state, or off without Redis."""
        return self.store.breaker.state if self.store is not None else "off"

    def answer_for(self, body_key: bytes) -> tuple[bytes, object] | None:
        """(answer, note) already given in this worker to a request body with this key, if remembered."""
        if self._answers is None:
            return None
        with self._l1_lock:
            return self._answers.get(body_key)

    def remember_answer(self, body_key: bytes, answer: bytes, note: object = None) -> None:
        """Remember the answer given to a request body (successful answers only), with what the caller notes."""
        if self._answers is not None:
            # A copy of exactly its length: bytes from orjson.dumps keep orjson's whole 4 kB write buffer,
            # which made each remembered answer cost 4 kB instead of about 200 bytes.
            compact = bytes(memoryview(answer))
            with self._l1_lock:
                self._answers[body_key] = (compact, note)

    def clear_l1(self) -> None:
        """Empty this worker's L1 (scores and remembered answers)."""
        if self._l1 is not None:
            with self._l1_lock:
                self._l1.clear()
                self._answers.clear()

    def status(self) -> dict:
        """Sizes, breaker state and counters, for /health."""
        redis_status: dict = {"state": "off"}
        if self.store is not None:
            redis_status = {"state": self.store.breaker.state, **self.store.counters.as_dict()}
        l1 = {"size": len(self._l1), "max": self._l1.maxsize} if self._l1 is not None else {"size": 0, "max": 0}
        return {"l1": l1, "redis": redis_status}
