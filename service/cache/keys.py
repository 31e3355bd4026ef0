"""Cache keys and values: a record's key under a model, a raw body's key under a routing, a score as 16 bytes."""

from __future__ import annotations

import hashlib
import struct

from model.scorer import Score

# Two little-endian doubles: exact, so a cached answer is byte-for-byte the model's.
_SCORE = struct.Struct("<2d")


def cache_key(prefix: str, identity: bytes, canonical: bytes) -> str:
    """The cache key of a record, by its canonical bytes, scored by the model with this identity."""
    digest = hashlib.blake2b(identity + b"\0" + canonical, digest_size=16).hexdigest()
    return f"{prefix}{digest}"


def body_key(salt: bytes, body: bytes) -> bytes:
    """The key of a raw request body's answer under the routing whose salt this is (Routing.salt)."""
    return hashlib.blake2b(body, digest_size=16, key=salt).digest()


def encode_score(score: Score) -> bytes:
    """A score as 16 bytes."""
    return _SCORE.pack(score.negative, score.positive)


def decode_score(data: bytes) -> Score | None:
    """A score from its 16 bytes, or None for anything else."""
    return Score(*_SCORE.unpack(data)) if len(data) == _SCORE.size else None
