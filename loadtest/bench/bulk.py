"""/reg/ beside the biggest legal bulk work, in one run: python -m loadtest.bench.bulk [--rate 500] [--seconds 15].

make bench runs it after its throughput table (bench.py). Through the stack `make serve` runs (nginx before two
sync workers, and the bulk pool), /reg/ takes unique records at a fixed --rate from an open-loop client (latency
from each request's scheduled time, as loadtest/bench/stalled.py measures it), in three cases that take turns for
--rounds rounds: alone; while --batch-clients clients send maximum-size batches (BATCH_REQUEST_MAX_RECORDS
records, just under BATCH_REQUEST_MAX_BYTES) to /reg/batch back to back; and the same with BULK_WORKERS=0, the
layout before the bulk pool, where batches run on the workers /reg/ needs. It prints /reg/'s figures, the batches
answered and how long they took, and the bulk worker's memory before and after.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from types import SimpleNamespace

import orjson

from config import Settings
from loadtest.bench.record import machine
from loadtest.bench.stalled import KEY, Run, paced
from loadtest.bulk_clients import BatchClients, max_batch_body
from loadtest.servers import memory, serve, workers_of

#: The cases: name, BULK_WORKERS, whether batch clients run beside /reg/.
CASES = (
    ("/reg/ alone", "1", False),
    ("/reg/ beside maximum-size batches, bulk pool", "1", True),
    ("/reg/ beside maximum-size batches, no bulk pool (BULK_WORKERS=0)", "0", True),
)


@dataclass
class Case:
    """One case's figures in one round."""

    name: str
    run: Run
    batches: int = 0
    batch_s: float = float("nan")
    #: The bulk worker's RSS in MiB before the traffic and after it (None without a bulk pool).
    bulk_rss_mib: tuple[float, float] | None = None
    #: The service's own p99 for the same /reg/ requests, from its access lines (duration_ms), in ms.
    service_p99_ms: float = float("nan")


def rss_mib(pid: int) -> float:
    """A process's resident memory in MiB."""
    return memory(pid)[0] / 1024


def service_p99_ms(output: str, prefix: str) -> float:
    """The p99 of duration_ms in the service's access lines of the requests whose id starts with prefix."""
    durations = sorted(line["duration_ms"] for line in map(orjson.loads, re.findall(r'^\{"ts".*$', output, re.M))
                       if str(line.get("request_id", "")).startswith(prefix))
    return durations[min(len(durations) - 1, int(0.99 * len(durations)))] if durations else float("nan")


def measure(name: str, bulk_workers: str, with_batches: bool, body: bytes, args, folder: Path) -> Case:
    """Start the stack, warm it up, send /reg/ at the rate (beside the batch clients when asked), stop it."""
    env = {"API_KEYS": KEY, "BULK_WORKERS": bulk_workers}
    prefix = f"bench-bulk-{time.monotonic_ns()}-"
    with serve(env, folder / "stack.log", workers=args.workers) as stack:
        host, port = stack.base_url.split("//")[1].split(":")
        bulk = workers_of(stack.gunicorn_pid("bulk")) if bulk_workers != "0" else []
        paced("warm-up", host, int(port), args, 2.0)
        before = rss_mib(bulk[0]) if bulk else None
        if not with_batches:
            run = paced(name, host, int(port), args, args.seconds, id_prefix=prefix)
            return Case(name, run, bulk_rss_mib=(before, rss_mib(bulk[0])) if bulk else None,
                        service_p99_ms=service_p99_ms(stack.output(), prefix))
        with BatchClients(f"{stack.base_url}/reg/batch", body, KEY, args.batch_clients) as clients:
            time.sleep(0.5)  # the first batches are in
            run = paced(name, host, int(port), args, args.seconds, id_prefix=prefix)
        if set(clients.statuses) != {200}:
            raise SystemExit(f"bench: batches were answered {dict(clients.statuses)}")
        time.sleep(0.5)  # the worker has handed its last batch's memory back
        return Case(name, run, sum(clients.statuses.values()), clients.mean_s,
                    (before, rss_mib(bulk[0])) if bulk else None, service_p99_ms(stack.output(), prefix))


def run_cases(args) -> list[list[Case]]:
    """Every case, --rounds times, taking turns."""
    limits = Settings()
    body = max_batch_body(limits.batch_request_max_records, limits.batch_request_max_bytes)
    folder = Path(tempfile.mkdtemp(prefix="regno-bench-bulk-"))
    try:
        return [[measure(name, workers, batches, body, args, folder) for name, workers, batches in CASES]
                for _ in range(args.rounds)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def print_table(rounds: list[list[Case]], args) -> None:
    """The cases' medians over the rounds."""
    limits = Settings()
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}; make serve's stack, {args.workers} sync "
          f"workers and a bulk pool of {limits.bulk_workers} (nice {limits.bulk_nice}); /reg/ at {args.rate:g} req/s "
          f"(unique records, {args.connections} kept-alive connections, latency from each request's scheduled time) "
          f"for {args.seconds:g} s; {args.batch_clients} clients sending batches of "
          f"{limits.batch_request_max_records:,} records ({limits.batch_request_max_bytes / 2**20:.0f} MiB cap) back "
          f"to back; everything on the same cores; median of {len(rounds)} round{'s' * (len(rounds) > 1)}.\n")
    print("| case | /reg/ requests | failures | p50 ms | p99 ms | service's own p99 ms | batches answered | s per batch "
          "| bulk worker MiB before / after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for index, name in enumerate(case.name for case in rounds[0]):
        cases = [each[index] for each in rounds]
        memory = [case.bulk_rss_mib for case in cases if case.bulk_rss_mib]
        print(f"| {name} | {median(c.run.sent for c in cases):,.0f} | {median(c.run.failures for c in cases):,.0f} | "
              f"{median(c.run.percentile(0.5) for c in cases):.2f} | {median(c.run.percentile(0.99) for c in cases):.2f}"
              f" | {median(c.service_p99_ms for c in cases):.2f} | {median(c.batches for c in cases):,.0f} | "
              f"{'-' if not cases[0].batches else f'{median(c.batch_s for c in cases):.2f}'} | "
              f"{' / '.join(f'{median(m[i] for m in memory):.0f}' for i in (0, 1)) if memory else '-'} |")


def arguments(argv: list[str] | None, workers: int = 2) -> SimpleNamespace:
    """This benchmark's options from argv (make bench passes on those its own parser does not know)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="/reg/ requests a second")
    parser.add_argument("--bulk-seconds", dest="seconds", type=float, default=15.0, help="length of each case")
    parser.add_argument("--batch-clients", type=int, default=2)
    parser.add_argument("--paced-connections", dest="connections", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds after its scheduled time a /reg/ request counts as timed out")
    parser.add_argument("--bulk-rounds", dest="rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=workers)
    return SimpleNamespace(**vars(parser.parse_args(argv)), no_keep_alive=False)


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print the table."""
    args = arguments(argv)
    print_table(run_cases(args), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
