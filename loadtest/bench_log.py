"""The prediction log at the production rate: every answer has its row, and nothing is dropped.

    python -m loadtest.bench_log [--rate 500] [--seconds 60]

Starts gunicorn (2 sync workers) with PREDICTION_LOG_DIR in a temporary folder, sends unique records at a
fixed rate from an open-loop client (loadtest/bench_stalled.py's), each with its own X-Request-ID, waits
until the workers' shippers have put every row in Parquet, and prints the answers given, the rows found
(by DuckDB, the documented query), the distinct request ids among them, the rows dropped (from /metrics)
and the latency. A benchmark, not a test: the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import tempfile
import time
from pathlib import Path

import requests

from loadtest.bench_record import machine
from loadtest.bench_stalled import KEY, paced
from loadtest.servers import gunicorn
from service.predictions.query import connect, rows


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


def main(argv: list[str] | None = None) -> int:
    """Run the paced traffic with the log on and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    args.no_keep_alive = False
    folder = Path(tempfile.mkdtemp(prefix="regno-bench-log-"))
    root = folder / "log" / "parquet"
    try:
        env = {"API_KEYS": KEY, "PREDICTION_LOG_DIR": str(folder / "log"), "PREDICTION_LOG_SEGMENT_S": "2"}
        with gunicorn(env, folder / "gunicorn.log", workers=args.workers) as server:
            host, port = server.base_url.split("//")[1].split(":")
            run = paced("prediction log on", host, int(port), args, args.seconds, id_prefix="bench-")
            answered = len(run.latencies_ms)
            deadline, found = time.monotonic() + 120, logged(root)
            while found["rows"] < answered and time.monotonic() < deadline:
                time.sleep(1)
                found = logged(root)
            drops = dropped(server.base_url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}; {args.workers} sync workers; unique records "
          f"at {args.rate:g} requests/s for {args.seconds:g} s from {args.connections} kept-alive connections; "
          f"PREDICTION_LOG_SEGMENT_S=2, shipped to Parquet by the workers.\n")
    print("| requests | answered 200 | failed or late | rows in Parquet | distinct request ids | dropped | "
          "p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {run.sent} | {answered} | {run.failures} | {found['rows']} | {found['ids']} | {drops} | "
          f"{run.percentile(0.5):.2f} | {run.percentile(0.99):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
