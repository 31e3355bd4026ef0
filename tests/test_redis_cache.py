"""The two-level cache on a real redis-server: shared hits, one key per record, model swaps, failures."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import orjson
import pytest
import requests
from catboost import CatBoostClassifier

from config import Settings
from model import BUNDLED_MODEL
from model.records import parse_record
from service import create_app
from tests.conftest import API_KEY, ApiClient, redis_url
from loadtest.servers import gunicorn

PREFIX = "test:"


@pytest.fixture
def settings_for(redis_client, redis_server):
    """Settings on the session's Redis (emptied after each test), with overrides."""
    base = Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,), redis_url=redis_url(redis_server),
                    cache_prefix=PREFIX)

    def make(**overrides) -> Settings:
        return replace(base, **overrides)

    return make


def _client(settings: Settings):
    """An app built from settings, its test client, and its cache."""
    app = create_app(settings)
    return ApiClient(app.test_client()), app.extensions["regno"]


def _flush(state) -> None:
    """Wait for the background writer to send what it has queued."""
    assert state.cache.store.flush_writes()


def test_l2_hit_from_another_instance_and_after_l1_clear(settings_for, redis_client, record):
    """A score written by one app is read from Redis by another, and by the first after its L1 is cleared."""
    first, first_state = _client(settings_for())
    second, _ = _client(settings_for())
    answer = first.post(json=record)
    assert answer.headers["X-Cache"] == "miss"
    _flush(first_state)
    from_redis = second.post(json=record)
    assert from_redis.headers["X-Cache"] == "hit-l2"
    assert from_redis.data == answer.data
    assert second.post(json=record).headers["X-Cache"] == "hit-l1"
    first_state.cache.clear_l1()
    again = first.post(json=record)
    assert (again.headers["X-Cache"], again.data) == ("hit-l2", answer.data)
    assert len(redis_client.keys(f"{PREFIX}*")) == 1
    assert 0 < redis_client.ttl(redis_client.keys(f"{PREFIX}*")[0]) <= Settings().cache_ttl_s


def test_equivalent_requests_share_one_redis_key(settings_for, redis_client, record):
    """Other field order, numeric strings and double encoding all hit the one key the first request wrote."""
    client, state = _client(settings_for(cache_l1_size=0))
    plain = client.post(json=record)
    assert plain.headers["X-Cache"] == "miss"
    _flush(state)
    variants = [
        {"json": dict(reversed(list(record.items())))},
        {"json": dict(record, recognition_accuracy="93.0", afts_regno_ai_score="0.81", direction="1")},
        {"data": orjson.dumps(orjson.dumps(record).decode())},
    ]
    for variant in variants:
        response = client.post(**variant)
        assert (response.headers["X-Cache"], response.data) == ("hit-l2", plain.data)
    assert len(redis_client.keys(f"{PREFIX}*")) == 1


def test_model_swap_gives_new_keys(settings_for, redis_client, record, tmp_path):
    """Another model never reads the first model's cached scores."""
    other = CatBoostClassifier().load_model(str(BUNDLED_MODEL))
    other.get_metadata()["version"] = "regno-sim-other"
    other.save_model(str(tmp_path / "other.cbm"))
    client, state = _client(settings_for())
    swapped, swapped_state = _client(settings_for(model_path=tmp_path / "other.cbm"))
    assert client.post(json=record).headers["X-Cache"] == "miss"
    _flush(state)
    response = swapped.post(json=record)
    assert response.headers["X-Cache"] == "miss"
    assert response.json["body"]["model"] == "regno-sim-other"
    _flush(swapped_state)
    assert len(redis_client.keys(f"{PREFIX}*")) == 2


def test_redis_killed_and_restarted(redis_flaky, simulated_records):
    """Every request answers 200 with the model's probabilities while Redis dies and returns; the breaker opens and closes."""
    settings = Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,), redis_url=redis_url(redis_flaky),
                        cache_l1_size=0, redis_timeout_ms=20, cache_breaker_failures=2, cache_breaker_cooldown_s=0.3)
    client, state = _client(settings)
    expected = {index: state.scorer.score(parse_record(record)) for index, record in enumerate(simulated_records)}
    seen_states, seen_cache = [], []

    def run(requests: int) -> None:
        for number in range(requests):
            index = number % len(simulated_records)
            response = client.post(json=simulated_records[index])
            assert response.status_code == 200
            body = response.json["body"]
            assert (body["negative"], body["positive"]) == tuple(expected[index])
            seen_states.append(state.cache.status()["redis"]["state"])
            seen_cache.append(response.headers["X-Cache"])

    run(40)
    assert "hit-l2" in seen_cache
    redis_flaky.stop()
    try:
        run(60)
        assert seen_states[-1] in ("open", "half-open")
        assert state.cache.store.counters.breaker_openings >= 1
    finally:
        redis_flaky.start()
    del seen_states[:], seen_cache[:]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (seen_states and seen_states[-1] == "closed" and "hit-l2" in seen_cache):
        run(10)
        time.sleep(0.05)
    assert seen_states[-1] == "closed"
    assert "hit-l2" in seen_cache  # the cache is used again


@pytest.fixture
def silent_redis():
    """A TCP server that accepts connections and never answers: a hung Redis."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_hung_redis_costs_at_most_the_timeout_budget(silent_redis, record):
    """Against a Redis that never answers, each request still answers, within the timeout budget."""
    timeout_ms = 20
    settings = Settings(model_path=BUNDLED_MODEL, api_keys=(API_KEY,), redis_url=silent_redis,
                        cache_l1_size=0, redis_timeout_ms=timeout_ms, cache_breaker_failures=3)
    client, state = _client(settings)
    # Two attempts (one retry) of connect plus read, and generous room for the model and a loaded machine:
    # this checks that nothing waits on Redis beyond its timeouts, not how fast the model is.
    budget_s = 2 * 2 * timeout_ms / 1000 + 0.5
    for _ in range(20):
        started = time.monotonic()
        response = client.post(json=record)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert response.headers["X-Cache"] == "miss"
        assert elapsed < budget_s
    assert state.cache.status()["redis"]["state"] in ("open", "half-open")
    assert state.cache.store.counters.errors >= 3


def _post_many(url: str, bodies: list[bytes], threads: int) -> list[requests.Response]:
    """POST each body with its own connection, `threads` at a time, and return the responses in order."""
    headers = {"x-api-key": API_KEY, "content-type": "application/json"}
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda body: requests.post(url, data=body, headers=headers, timeout=10), bodies))


@pytest.mark.gunicorn
def test_l2_hit_in_a_second_worker(redis_server, redis_client, record, tmp_path):
    """Under gunicorn, a record scored by one worker is an L2 hit in another (an L1 hit in its own)."""
    env = {"API_KEYS": API_KEY, "REDIS_URL": redis_url(redis_server), "CACHE_PREFIX": PREFIX}
    connected_before = {client["id"] for client in redis_client.client_list()}
    with gunicorn(env, tmp_path / "log", workers=3) as server:
        url = f"{server.base_url}/reg/"
        first = _post_many(url, [orjson.dumps(record)], 1)[0]
        assert first.headers["X-Cache"] == "miss"
        deadline = time.monotonic() + 5
        while not redis_client.keys(f"{PREFIX}*") and time.monotonic() < deadline:
            time.sleep(0.01)
        # Concurrent requests keep every worker busy, so the other two workers meet the record too.
        later = _post_many(url, [orjson.dumps(record)] * 60, threads=6)
        sources = {response.headers["X-Cache"] for response in later}
        assert {response.content for response in later} == {first.content}
        assert "hit-l2" in sources  # only a worker that did not score it can find it in Redis
        assert "miss" not in sources
        # Pooled per worker: at most a reader and the background writer each, not one per request.
        workers_connections = [client for client in redis_client.client_list() if client["id"] not in connected_before]
        assert 1 <= len(workers_connections) <= 3 * 2


@pytest.mark.gunicorn
def test_redis_restart_under_load_fails_nothing(redis_flaky, simulated_records, tmp_path):
    """Requests keep flowing through gunicorn while Redis is killed and started again: not one fails."""
    env = {"API_KEYS": API_KEY, "REDIS_URL": redis_url(redis_flaky), "CACHE_L1_SIZE": "0",
           "CACHE_BREAKER_COOLDOWN_S": "0.2"}
    bodies = [orjson.dumps(record) for record in simulated_records]
    with gunicorn(env, tmp_path / "log", workers=2) as server:
        url = f"{server.base_url}/reg/"
        expected = [response.content for response in _post_many(url, bodies, threads=1)]
        results: list[requests.Response] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                results.extend(_post_many(url, bodies, threads=4))

        loader = threading.Thread(target=load)
        loader.start()
        try:
            time.sleep(0.5)
            redis_flaky.stop()
            time.sleep(1.0)
            redis_flaky.start()
            time.sleep(1.0)
        finally:
            stop.set()
            loader.join()
        assert len(results) > 3 * len(bodies)
        assert {response.status_code for response in results} == {200}
        for index, response in enumerate(results):
            assert response.content == expected[index % len(bodies)]
        assert "hit-l2" in {response.headers["X-Cache"] for response in results[-len(bodies):]}


def test_full_redis_refuses_writes_without_tripping_reads(settings_for, redis_client, record):
    """A Redis out of memory refuses writes; answers stay 200 and the breaker stays closed."""
    client, state = _client(settings_for(cache_l1_size=0))
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", "1")  # below what Redis already uses: every write is refused
    try:
        for _ in range(3):
            response = client.post(json=record)
            assert (response.status_code, response.headers["X-Cache"]) == (200, "miss")
            _flush(state)
        assert state.cache.store.counters.writes_dropped >= 3
        assert state.cache.status()["redis"]["state"] == "closed"
    finally:
        redis_client.config_set("maxmemory", "0")
    assert client.post(json=record).headers["X-Cache"] == "miss"
    _flush(state)
    assert client.post(json=record).headers["X-Cache"] == "hit-l2"
