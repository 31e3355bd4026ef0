"""Which model answers a pass: the loaded models (slots) and the routing between current and candidate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from model.batcher import MicroBatcher
from model.records import Record, canonical_bytes
from model.scorer import Scorer


def model_identity(scorer: Scorer) -> bytes:
    """What tells one model from another in cache keys: its version and file checksum."""
    return f"{scorer.version}\0{scorer.checksum}".encode()


def pass_key(secret: str) -> bytes:
    """The key pass digests are made with, from the pass-id secret (any length); b"" (unkeyed) for none."""
    if not secret:
        return b""
    return hashlib.blake2b(secret.encode("utf-8"), digest_size=32, person=b"regno-pass-id").digest()


def pass_digest(canonical: bytes, key: bytes) -> bytes:
    """The pass's 8-byte digest, from its canonical bytes and pass_key: its canary bucket and its id.

    Keyed, so that a pass id can only be learnt from an answer, never computed from a record: a label names
    its pass by this id. The same record and key give the same digest (a resent pass keeps its id and model).
    """
    return hashlib.blake2b(canonical, digest_size=8, key=key).digest()


def answer_salt(identities: bytes) -> bytes:
    """A 32-byte digest of the answering models' identities, to key the remembered answers of raw bodies."""
    return hashlib.blake2b(identities, digest_size=32).digest()


@dataclass(frozen=True)
class ModelSlot:
    """A loaded model and what derives from it, kept together so no model's key meets another's score."""

    scorer: Scorer
    #: Shares CatBoost calls between concurrent requests of this process.
    batcher: MicroBatcher
    #: The model's identity in cache keys (model_identity).
    identity: bytes
    #: The model's version, as answers name it.
    version: str
    #: The model's own pick threshold (Scorer.threshold); None picks at the engine's.
    threshold: float | None = None

    @classmethod
    def of(cls, scorer: Scorer, batch_max_size: int) -> "ModelSlot":
        """The slot of a loaded scorer."""
        # Through the scorer at call time, not a method bound now: what predicts is the scorer as it is then.
        return cls(scorer, MicroBatcher(lambda vectors: scorer.predict_vectors(vectors), batch_max_size),
                   model_identity(scorer), scorer.version, scorer.threshold)


@dataclass(frozen=True)
class Routing:
    """The current model, and the candidate that answers a canary share of passes.

    Replaced whole when either model changes, so a request that reads the routing once is answered by
    one model, even across a swap.
    """

    current: ModelSlot
    candidate: ModelSlot | None = None
    canary_share: float = 0.0
    #: Keys the remembered answers (answer_salt): it changes with either model, so no answer outlives its routing.
    salt: bytes = field(init=False)

    def __post_init__(self) -> None:
        candidate = self.candidate.identity if self.candidate is not None else b""
        object.__setattr__(self, "salt", answer_salt(self.current.identity + b"\0" + candidate))

    def for_pass(self, digest: bytes) -> ModelSlot:
        """The model that answers the pass with this pass_digest: the candidate for its canary share."""
        if self.candidate is None or self.canary_share <= 0.0:
            return self.current
        bucket = int.from_bytes(digest, "big") / 2.0 ** 64
        return self.candidate if bucket < self.canary_share else self.current

    def for_record(self, record: Record, key: bytes) -> ModelSlot:
        """The model that answers this record (for_pass of its canonical bytes' digest with pass_key key)."""
        return self.for_pass(pass_digest(canonical_bytes(record), key))
