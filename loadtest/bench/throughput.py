"""Throughput against a floor, in one run: python -m loadtest.bench [--workers 2] [--worker-class sync].

Starts, one after another under the same gunicorn config: (a) the floor, a bare Flask app that parses
the JSON and answers a constant; (b) the service on unique records (no cache hit possible); (c) the
service on 50 repeated records (cache hits); (d) the service with Redis, on unique records; (e) the
service on unique records sent 100 at a time to POST /reg/batch; (f) the service behind nginx as
`make serve` runs it, on unique records, wrk's connections kept alive by the proxy (gunicorn's sync
workers close each one when met directly); (g) the team's original approach (model loaded per
request). The service runs with metrics on, Sentry on (a local receiver) and its L1 cache, as
`make run` does; the Redis row adds a local redis-server, which then shares the same cores.
Each is driven by wrk for the same time, in --rounds rounds that take the scenarios in turn; it prints
the median req/s, records/s, p50, p99 and records/s against the floor's (each round against that
round's floor), and the resident and proportional memory of the master and each worker after the
last round. Then /reg/ at a fixed rate beside clients sending maximum-size batches, with and without the bulk
pool (loadtest/bench/bulk.py; its options pass through: --rate, --bulk-seconds, --bulk-rounds, ...)."""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from statistics import median

import orjson
import requests

from loadtest.bench import bulk as bench_bulk
from loadtest.bench.cache import start_redis
from loadtest.bench.overhead import SentrySink
from loadtest.bench.record import machine
from training.simulate import simulate_records
from loadtest.servers import GUNICORN, free_port, memory, service_env, start, start_stack, stop, workers_of

KEY = "bench-key"
#: Records per POST /reg/batch in the batch scenario.
BATCH = 100
#: The app name that stands for the service behind the proxy (make serve's stack) in a scenario.
BEHIND_PROXY = "make serve"
#: Stands in a body for the recognition_accuracy each request makes unique (quotes included, so a number replaces it).
PLACEHOLDER = '"__ACC__"'


@dataclass
class Result:
    """One scenario's figures."""

    name: str
    rate: float
    records_per_request: int
    p50_ms: float
    p99_ms: float
    memory: list[tuple[str, int, int]]  # (process, RSS kB, PSS kB)


def lua_script(bodies: list[bytes], name: str, folder: Path, path: str = "/reg/") -> Path:
    """A wrk script that POSTs the bodies to path in turn.

    Every PLACEHOLDER in a body gets a recognition_accuracy of its own on every request, so bodies with
    placeholders are never cache hits; bodies without are sent as they are.
    """
    parts = []
    for body in bodies:
        pieces = body.decode().split(PLACEHOLDER)
        parts.append("{" + ", ".join(f"[==[{piece}]==]" for piece in pieces) + "}")
    script = folder / f"{name}.lua"
    script.write_text(
        "local bodies = {\n" + ",\n".join(parts) + "\n}\nlocal n = 0\n"
        f'local headers = {{["Content-Type"] = "application/json", ["x-api-key"] = "{KEY}"}}\n'
        "request = function()\n  n = n + 1\n  local parts = bodies[n % #bodies + 1]\n  local out = {parts[1]}\n"
        "  for i = 2, #parts do\n"
        '    out[#out + 1] = string.format("%.6f", ((n * 128 + i) % 100000000) / 1000000)\n'
        "    out[#out + 1] = parts[i]\n  end\n"
        f'  return wrk.format("POST", "{path}", headers, table.concat(out))\nend\n',
        encoding="utf-8",
    )
    return script


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> tuple[float, float, float]:
    """req/s, p50 ms and p99 ms from wrk; any non-2xx answer stops the bench."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench: wrk is not installed (make bench installs it)")
    output = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                            capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output and "timeout" in output:
        raise SystemExit(f"bench: errors during the run:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return rate, _percentile(output, "50%"), _percentile(output, "99%")


def _percentile(output: str, label: str) -> float:
    """A latency percentile from wrk's --latency table, in ms."""
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def serve(app: str, env: dict, folder: Path, workers: int, probe: bytes):
    """Start gunicorn with the project's config on app (or make serve's stack); wait until a POST answers."""
    if app == BEHIND_PROXY:
        stack = start_stack(env, folder / "stack.log", workers)
        stack.pid_of_master = stack.gunicorn_pid()
        return stack
    port = free_port()
    full_env = service_env(BIND=f"127.0.0.1:{port}", WORKERS=str(workers), **env)
    server = start([str(GUNICORN), "-c", "gunicorn.conf.py", app], full_env, folder / "gunicorn.log", port)
    deadline = time.monotonic() + 60
    headers = {"content-type": "application/json", "x-api-key": KEY}
    while True:
        try:
            if (requests.post(f"{server.base_url}/reg/", data=probe, headers=headers, timeout=10).status_code == 200
                    and len(workers_of(server.process.pid)) == workers):
                server.pid_of_master = server.process.pid
                return server
        except requests.ConnectionError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            stop(server)
            raise SystemExit(f"bench: {app} did not start: {server.output()[-2000:]}")
        time.sleep(0.2)


def measure(name: str, app: str, env: dict, script: Path, args, folder: Path, probe: bytes,
            records_per_request: int = 1) -> Result:
    """Serve app, warm it up, drive it with wrk, read its memory, stop it."""
    server = serve(app, env, folder, args.workers, probe)
    try:
        run_wrk(f"{server.base_url}/reg/", script, 2, args.connections)  # warm-up
        rate, p50, p99 = run_wrk(f"{server.base_url}/reg/", script, args.seconds, args.connections)
        master = server.pid_of_master  # gunicorn's, also behind the proxy (nginx's few MiB are not counted)
        pids = [("master", master)] + [(f"worker {i + 1}", pid) for i, pid in enumerate(workers_of(master))]
        usage = [(label, *memory(pid)) for label, pid in pids]
    finally:
        stop(server)
    return Result(name, rate, records_per_request, p50, p99, usage)


def main(argv: list[str] | None = None) -> int:
    """Run every scenario under one gunicorn setting and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3,
                        help="times every scenario runs, in turn; the tables give medians")
    parser.add_argument("--skip-team", action="store_true", help="leave out the team's approach (slow)")
    parser.add_argument("--skip-bulk", action="store_true", help="leave out /reg/ beside maximum-size batches")
    args, rest = parser.parse_known_args(argv)
    bulk_args = bench_bulk.arguments(rest, args.workers)  # its own options: --rate, --bulk-seconds, ...

    folder = Path(tempfile.mkdtemp(prefix="regno-bench-"))
    redis_process, redis_url = start_redis()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), SentrySink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    common = {"API_KEYS": KEY, "WORKER_CLASS": args.worker_class, "THREADS": str(args.threads)}
    service = {**common, "SENTRY_DSN": f"http://key@127.0.0.1:{sink.server_address[1]}/1"}
    with_redis = {**service, "REDIS_URL": redis_url}
    # Every pass logged: spooled, sealed and shipped to Parquet by the workers' own threads while wrk runs
    # (segments sealed every 2 s, so shipping falls inside the measured seconds).
    with_log = {**service, "PREDICTION_LOG_DIR": str(folder / "prediction-log"), "PREDICTION_LOG_SEGMENT_S": "2",
                "PASS_ID_SECRET": "bench-pass-id-secret"}
    records = simulate_records(1000, seed=11)
    marked = [dict(record, recognition_accuracy="__ACC__") for record in records]
    unique = lua_script([orjson.dumps(record) for record in marked], "unique", folder)
    repeated = lua_script([orjson.dumps(record) for record in records[:50]], "repeat", folder)
    batches = lua_script([orjson.dumps(marked[start:start + BATCH]) for start in range(0, len(marked), BATCH)],
                         "batch", folder, "/reg/batch")
    probe = orjson.dumps(records[0])
    scenarios = [
        ("floor: bare Flask, parse JSON, constant answer", "loadtest.baseline_apps:floor", common, repeated),
        ("service, unique records (no cache hit)", "service.wsgi:app", service, unique),
        ("service with the prediction log, unique records", "service.wsgi:app", with_log, unique),
        ("service, 50 repeated records (L1 hits)", "service.wsgi:app", service, repeated),
        ("service with Redis, unique records", "service.wsgi:app", with_redis, unique),
        (f"service, unique records in batches of {BATCH} (POST /reg/batch)", "service.wsgi:app", service, batches),
        ("service behind the proxy, kept-alive clients, unique records", BEHIND_PROXY, service, unique),
    ]
    if not args.skip_team:
        scenarios.append(("team's approach: model loaded per request", "loadtest.baseline_apps:team", common, unique))
    try:
        # Rounds go through every scenario in turn, so a slow spell of this shared machine hits all of them.
        rounds = [[measure(name, app, env, script, args, folder, probe, BATCH if script is batches else 1)
                   for name, app, env, script in scenarios] for _ in range(args.rounds)]
    finally:
        redis_process.terminate()
        sink.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    print_tables(rounds, args)
    if not args.skip_bulk:
        print("\n/reg/ beside the biggest legal bulk work (loadtest/bench/bulk.py):\n")
        bench_bulk.print_table(bench_bulk.run_cases(bulk_args), bulk_args)
    return 0


def print_tables(rounds: list[list[Result]], args) -> None:
    """The throughput table (medians over rounds; each ratio against its own round's floor) and the memory table."""
    count = len(rounds)
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}; gunicorn {args.workers} "
          f"{args.worker_class} workers{f' x {args.threads} threads' if args.threads > 1 else ''} and wrk "
          f"(1 thread, {args.connections} connections) sharing the same {os.cpu_count()} cores; "
          f"{args.seconds} s per scenario after a 2 s warm-up; median of {count} round{'s' * (count > 1)}, "
          f"the scenarios taking turns.\n")
    print("| scenario | req/s | records/s | p50 ms | p99 ms | records/s vs floor | vs floor, each round |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for index, name in enumerate(result.name for result in rounds[0]):
        runs = [each_round[index] for each_round in rounds]
        ratios = [each_round[index].rate * each_round[index].records_per_request / each_round[0].rate
                  for each_round in rounds]
        print(f"| {name} | {median(r.rate for r in runs):,.0f} | "
              f"{median(r.rate * r.records_per_request for r in runs):,.0f} | {median(r.p50_ms for r in runs):.2f} | "
              f"{median(r.p99_ms for r in runs):.2f} | {median(ratios):.2f} | "
              f"{' '.join(f'{ratio:.2f}' for ratio in ratios)} |")
    print("\n| scenario | process | RSS MiB | PSS MiB |")
    print("|---|---|---:|---:|")
    for result in rounds[-1]:
        for label, rss, pss in result.memory:
            print(f"| {result.name.split(':')[0].split(' (')[0]} | {label} | {rss / 1024:.0f} | {pss / 1024:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
