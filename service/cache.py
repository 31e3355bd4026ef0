"""The two-level score cache: an LRU in each worker (L1) in front of Redis shared by all (L2)."""

from __future__ import annotations

import hashlib
import struct
import threading

from cachetools import LRUCache

from config import Settings
from model.records import Record, canonical_bytes
from model.scorer import Score, Scorer
from service.breaker import CircuitBreaker
from service.redis_store import RedisStore

HIT_L1, HIT_L2, MISS = "hit-l1", "hit-l2", "miss"
#: A miss because Redis failed or its breaker is open (the X-Cache header still says miss).
ERROR = "error"
# Two little-endian doubles: exact, so a cached answer is byte-for-byte the model's.
_SCORE = struct.Struct("<2d")


def model_identity(scorer: Scorer) -> bytes:
    """What distinguishes one model from another in cache keys: its version and file checksum."""
    return f"{scorer.version}\0{scorer.checksum}".encode()


def cache_key(prefix: str, identity: bytes, record: Record) -> str:
    """The cache key of a record scored by the model with this identity."""
    digest = hashlib.blake2b(identity + b"\0" + canonical_bytes(record), digest_size=16).hexdigest()
    return f"{prefix}{digest}"


def answer_salt(identity: bytes) -> bytes:
    """A 32-byte digest of a model identity, to key the hashes of raw bodies answered by that model."""
    return hashlib.blake2b(identity, digest_size=32).digest()


def body_key(salt: bytes, body: bytes) -> bytes:
    """The key of a raw request body's answer under the model whose answer_salt this is."""
    return hashlib.blake2b(body, digest_size=16, key=salt).digest()


def encode_score(score: Score) -> bytes:
    """A score as 16 bytes."""
    return _SCORE.pack(score.negative, score.positive)


def decode_score(data: bytes) -> Score | None:
    """A score from its 16 bytes, or None for anything else."""
    return Score(*_SCORE.unpack(data)) if len(data) == _SCORE.size else None


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
    def from_settings(cls, settings: Settings) -> "ScoreCache":
        """The cache the settings describe: L1 of CACHE_L1_SIZE, L2 when REDIS_URL is set."""
        store = None
        if settings.redis_url:
            breaker = CircuitBreaker(settings.cache_breaker_failures, settings.cache_breaker_cooldown_s)
            store = RedisStore(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_ms, breaker)
        return cls(settings.cache_prefix, settings.cache_l1_size, store)

    def key(self, identity: bytes, record: Record) -> str:
        """The key of a record scored by the model with this identity, under this cache's prefix."""
        return cache_key(self.prefix, identity, record)

    def get(self, key: str) -> tuple[Score | None, str]:
        """The cached score and where it was found (hit-l1, hit-l2), or None and miss (error if Redis failed)."""
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[tuple[Score | None, str]]:
        """get() of several keys: L1 for each, then one Redis round trip for the ones L1 did not have."""
        found: list[tuple[Score | None, str]] = [(None, MISS)] * len(keys)
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

    def answer_for(self, body_key: bytes) -> bytes | None:
        """The answer already given in this worker to a request body with this key, if remembered."""
        if self._answers is None:
            return None
        with self._l1_lock:
            return self._answers.get(body_key)

    def remember_answer(self, body_key: bytes, answer: bytes) -> None:
        """Remember the answer given to a request body (successful answers only)."""
        if self._answers is not None:
            # A copy of exactly its length: bytes from orjson.dumps keep orjson's whole 4 kB write buffer,
            # which made each remembered answer cost 4 kB instead of about 200 bytes.
            compact = bytes(memoryview(answer))
            with self._l1_lock:
                self._answers[body_key] = compact

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
