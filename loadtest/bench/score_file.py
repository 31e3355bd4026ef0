"""regno-score on a generated file, its time and peak memory: python -m loadtest.bench.score_file [--rows N].

Writes N rows (the simulator's records, repeated with a different recognition_accuracy per copy so
every row is its own) to a CSV in a temporary folder, runs the regno-score console script on it, and
prints its summary line, its wall time and its peak resident memory from the kernel's accounting.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.bench.record import machine
from model.records import FIELDS
from training.simulate import simulate_records

REGNO_SCORE = str(Path(sys.executable).with_name("regno-score"))
#: Distinct simulated records; larger files repeat them with other accuracies.
DISTINCT = 100_000


def write_records(path: Path, records: list[dict], copies: int = 1) -> None:
    """Records as a CSV with the contract's columns (as the team's test_data.csv), copies times over.

    Copy k shifts every recognition_accuracy by 0.37 k (mod 100), so no two rows are the same pass.
    """
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS)
        writer.writeheader()
        for copy in range(copies):
            for record in records:
                row = {name: record[name] for name in FIELDS}
                if copy:
                    row["recognition_accuracy"] = round((float(record["recognition_accuracy"]) + copy * 0.37) % 100, 4)
                writer.writerow(row)


def run_measured(args: list) -> tuple[int, int, str]:
    """(exit status, peak RSS in KiB, stderr) of one regno-score run."""
    process = subprocess.Popen([REGNO_SCORE, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    # wait4 gives this child's own resource usage, peak memory included; communicate() would lose it.
    _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss, process.stderr.read()


def main(argv: list[str] | None = None) -> int:
    """Generate, score, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="regno-score-bench-") as folder:
        source = Path(folder) / "passes.csv"
        distinct = min(args.rows, DISTINCT)
        records = simulate_records(distinct, seed=7)
        copies = -(-args.rows // distinct)
        write_records(source, records, copies)
        rows = distinct * copies
        started = time.monotonic()
        status, peak_kib, summary = run_measured([source, "--chunk-rows", args.chunk_rows])
        seconds = time.monotonic() - started
        size_mb = source.stat().st_size / 1e6
    print(f"Measured {time.strftime('%Y-%m-%d')} on {machine()}")
    print(summary.strip())
    print(f"{rows:,} rows, {size_mb:,.0f} MB of CSV, chunks of {args.chunk_rows:,}: exit {status}, {seconds:.1f} s "
          f"wall, peak RSS {peak_kib / 1024:,.0f} MiB")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
