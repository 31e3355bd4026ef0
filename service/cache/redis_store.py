"""Redis as a shared store of cached scores: tight timeouts, one retry, a breaker, writes off the request path."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.cache.breaker import CircuitBreaker
from service.observe.throttled_log import ThrottledLog

log = logging.getLogger("regno")

#: Writes waiting for the background writer; past this they are dropped (it is only a cache).
WRITE_QUEUE_SIZE = 10_000
#: Writes sent to Redis in one pipeline round trip.
WRITE_BATCH = 100
#: Seconds between two "Redis is failing" log lines.
LOG_INTERVAL_S = 5.0


#: The kinds of event RedisCounters counts.
EVENTS = ("errors", "writes", "writes_dropped", "bad_values", "breaker_openings")


@dataclass
class RedisCounters:
    """What happened between this worker and Redis, for /health; each count also goes to `sink` if set."""

    errors: int = 0
    writes: int = 0
    writes_dropped: int = 0
    bad_values: int = 0
    breaker_openings: int = 0
    #: Called with (event, count) on every count, e.g. to mirror them into Prometheus.
    sink: Callable[[str, int], None] | None = field(default=None, repr=False, compare=False)

    def add(self, event: str, count: int = 1) -> None:
        """Count `count` events of one kind."""
        setattr(self, event, getattr(self, event) + count)
        if self.sink is not None:
            self.sink(event, count)

    def as_dict(self) -> dict[str, int]:
        """The counts by event."""
        return {name: getattr(self, name) for name in EVENTS}


class RedisObserver(Protocol):
    """What hears of Redis events and breaker changes (service/observe/metrics.py's ServiceMetrics)."""

    def redis_event(self, event: str, count: int) -> None:
        """Count Redis events of one kind."""

    def breaker_changed(self, state: str) -> None:
        """The breaker is in a new state."""


@dataclass
class _PerProcess:
    """A connection pool and writer thread; made in the process that uses them, never inherited."""

    client: redis.Redis
    writes: queue.Queue
    writer: threading.Thread
    pid: int = field(default_factory=os.getpid)


class RedisStore:
    """Gets and sets byte values in Redis without ever failing or stalling the caller."""

    def __init__(self, url: str, ttl_s: int, timeout_ms: int, breaker: CircuitBreaker,
                 on_event: Callable[[str, int], None] | None = None):
        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_ms / 1000
        self.breaker = breaker
        self.counters = RedisCounters(sink=on_event)
        self._complaints = ThrottledLog(log, LOG_INTERVAL_S)
        self._local: _PerProcess | None = None
        self._local_lock = threading.Lock()

    def _process_local(self) -> _PerProcess:
        """This process's pool and writer, made on first use after a fork (sockets and threads do not survive one)."""
        local = self._local
        if local is not None and local.pid == os.getpid():
            return local
        with self._local_lock:
            if self._local is None or self._local.pid != os.getpid():
                client = redis.Redis.from_url(
                    self.url,
                    socket_connect_timeout=self.timeout_s,
                    socket_timeout=self.timeout_s,
                    # One quick retry on a dropped connection or timeout, no backoff: the caller is waiting.
                    retry=Retry(NoBackoff(), retries=1),
                    health_check_interval=0,
                )
                writes: queue.Queue = queue.Queue(WRITE_QUEUE_SIZE)
                writer = threading.Thread(target=self._write_loop, args=(client, writes), name="redis-writer",
                                          daemon=True)
                self._local = _PerProcess(client, writes, writer)
                writer.start()
            return self._local

    def _failed(self, action: str, error: Exception) -> None:
        """Count a failure, feed the breaker, and complain at most once per interval."""
        self.counters.add("errors")
        if self.breaker.record_failure():
            self.counters.add("breaker_openings")
        self._complaints.warning("redis %s failed, scoring without it: %s: %s (breaker %s)", action,
                                 type(error).__name__, error, self.breaker.state)

    def get_many(self, keys: list[str]) -> tuple[list[bytes | None], bool]:
        """Values of several keys in one MGET round trip: (values in key order, whether Redis answered).

        Never raises, and skips Redis while the breaker is open.
        """
        if not keys or not self.breaker.allow():
            return [None] * len(keys), not keys
        try:
            values = self._process_local().client.mget(keys)
        except Exception as error:  # noqa: BLE001 - a cache failure is a miss, never an error
            self._failed("read", error)
            return [None] * len(keys), False
        self.breaker.record_success()
        return values, True

    def put(self, key: str, value: bytes) -> None:
        """Queue a write for the background writer; drop it if the queue is full."""
        try:
            self._process_local().writes.put_nowait((key, value))
        except queue.Full:
            self.counters.add("writes_dropped")

    def _write_loop(self, client: redis.Redis, writes: queue.Queue) -> None:
        """Send queued writes in pipelined batches for as long as the process lives."""
        while True:
            batch = [writes.get()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(writes.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write_batch(client, batch)
            finally:
                for _ in batch:
                    writes.task_done()

    def _write_batch(self, client: redis.Redis, batch: list[tuple[str, bytes]]) -> None:
        """SET each (key, value) with the TTL in one pipeline, unless the breaker is open."""
        if not self.breaker.allow():
            self.counters.add("writes_dropped", len(batch))
            return
        try:
            pipeline = client.pipeline(transaction=False)
            for key, value in batch:
                pipeline.set(key, value, ex=self.ttl_s)
            pipeline.execute()
        except redis.ResponseError as error:
            # Redis answered (full, read-only replica...): it is up, so reads may go on.
            self.breaker.record_success()
            self.counters.add("writes_dropped", len(batch))
            self._complaints.warning("redis refused a write: %s", error)
        except Exception as error:  # noqa: BLE001 - the writer thread must never die
            self.counters.add("writes_dropped", len(batch))
            self._failed("write", error)
        else:
            self.breaker.record_success()
            self.counters.add("writes", len(batch))

    def flush_writes(self, timeout_s: float = 5.0) -> bool:
        """Wait until queued writes are sent (for tests and shutdown); True if the queue emptied in time."""
        local = self._process_local()
        deadline = time.monotonic() + timeout_s
        while local.writes.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not local.writes.unfinished_tasks
