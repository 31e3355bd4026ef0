"""What a model source costs, in one run: python -m loadtest.bench.source [--swaps 20] [--rounds 3].

1. **Promotion time.** Two gunicorns (2 workers each), each with its own MODELS_DIR and syncer, follow one
   source: moto's S3 server, then a real MLflow server. Under steady traffic to both, the current pointer
   (the champion alias) is moved --swaps times between two versions, at a random point of the poll cycle.
   Each swap is timed from the move to the moment the last of the four workers has swapped, which is when it
   logs "models: current <version>" (timestamped to the millisecond). Every answer is checked; none may fail.
2. **The request path.** bench.py's scenario of unique records, against its floor, with the model from
   MODEL_PATH (no source), from a folder source, from S3 and from MLflow. Each syncer polls every second
   (the worst case); the rounds take the scenarios in turn.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

import orjson
import requests

from loadtest.bench.throughput import lua_script, measure, print_tables
from loadtest.servers import Mlflow, Moto, Server, gunicorn, wait_for_line
from model import BUNDLED_MODEL
from model.lifecycle.manage import promote, publish
from model.registry import CURRENT
from model.sources import ModelSource, SourceOptions, open_source
from training.simulate import simulate_records

KEY = "bench-key"
#: boto3 reads these from the environment: moto takes any, and the service's syncers inherit them.
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
#: The watcher's line when a worker serves a new current model: "<asctime> [<pid>] INFO regno...: models: current V".
SWAPPED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \[(\d+)\] INFO [\w.]+: models: current (\S+) ", re.M)


def new_source(kind: str, moto: Moto, mlflow: Mlflow, folder: Path) -> tuple[ModelSource, str, dict[str, str]]:
    """A fresh source of kind on its server: the source, its URI, and the settings that reach it."""
    name = f"plates-{kind}-{int(time.time() * 1000) % 10**9}"
    if kind == "folder":
        uri, settings = str(folder / name), {}
        options = SourceOptions()
    elif kind == "s3":
        import boto3

        boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket=name)
        uri, settings = f"s3://{name}/plates", {"MODEL_SOURCE_S3_ENDPOINT": moto.url}
        options = SourceOptions(timeout_s=5.0, s3_endpoint=moto.url)
    else:
        uri, settings = f"models:/{name}", {"MLFLOW_TRACKING_URI": mlflow.url}
        options = SourceOptions(timeout_s=5.0, mlflow_tracking_uri=mlflow.url)
    return open_source(uri, options), uri, {"MODEL_SOURCE": uri, **settings}


def swap_times(servers: list[Server], log_offsets: dict[str, int], version: str, since: float,
               seconds: float = 120.0) -> float:
    """Seconds from since until every worker of servers logged that it serves version."""
    workers = {(server.base_url, pid) for server in servers for pid in server.worker_pids()}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        swapped = {}
        for server in servers:
            for stamp, pid, current in SWAPPED.findall(server.output()[log_offsets[server.base_url]:]):
                at = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if current == version and at >= since - 0.001:  # asctime truncates to the millisecond
                    swapped[(server.base_url, int(pid))] = at
        if workers <= swapped.keys():
            return max(swapped[worker] for worker in workers) - since
        time.sleep(0.02)
    raise SystemExit(f"bench_source: not every worker swapped to {version} within {seconds:.0f} s")


def traffic(servers: list[Server], stop: threading.Event, counts: dict[str, int]) -> None:
    """POST simulated records to every server in turn until stop; count answers by outcome."""
    records = [orjson.dumps(record) for record in simulate_records(200, seed=5)]
    headers = {"x-api-key": KEY, "content-type": "application/json"}
    with requests.Session() as session:
        index = 0
        while not stop.is_set():
            server = servers[index % len(servers)]
            try:
                answer = session.post(f"{server.base_url}/reg/", data=records[index % len(records)],
                                      headers=headers, timeout=10)
                counts["ok" if answer.status_code == 200 else "failed"] += 1
            except requests.RequestException:
                counts["failed"] += 1
            index += 1


def promotions(kind: str, args, moto: Moto, mlflow: Mlflow, folder: Path) -> dict:
    """Move the current pointer args.swaps times under traffic; the swap times and the answers' outcomes."""
    source, uri, reach = new_source(kind, moto, mlflow, folder)
    versions = [publish(source, BUNDLED_MODEL, "v1", CURRENT), publish(source, BUNDLED_MODEL, "v2")]
    env = {**FAKE_AWS, **reach, "API_KEYS": KEY, "MODEL_SYNC_S": str(args.sync_s), "MODEL_POLL_S": str(args.poll_s)}
    counts = {"ok": 0, "failed": 0}
    times = []
    with gunicorn({**env, "MODELS_DIR": str(folder / f"{kind}-a")}, folder / f"{kind}-a.log", workers=2) as first, \
            gunicorn({**env, "MODELS_DIR": str(folder / f"{kind}-b")}, folder / f"{kind}-b.log", workers=2) as second:
        servers = [first, second]
        for server in servers:
            wait_for_line(server, "model syncer:")
        stop = threading.Event()
        senders = [threading.Thread(target=traffic, args=(servers, stop, counts)) for _ in range(2)]
        for sender in senders:
            sender.start()
        try:
            for swap in range(args.swaps):
                time.sleep(random.uniform(0, args.sync_s))  # a random point of the syncers' poll cycle
                offsets = {server.base_url: len(server.output()) for server in servers}
                target = versions[(swap + 1) % 2]
                since = time.time()
                promote(source, target)
                times.append(swap_times(servers, offsets, target, since))
        finally:
            stop.set()
            for sender in senders:
                sender.join()
    return {"kind": kind, "uri": uri, "times": times, **counts}


def request_path(args, moto: Moto, mlflow: Mlflow, folder: Path) -> list:
    """bench.py's unique-records scenario with the model from MODEL_PATH and from each source, with its floor."""
    records = simulate_records(1000, seed=11)
    unique = lua_script([orjson.dumps(dict(record, recognition_accuracy="__ACC__")) for record in records],
                        "unique", folder)
    repeated = lua_script([orjson.dumps(record) for record in records[:50]], "repeat", folder)
    common = {"API_KEYS": KEY, "WORKER_CLASS": args.worker_class, "THREADS": str(args.threads)}
    scenarios = [("floor: bare Flask, parse JSON, constant answer", "loadtest.baseline_apps:floor", common, repeated),
                 ("service, model from MODEL_PATH (no source)", "service.wsgi:app", common, unique)]
    for kind, label in (("folder", "a folder source"), ("s3", "S3 (moto)"), ("mlflow", "MLflow")):
        source, _, reach = new_source(kind, moto, mlflow, folder)
        publish(source, BUNDLED_MODEL, "v1", CURRENT)
        env = {**common, **FAKE_AWS, **reach, "MODELS_DIR": str(folder / f"path-{kind}"), "MODEL_SYNC_S": "1"}
        scenarios.append((f"service, model synced from {label}, polled every 1 s", "service.wsgi:app", env, unique))
    probe = orjson.dumps(records[0])
    return [[measure(name, app, env, script, args, folder, probe) for name, app, env, script in scenarios]
            for _ in range(args.rounds)]


def main(argv: list[str] | None = None) -> int:
    """Time the promotions, then measure the request path; print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--sync-s", type=float, default=2.0, help="MODEL_SYNC_S of the promotion runs")
    parser.add_argument("--poll-s", type=float, default=1.0, help="MODEL_POLL_S of the promotion runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-path", action="store_true", help="time the promotions only")
    args = parser.parse_args(argv)
    os.environ.update(FAKE_AWS)  # this process publishes to moto through boto3 too
    folder = Path(tempfile.mkdtemp(prefix="regno-bench-source-"))
    (folder / "moto").mkdir()
    (folder / "mlflow").mkdir()
    try:
        with Moto(folder / "moto") as moto, Mlflow(folder / "mlflow") as mlflow:
            results = [promotions(kind, args, moto, mlflow, folder) for kind in ("s3", "mlflow")]
            rounds = None if args.skip_path else request_path(args, moto, mlflow, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"Promotion to every worker of two instances (2 workers each): MODEL_SYNC_S={args.sync_s:g}, "
          f"MODEL_POLL_S={args.poll_s:g}, {args.swaps} moves each, under traffic to both.\n")
    print("| source | swaps | median s | max s | answers | failed |")
    print("|---|---:|---:|---:|---:|---:|")
    for result in results:
        times = result["times"]
        print(f"| {result['kind']} | {len(times)} | {median(times):.2f} | {max(times):.2f} | {result['ok']:,} | "
              f"{result['failed']} |")
    print()
    if rounds is not None:
        print_tables(rounds, args)
    return 1 if any(result["failed"] for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
