"""Hostile clients against the front door, in one run: python -m loadtest.bench.stalled [--rate 500] [--seconds 15].

Starts the stack `make serve` runs (nginx before two sync workers), opens --stalled-headers connections that
send half a request header and --stalled-bodies that send a header and part of the body, then go quiet, and
holds them open while an open-loop client sends normal requests (unique records, so no cache hit) at a fixed
--rate for --seconds. Latency is measured from each request's scheduled time, so a stall shows as latency even
when the client is held up (no coordinated omission); a request not answered --timeout seconds after its
scheduled time counts as a timeout (and is not sent at all when that moment has passed before a connection is
free), so every run ends within --seconds + --timeout. The proxy's header and body timeouts are raised above the
run, so every stalled connection stays held throughout; nginx's exporter reports how many it held, before and
after the traffic. For contrast, the same traffic then meets gunicorn directly with --direct-stalled connections
stalled in their headers, for --direct-seconds. Everything goes to 127.0.0.1; every socket is closed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import requests

from loadtest.bench.record import machine
from training.simulate import simulate_records
from loadtest.servers import gunicorn, serve

KEY = "bench-key"
STALLED_HEADER = b"POST /reg/ HTTP/1.1\r\nHost: stalled\r\nx-api-key: "
STALLED_BODY = (b"POST /reg/ HTTP/1.1\r\nHost: stalled\r\nContent-Type: application/json\r\nx-api-key: " + KEY.encode()
                + b"\r\nContent-Length: 1000\r\n\r\n{\"regno")


@dataclass
class Run:
    """One target's figures for the paced traffic."""

    name: str
    stalled: int  # stalled connections held throughout (the fewer of the counts before and after the traffic)
    sent: int  # requests scheduled
    errors: int = 0  # answered with another status than 200, or the connection failed
    timeouts: int = 0  # not answered within the timeout of their scheduled time (sent or not)
    latencies_ms: list[float] = field(default_factory=list)  # of the requests answered 200 in time
    wall_s: float = 0.0

    @property
    def failures(self) -> int:
        """Every scheduled request that did not get a 200 in time."""
        return self.errors + self.timeouts

    def percentile(self, share: float) -> float:
        """The latency at share (0..1) of the answered requests, in ms."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def bodies(count: int) -> list[bytes]:
    """count request bodies of simulated records, each made unique by its recognition_accuracy (no cache hit)."""
    records = simulate_records(1000, seed=11)
    return [orjson.dumps(dict(records[n % len(records)], recognition_accuracy=((n * 128) % 100_000_000) / 1_000_000))
            for n in range(count)]


def stall_all(host: str, port: int, parts: list[bytes], sockets: list[socket.socket]) -> None:
    """Open one connection per part, send the part and go quiet; each socket goes into sockets (to be closed)."""
    for part in parts:
        sock = socket.create_connection((host, port), timeout=5)
        sockets.append(sock)
        sock.sendall(part)


def close_all(sockets: list[socket.socket]) -> None:
    """Close every socket."""
    for sock in sockets:
        sock.close()


def paced(name: str, host: str, port: int, args, seconds: float, stalled: int = 0,
          id_prefix: str | None = None) -> Run:
    """POST /reg/ at a fixed rate from args.connections threads, each over its own connection, kept alive
    unless args.no_keep_alive or the server closes it; latency counts from each request's scheduled time.

    With id_prefix, request n carries X-Request-ID id_prefix + n.
    """
    total = int(args.rate * seconds)
    payloads = bodies(total)
    headers = {"Content-Type": "application/json", "x-api-key": KEY}
    if args.no_keep_alive:
        headers["Connection"] = "close"
    run = Run(name, stalled, total)
    lock = threading.Lock()
    following = iter(range(total))
    start = time.monotonic() + 0.2

    def worker():
        connection = http.client.HTTPConnection(host, port, timeout=args.timeout)
        while True:
            with lock:
                index = next(following, None)
            if index is None:
                break
            scheduled = start + index / args.rate
            if scheduled > time.monotonic():
                time.sleep(scheduled - time.monotonic())
            deadline = scheduled + args.timeout
            outcome = "timeout"
            if time.monotonic() < deadline:  # else its answer is already late: count it without sending it
                try:
                    connection.timeout = max(0.001, deadline - time.monotonic())  # what is left, per step
                    if connection.sock is not None:
                        connection.sock.settimeout(connection.timeout)
                    sent_headers = headers if id_prefix is None else {**headers, "X-Request-ID": f"{id_prefix}{index}"}
                    connection.request("POST", "/reg/", payloads[index], sent_headers)
                    response = connection.getresponse()
                    response.read()
                    outcome = "ok" if response.status == 200 else "error"
                    if response.will_close:
                        connection.close()  # sync workers close each connection: a new one next time
                except TimeoutError:
                    connection.close()
                except (OSError, http.client.HTTPException):
                    outcome = "error"
                    connection.close()
            latency = time.monotonic() - scheduled
            with lock:
                if outcome == "ok" and latency <= args.timeout:
                    run.latencies_ms.append(latency * 1000)
                elif outcome == "error":
                    run.errors += 1
                else:
                    run.timeouts += 1
        connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.connections)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.wall_s = time.monotonic() - began
    return run


def held(exporter_url: str) -> int:
    """Connections nginx holds reading a request header or past it (nginx counts those as writing), less the
    exporter's own scrape of nginx's status page."""
    text = requests.get(f"{exporter_url}/metrics", timeout=5).text
    state = {name: float(value) for name, value in re.findall(r"^nginx_connections_(\w+) (\S+)$", text, re.M)}
    return int(state["reading"] + state["writing"]) - 1


def through_proxy(args, folder: Path) -> Run:
    """The stack with the stalled connections held, and the paced traffic through nginx."""
    hold = str(int(args.seconds + args.timeout) * 4 + 60)  # nginx's header and body timeouts: well past the run
    env = {"API_KEYS": KEY, "PROXY_HEADER_TIMEOUT_S": hold, "PROXY_BODY_TIMEOUT_S": hold}
    with serve(env, folder / "stack.log", workers=args.workers) as stack:
        host, port = stack.base_url.split("//")[1].split(":")
        sockets: list[socket.socket] = []
        try:
            stall_all(host, int(port), [STALLED_HEADER] * args.stalled_headers + [STALLED_BODY] * args.stalled_bodies,
                      sockets)
            time.sleep(0.5)
            before = held(stack.exporter_url)
            run = paced("through nginx (make serve)", host, int(port), args, args.seconds)
            run.stalled = min(before, held(stack.exporter_url))
        finally:
            close_all(sockets)
    return run


def direct(args, folder: Path) -> Run:
    """gunicorn met directly, with a few connections stalled in their headers: the outage the proxy prevents."""
    with gunicorn({"API_KEYS": KEY}, folder / "gunicorn.log", workers=args.workers) as server:
        host, port = server.base_url.split("//")[1].split(":")
        sockets: list[socket.socket] = []
        try:
            stall_all(host, int(port), [STALLED_HEADER] * args.direct_stalled, sockets)
            time.sleep(0.5)
            run = paced("gunicorn direct", host, int(port), args, args.direct_seconds, len(sockets))
        finally:
            close_all(sockets)
    return run


def main(argv: list[str] | None = None) -> int:
    """Run both targets and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="normal requests a second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the run through the proxy")
    parser.add_argument("--stalled-headers", type=int, default=200)
    parser.add_argument("--stalled-bodies", type=int, default=200)
    parser.add_argument("--connections", type=int, default=16, help="connections of the normal traffic")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds after its scheduled time a request counts as timed out")
    parser.add_argument("--no-keep-alive", action="store_true",
                        help="normal traffic asks for Connection: close, one connection per request")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--direct-stalled", type=int, default=2, help="stalled connections against gunicorn direct")
    parser.add_argument("--direct-seconds", type=float, default=3.0)
    parser.add_argument("--skip-direct", action="store_true", help="leave out the gunicorn-direct contrast")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="regno-bench-stalled-"))
    try:
        runs = [through_proxy(args, folder)]
        if not args.skip_direct:
            runs.append(direct(args, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}; {args.workers} sync workers; normal traffic "
          f"(unique records) at {args.rate:g} requests/s from {args.connections} "
          f"{'new connections per request' if args.no_keep_alive else 'kept-alive connections'} on the same cores; "
          f"latency from each request's scheduled time, of the requests answered 200; a request unanswered "
          f"{args.timeout:g} s after its scheduled time is a timeout; proxy header and body timeouts raised to "
          f"{int(args.seconds + args.timeout) * 4 + 60} s, above the run.\n")
    print("| target | stalled connections held | requests | failures | of which timeouts | p50 ms | p95 ms | p99 ms "
          "| seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        shares = " | ".join(f"{run.percentile(share):.2f}" if run.latencies_ms else "-" for share in (0.5, 0.95, 0.99))
        print(f"| {run.name} | {run.stalled} | {run.sent} | {run.failures} | {run.timeouts} | {shares} | "
              f"{run.wall_s:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
