"""What a cache hit costs against a model call, in one run: python -m loadtest.bench.cache [--rounds N].

Starts its own redis-server on a free port, builds three apps (no cache, L1 only, L2 only) on the bundled
model, and times POST /reg/ through Flask's test client, plus the bare lookups, in interleaved rounds.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Callable

import orjson
import redis

from config import Settings
from loadtest.bench.record import machine
from model.records import parse_record
from training.simulate import simulate_records
from service import create_app
from loadtest.servers import free_port

KEY = "bench-key"


def start_redis() -> tuple[subprocess.Popen, str]:
    """A throwaway redis-server without persistence, and its URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("bench-cache: redis-server is not installed (make bench-cache installs it)")
    port = free_port()
    process = subprocess.Popen([executable, "--port", str(port), "--save", "", "--appendonly", "no",
                                "--dir", tempfile.gettempdir()], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return process, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("bench-cache: redis-server did not start")


def per_call_us(function: Callable[[int], object], calls: int) -> float:
    """Mean microseconds per call of function(i) for i in range(calls)."""
    started = time.perf_counter()
    for index in range(calls):
        function(index)
    return (time.perf_counter() - started) * 1e6 / calls


def main(argv: list[str] | None = None) -> int:
    """Time model calls against L1 and L2 hits and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args(argv)

    process, url = start_redis()
    try:
        base = Settings(api_keys=(KEY,), cache_prefix="bench:")
        apps = {
            "none": create_app(Settings(**{**vars(base), "cache_l1_size": 0})),
            "l1": create_app(Settings(**{**vars(base), "cache_l1_size": args.records * 2})),
            "l2": create_app(Settings(**{**vars(base), "cache_l1_size": 0, "redis_url": url})),
        }
        records = simulate_records(args.records, seed=4242)
        bodies = [orjson.dumps(record) for record in records]
        clients = {name: app.test_client() for name, app in apps.items()}
        headers = {"x-api-key": KEY, "content-type": "application/json"}

        def post(name: str) -> Callable[[int], object]:
            return lambda i: clients[name].post("/reg/", data=bodies[i], headers=headers)

        for name in ("l1", "l2"):  # warm both caches with every record
            for index in range(len(bodies)):
                post(name)(index)
        apps["l2"].extensions["regno"].cache.store.flush_writes()

        state = apps["l2"].extensions["regno"]
        parsed = [parse_record(record) for record in records]
        keys = [state.cache.key(state.model.identity, record) for record in parsed]
        l1_cache = apps["l1"].extensions["regno"].cache
        cases = {
            "POST /reg/, model call (no cache)": post("none"),
            "POST /reg/, L1 hit": post("l1"),
            "POST /reg/, L2 hit (Redis on loopback)": post("l2"),
            "model call alone (validate, features, predict)": lambda i: state.scorer.score(parse_record(records[i])),
            "L1 lookup alone (validate, key, get)": lambda i: l1_cache.get(
                l1_cache.key(state.model.identity, parse_record(records[i]))),
            "L2 lookup alone (GET from Redis)": lambda i: state.cache.store.get(keys[i]),
        }
        results: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, function in cases.items():
                results[name].append(per_call_us(function, len(records)))
        headers_seen = {clients[name].post("/reg/", data=bodies[0], headers=headers).headers["X-Cache"]
                        for name in ("l1", "l2")}
        assert headers_seen == {"hit-l1", "hit-l2"}, headers_seen
    finally:
        process.terminate()
        process.wait()

    medians = {name: statistics.median(values) for name, values in results.items()}
    model_post = medians["POST /reg/, model call (no cache)"]
    model_alone = medians["model call alone (validate, features, predict)"]
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}.")
    print(f"{args.records} distinct simulated records, bundled model, median of {args.rounds} interleaved rounds.\n")
    print("| path | µs per request | cost against a model call |")
    print("|---|---:|---:|")
    for name, median in medians.items():
        reference = model_post if name.startswith("POST") else model_alone
        print(f"| {name} | {median:.1f} | {median / reference:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
