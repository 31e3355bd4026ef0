"""Throughput of POST /reg/ with metrics and Sentry on against both off: python -m loadtest.bench.overhead.

Starts the service under the same gunicorn settings in both configurations, one after another, several
rounds interleaved, and drives each with wrk for the same time. Sentry points at a local receiver, so
the SDK is live but nothing leaves the machine. Prints the medians and the ratio for the README.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from loadtest.bench.record import machine
from training.simulate import simulate_records
from loadtest.servers import gunicorn

KEY = "bench-key"


class SentrySink(BaseHTTPRequestHandler):
    """Accepts whatever the Sentry SDK sends."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        """Quiet."""


def wrk_script(bodies: list[bytes], folder: Path) -> Path:
    """A wrk Lua script that POSTs the bodies to /reg/ in turn."""
    entries = ",\n".join(f"[==[{body.decode()}]==]" for body in bodies)
    script = folder / "post.lua"
    script.write_text(
        f"local bodies = {{\n{entries}\n}}\nlocal i = 0\n"
        f'local headers = {{["Content-Type"] = "application/json", ["x-api-key"] = "{KEY}"}}\n'
        "request = function()\n  i = i % #bodies + 1\n"
        '  return wrk.format("POST", "/reg/", headers, bodies[i])\nend\n',
        encoding="utf-8",
    )
    return script


def requests_per_second(url: str, script: Path, seconds: int, connections: int) -> float:
    """Run wrk against url and read its Requests/sec; fail on any non-2xx answer."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench-overhead: wrk is not installed (make bench-overhead installs it)")
    output = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                            capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise SystemExit(f"bench-overhead: errors during the run:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def main(argv: list[str] | None = None) -> int:
    """Measure each configuration in interleaved rounds and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    sink = ThreadingHTTPServer(("127.0.0.1", 0), SentrySink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    dsn = f"http://key@127.0.0.1:{sink.server_address[1]}/1"
    folder = Path(tempfile.mkdtemp(prefix="regno-bench-"))
    records = simulate_records(1000, seed=7)
    scenarios = {
        "scored (L1 off: every request runs the model)": ({"CACHE_L1_SIZE": "0"}, records),
        "cached (L1 hits: 50 records repeated)": ({}, records[:50]),
    }
    configurations = {
        "on": {"METRICS_ENABLED": "true", "SENTRY_DSN": dsn},
        "off": {"METRICS_ENABLED": "false", "SENTRY_DSN": ""},
    }
    results: dict[tuple[str, str], list[float]] = {}
    for scenario, (extra, chosen) in scenarios.items():
        script = wrk_script([orjson.dumps(record) for record in chosen], folder)
        for _ in range(args.rounds):
            for name, env in configurations.items():
                env = {"API_KEYS": KEY, **extra, **env}
                with gunicorn(env, folder / f"{name}.log", workers=args.workers) as server:
                    requests_per_second(f"{server.base_url}/reg/", script, 2, args.connections)  # warm-up
                    rate = requests_per_second(f"{server.base_url}/reg/", script, args.seconds, args.connections)
                results.setdefault((scenario, name), []).append(rate)
    sink.shutdown()
    shutil.rmtree(folder, ignore_errors=True)

    print(f"Measured {datetime.date.today().isoformat()} on {machine()}; wrk (1 thread, {args.connections} "
          f"connections) on the same machine; gunicorn {args.workers} sync workers; access log on in both; "
          f"median of {args.rounds} interleaved rounds of {args.seconds} s.\n")
    print("| scenario | metrics + Sentry off, req/s | on, req/s | on / off |")
    print("|---|---:|---:|---:|")
    for scenario in scenarios:
        off = statistics.median(results[(scenario, "off")])
        on = statistics.median(results[(scenario, "on")])
        print(f"| {scenario} | {off:,.0f} | {on:,.0f} | {on / off:.3f} |")
    for (scenario, name), rates in results.items():
        print(f"rounds, {name}, {scenario}: {', '.join(f'{rate:,.0f}' for rate in rates)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
