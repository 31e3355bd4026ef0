"""make bench-containers: Locust at a fixed rate through the containerised stack's proxy, beside make serve's stack.

    python -m loadtest.containers.bench [--rate 500] [--seconds 60] [--users 20]

In one run, on one machine: make serve's stack (nginx before 2 gunicorn workers, from the source tree) with
Locust on the host; then compose's default profile (the images built by `make images`, limits and all) with the
same Locust on the host against its published port 8080, and compose's own `load` profile (Locust in its
container, on the stack's network). The same simulated traffic each time: 30% resent records, 2% malformed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.containers import (IMAGES, PUBLIC_URL, ComposeStack, build_images, ensure_engine, locust_arguments,
                                 stop_engine)
from loadtest.load_summary import summarize
from loadtest.servers import ROOT, serve

KEY = "bench-containers-key"
SETTINGS = {"API_KEYS": KEY, "LOAD_API_KEY": KEY, "GRAFANA_ADMIN_PASSWORD": "unused-here",
            "PASS_ID_SECRET": "bench-containers-pass-id-secret"}


def host_locust(host: str, rate: float, users: int, seconds: float, folder: Path, name: str) -> dict:
    """Locust on this machine against host; the aggregated figures."""
    env = {**os.environ, "API_KEY": KEY, "LOAD_RATE": str(rate), "LOAD_USERS": str(users)}
    subprocess.run([sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
                    *locust_arguments(host, users, seconds, str(folder / name))], env=env, cwd=ROOT,
                   capture_output=True, timeout=seconds + 120)
    return summarize(folder / name)["aggregated"]


def main(argv: list[str] | None = None) -> int:
    """Run the three cases and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests a second, all users together")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run")
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args(argv)
    results = []
    started = ensure_engine()
    try:
        build_images(IMAGES)
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            with serve({"API_KEYS": KEY}, folder / "serve.log") as stack:
                results.append(("make serve, Locust on the host",
                                host_locust(stack.base_url, args.rate, args.users, args.seconds, folder, "serve")))
            compose = ComposeStack("regno-bench", SETTINGS)
            compose.down()
            try:
                compose.up()
                time.sleep(5)  # let the first scrapes and syncs pass
                results.append(("compose, Locust on the host",
                                host_locust(PUBLIC_URL, args.rate, args.users, args.seconds, folder, "compose")))
                _, figures = compose.load_profile(folder, args.users, args.seconds, LOAD_RATE=str(args.rate),
                                                  LOAD_USERS=str(args.users))
                results.append(("compose, Locust in its container (load profile)", figures))
            finally:
                compose.down()
    finally:
        stop_engine(started)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores; {args.rate:.0f} req/s for "
          f"{args.seconds:.0f} s, {args.users} users")
    print(f"{'case':<50} {'requests':>9} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'failures':>9}")
    for name, figures in results:
        print(f"{name:<50} {figures['requests']:>9,} {figures['rate']:>7.1f} {figures['p50_ms']:>7} "
              f"{figures['p95_ms']:>7} {figures['p99_ms']:>7} {figures['failures']:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
