"""Hostile clients against the front door, in one run: python -m loadtest.bench_stalled [--rate 500] [--seconds 15].

Starts the stack `make serve` runs (nginx before two sync workers), opens --stalled-headers connections that
send half a request header and --stalled-bodies that send a header and part of the body, then go quiet, and
holds them open while an open-loop client sends normal requests at a fixed --rate for --seconds. Latency is
measured from each request's scheduled time, so a stall shows as latency even when the client is held up (no
coordinated omission). The proxy's header and body timeouts are raised above the run, so every stalled
connection stays held throughout; nginx's exporter reports how many it held. For contrast, the same traffic
then meets gunicorn directly with --direct-stalled connections stalled in their headers, for --direct-seconds.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests

from model.bench import machine
from model.scorer import PROBE_RECORD
from tests.servers import gunicorn, serve

KEY = "bench-key"
STALLED_HEADER = b"POST /reg/ HTTP/1.1\r\nHost: stalled\r\nx-api-key: "
STALLED_BODY = (b"POST /reg/ HTTP/1.1\r\nHost: stalled\r\nContent-Type: application/json\r\nx-api-key: " + KEY.encode()
                + b"\r\nContent-Length: 1000\r\n\r\n{\"regno")


@dataclass
class Run:
    """One target's figures for the paced traffic."""

    name: str
    stalled: int
    sent: int
    failures: int
    latencies_ms: list[float]

    def percentile(self, share: float) -> float:
        """The latency at share (0..1) of the answered requests, in ms."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def stall(host: str, port: int, part: bytes) -> socket.socket:
    """A connection that sent part of a request and then goes quiet."""
    sock = socket.create_connection((host, port))
    sock.sendall(part)
    return sock


def paced(host: str, port: int, rate: float, seconds: float, connections: int, timeout: float) -> tuple[int, list]:
    """Send POST /reg/ at a fixed rate over kept-alive connections; (failures, latencies from the schedule)."""
    body = orjson.dumps(PROBE_RECORD)
    headers = {"Content-Type": "application/json", "x-api-key": KEY}
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    lock = threading.Lock()
    state = {"next": 0, "failures": 0}
    latencies: list[float] = []

    def worker():
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        while True:
            with lock:
                index = state["next"]
                state["next"] += 1
            if index >= total:
                break
            scheduled = start + index / rate
            pause = scheduled - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                connection.request("POST", "/reg/", body, headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
                if response.getheader("connection", "").lower() == "close":
                    connection.close()  # gunicorn's sync workers close each connection: open a new one next time
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
            with lock:
                if ok:
                    latencies.append((time.monotonic() - scheduled) * 1000)
                else:
                    state["failures"] += 1
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return state["failures"], latencies


def held(exporter_url: str) -> int:
    """Connections nginx holds that are reading a request or past its header (nginx counts those as writing)."""
    text = requests.get(f"{exporter_url}/metrics", timeout=5).text
    state = {name: float(value) for name, value in re.findall(r"^nginx_connections_(\w+) (\S+)$", text, re.M)}
    return int(state["reading"] + state["writing"])


def through_proxy(args, folder: Path) -> Run:
    """The stack with the stalled connections held, and the paced traffic through nginx."""
    hold = str(int(args.seconds * 4 + 60))  # the stalls must outlive the run
    env = {"API_KEYS": KEY, "PROXY_HEADER_TIMEOUT_S": hold, "PROXY_BODY_TIMEOUT_S": hold}
    with serve(env, folder / "stack.log", workers=args.workers) as stack:
        host, port = stack.base_url.split("//")[1].split(":")
        sockets = [stall(host, int(port), STALLED_HEADER) for _ in range(args.stalled_headers)]
        sockets += [stall(host, int(port), STALLED_BODY) for _ in range(args.stalled_bodies)]
        try:
            time.sleep(0.5)
            failures, latencies = paced(host, int(port), args.rate, args.seconds, args.connections, timeout=5)
            stalled = held(stack.exporter_url) - 1  # less the exporter's own scrape
        finally:
            for sock in sockets:
                sock.close()
    return Run("through nginx (make serve)", stalled, int(args.rate * args.seconds), failures, latencies)


def direct(args, folder: Path) -> Run:
    """gunicorn met directly, with a few connections stalled in their headers: the outage the proxy prevents."""
    with gunicorn({"API_KEYS": KEY}, folder / "gunicorn.log", workers=args.workers) as server:
        host, port = server.base_url.split("//")[1].split(":")
        sockets = [stall(host, int(port), STALLED_HEADER) for _ in range(args.direct_stalled)]
        try:
            time.sleep(0.5)
            failures, latencies = paced(host, int(port), args.rate, args.direct_seconds, args.connections,
                                        timeout=args.direct_seconds)
        finally:
            for sock in sockets:
                sock.close()
    return Run("gunicorn direct", len(sockets), int(args.rate * args.direct_seconds), failures, latencies)


def main(argv: list[str] | None = None) -> int:
    """Run both targets and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="normal requests a second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the run through the proxy")
    parser.add_argument("--stalled-headers", type=int, default=200)
    parser.add_argument("--stalled-bodies", type=int, default=200)
    parser.add_argument("--connections", type=int, default=16, help="kept-alive connections of the normal traffic")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--direct-stalled", type=int, default=2, help="stalled connections against gunicorn direct")
    parser.add_argument("--direct-seconds", type=float, default=3.0)
    parser.add_argument("--skip-direct", action="store_true", help="leave out the gunicorn-direct contrast")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="regno-bench-stalled-"))
    runs = [through_proxy(args, folder)]
    if not args.skip_direct:
        runs.append(direct(args, folder))
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}; {args.workers} sync workers; normal traffic "
          f"at {args.rate:g} requests/s from {args.connections} kept-alive connections on the same cores, latency "
          f"from each request's scheduled time.\n")
    print("| target | stalled connections held | requests | failures | p50 ms | p95 ms | p99 ms | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run, seconds in zip(runs, (args.seconds, args.direct_seconds)):
        print(f"| {run.name} | {run.stalled} | {run.sent} | {run.failures} | {run.percentile(0.5):.2f} | "
              f"{run.percentile(0.95):.2f} | {run.percentile(0.99):.2f} | {seconds:g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
