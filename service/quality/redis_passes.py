"""The pass index in Redis, for replicas: a label reaching any of them finds a pass another one answered.

PASS_INDEX_URL names it. Each pass is a hash (`<prefix>pass:<id>`), each request a set of its pass ids,
each labelled pass a key holding its label's mark, set with NX (only one label, from any replica, wins) and
swapped by a correction with SET XX GET (one command: two corrections cannot both take the same mark back);
all expire after LABEL_WINDOW_DAYS. Give it a Redis of its own that does not evict (`maxmemory-policy noeviction`):
an evicted pass would turn its label away as unknown. About 250 bytes a pass.
"""

from __future__ import annotations

import orjson
import redis

from service.quality.passes import PassFacts, facts_of

_FIELDS = PassFacts._fields
_NUMBERS = {"ts", "positive", "shadow_positive"}


def _fields_of(fact: tuple) -> dict[str, str]:
    """A pass's hash fields; the shadow's only when it has one, so a later row without it keeps the earlier's."""
    return {name: str(value) for name, value in zip(_FIELDS, fact) if value is not None}


def _facts(fields: dict[bytes, bytes]) -> PassFacts:
    """PassFacts from a pass's hash."""
    text = {key.decode(): value.decode() for key, value in fields.items()}
    return PassFacts(*(float(text[name]) if name in _NUMBERS and name in text else text.get(name) for name in _FIELDS))


class RedisPassIndex:
    """The pass index of every replica, in one Redis (same methods as passes.PassIndex)."""

    def __init__(self, url: str, prefix: str, window_days: int, timeout_s: float = 1.0):
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.prefix = prefix
        self.ttl_s = window_days * 86400

    def add_lines(self, data: bytes) -> int:
        """Index the passes in a batch of log lines, in one round trip; how many were indexed."""
        facts = [fact for fact in (facts_of(orjson.loads(line)) for line in data.splitlines()) if fact is not None]
        if facts:
            pipeline = self.client.pipeline(transaction=False)
            for fact in facts:
                key, request = f"{self.prefix}pass:{fact[0]}", f"{self.prefix}request:{fact[1]}"
                pipeline.hset(key, mapping=_fields_of(fact))
                pipeline.expire(key, self.ttl_s)
                pipeline.sadd(request, fact[0])
                pipeline.expire(request, self.ttl_s)
            pipeline.execute()
        return len(facts)

    def find(self, pass_ids: list[str]) -> dict[str, PassFacts]:
        """The indexed passes among these ids."""
        pipeline = self.client.pipeline(transaction=False)
        for pass_id in pass_ids:
            pipeline.hgetall(f"{self.prefix}pass:{pass_id}")
        return {pass_id: _facts(fields) for pass_id, fields in zip(pass_ids, pipeline.execute()) if fields}

    def passes_of_request(self, request_id: str, limit: int = 2) -> list[str]:
        """The pass ids one request answered (at most limit: more than one is already ambiguous)."""
        return [member.decode() for member in self.client.srandmember(f"{self.prefix}request:{request_id}", limit)]

    def claim(self, pass_id: str, mark: str) -> bool:
        """Mark the pass labelled; False when it already was (a label on any replica came first)."""
        return bool(self.client.set(f"{self.prefix}labelled:{pass_id}", mark, nx=True, ex=self.ttl_s))

    def replace(self, pass_id: str, mark: str) -> str | None:
        """Swap the pass's mark at once, keeping its expiry; the mark it had ("1" from an older version), or None."""
        previous = self.client.set(f"{self.prefix}labelled:{pass_id}", mark, xx=True, get=True, keepttl=True)
        return None if previous is None else previous.decode()

    def release(self, pass_id: str, previous: str | None = None) -> None:
        """Undo a claim or a replace whose label could not be stored, so that a retry is not refused."""
        if previous is None:
            self.client.delete(f"{self.prefix}labelled:{pass_id}")
        else:
            self.client.set(f"{self.prefix}labelled:{pass_id}", previous, xx=True, keepttl=True)

    def remove_older_than(self, days: int) -> int:
        """Nothing to do: Redis expires every key after LABEL_WINDOW_DAYS by itself."""
        return 0
