"""The prediction log at the production rate: every answer has its row, and nothing is dropped.

    python -m loadtest.bench.log [--rate 500] [--seconds 60] [--pass-index sqlite|redis]

Starts gunicorn (2 sync workers) with PREDICTION_LOG_DIR in a temporary folder, sends unique records at a
fixed rate from an open-loop client (loadtest/bench/stalled.py's), each with its own X-Request-ID, waits
until the workers' shippers have put every row in Parquet, and prints the answers given, the rows found
(by DuckDB, the documented query), the distinct request ids among them, the rows dropped (from /metrics)
and the latency. Then it labels every answered pass by its request id through POST /reg/feedback, in
requests of LABELS_PER_REQUEST, and prints the labels accepted, the labelled passes /metrics counts, the
labels taken per second and what the pass index holds per pass (the SQLite file, or the memory of a
redis-server of its own with --pass-index redis). A benchmark, not a test: the figures go to
docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import redis
import requests

from loadtest.bench.cache import start_redis
from loadtest.bench.record import machine
from loadtest.bench.stalled import KEY, paced
from loadtest.servers import gunicorn
from service.predictions.query import connect, rows

#: The label key the labels are sent with, and the pass-id secret the log needs in production.
LABEL_KEY, PASS_ID_SECRET = "bench-label-key", "bench-pass-id-secret"
#: Labels in one POST /reg/feedback (a clerk's batch; BATCH_REQUEST_MAX_RECORDS allows up to 1000).
LABELS_PER_REQUEST = 100
#: The true plate every label names: any well-formed plate will do, right or wrong.
TRUE_PLATE = "А812НН790"


def logged(root: Path) -> dict:
    """Rows and distinct request ids in the Parquet files under root."""
    if not any(root.glob("day=*/*.parquet")):
        return {"rows": 0, "ids": 0}
    return rows(connect(root), "SELECT count(*) AS rows, count(DISTINCT request_id) AS ids FROM predictions")[0]


def dropped(base_url: str) -> int:
    """Rows the workers dropped (queue or spool full), from /metrics."""
    text = requests.get(f"{base_url}/metrics", timeout=5).text
    return int(sum(float(value) for value in re.findall(
        r'^regno_prediction_log_rows_total\{outcome="dropped_[a-z_]+"\} (\S+)$', text, re.M)))


def metric_sum(base_url: str, name: str) -> float:
    """The sum of a counter's samples over every label set, from /metrics."""
    text = requests.get(f"{base_url}/metrics", timeout=5).text
    return sum(float(value) for value in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def label_all(base_url: str, answered: int) -> tuple[int, float]:
    """Label passes bench-0 .. bench-(answered-1) by request id; (labels accepted, seconds taken)."""
    accepted, session, started = 0, requests.Session(), time.perf_counter()
    for start in range(0, answered, LABELS_PER_REQUEST):
        labels = [{"request_id": f"bench-{index}", "true_regno": TRUE_PLATE, "source": "bench"}
                  for index in range(start, min(start + LABELS_PER_REQUEST, answered))]
        response = session.post(f"{base_url}/reg/feedback", json={"labels": labels},
                                headers={"x-api-key": LABEL_KEY}, timeout=30)
        accepted += response.json()["body"]["accepted"]
    return accepted, time.perf_counter() - started


def sqlite_index_bytes(log_dir: Path) -> tuple[int, int]:
    """(passes, bytes) of the SQLite pass index, its write-ahead log folded in first."""
    index = log_dir / "passes.sqlite"
    with sqlite3.connect(index) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        passes = connection.execute("SELECT count(*) FROM passes").fetchone()[0]
    return passes, sum(path.stat().st_size for path in log_dir.glob("passes.sqlite*"))


def main(argv: list[str] | None = None) -> int:
    """Run the paced traffic with the log on and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pass-index", choices=("sqlite", "redis"), default="sqlite")
    args = parser.parse_args(argv)
    args.no_keep_alive = False
    folder = Path(tempfile.mkdtemp(prefix="regno-bench-log-"))
    root = folder / "log" / "parquet"
    redis_process = None
    try:
        env = {"API_KEYS": KEY, "LABEL_API_KEYS": f"bench:{LABEL_KEY}", "PASS_ID_SECRET": PASS_ID_SECRET,
               "PREDICTION_LOG_DIR": str(folder / "log"), "PREDICTION_LOG_SEGMENT_S": "2"}
        if args.pass_index == "redis":
            redis_process, env["PASS_INDEX_URL"] = start_redis()
            index_client = redis.Redis.from_url(env["PASS_INDEX_URL"])
            empty_bytes = index_client.info("memory")["used_memory"]
        with gunicorn(env, folder / "gunicorn.log", workers=args.workers) as server:
            host, port = server.base_url.split("//")[1].split(":")
            run = paced("prediction log on", host, int(port), args, args.seconds, id_prefix="bench-")
            answered = len(run.latencies_ms)
            deadline, found = time.monotonic() + 120, logged(root)
            while found["rows"] < answered and time.monotonic() < deadline:
                time.sleep(1)
                found = logged(root)
            drops = dropped(server.base_url)
            if redis_process is not None:
                # Every record is unique, so each logged row is a pass of its own.
                indexed, index_bytes = found["rows"], index_client.info("memory")["used_memory"] - empty_bytes
            else:
                indexed, index_bytes = sqlite_index_bytes(folder / "log")
            accepted, labelling_s = label_all(server.base_url, answered)
            labelled = metric_sum(server.base_url, "regno_quality_labelled_total")
    finally:
        if redis_process is not None:
            redis_process.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}; {args.workers} sync workers; unique records "
          f"at {args.rate:g} requests/s for {args.seconds:g} s from {args.connections} kept-alive connections; "
          f"PREDICTION_LOG_SEGMENT_S=2, shipped to Parquet by the workers.\n")
    print("| requests | answered 200 | failed or late | rows in Parquet | distinct request ids | dropped | "
          "p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {run.sent} | {answered} | {run.failures} | {found['rows']} | {found['ids']} | {drops} | "
          f"{run.percentile(0.5):.2f} | {run.percentile(0.99):.2f} |")
    print(f"\nLabels for every answered pass by request id, {LABELS_PER_REQUEST} a request, one client; pass index "
          f"{'in a redis-server of its own' if redis_process is not None else 'in SQLite'}.\n")
    print("| labels sent | accepted | labelled on /metrics | labels/s | passes indexed | index bytes per pass |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {answered} | {accepted} | {labelled:.0f} | {accepted / labelling_s:,.0f} | {indexed} | "
          f"{index_bytes / max(indexed, 1):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
