"""Summary of a Locust run from its CSV reports: python -m loadtest.load_summary REPORT_PREFIX.

Reads `<prefix>_stats.csv` (and `<prefix>_failures.csv` when present), as `locust --csv <prefix>` writes
them, and prints the achieved rate, p50/p95/p99/max latency and failures of the Aggregated row and of
each request name. Locust keeps latencies under 100 ms in whole-millisecond buckets, so p50..p99 have
1 ms resolution; max is exact. When the run also left `<prefix>_server.json` (the locustfile writes it
from the service's own latency histogram), one more line gives the service's view of the same requests.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import orjson

from loadtest import server_latency

AGGREGATED = "Aggregated"
#: How Locust writes a failure the locustfile reported itself: CatchResponseError('message').
_CAUGHT = re.compile(r"""^CatchResponseError\((['"])(.*)\1\)$""", re.S)


def _number(text: str) -> float | None:
    """A CSV cell as a float; None for Locust's N/A (a row without requests)."""
    try:
        return float(text)
    except ValueError:
        return None


def _row(row: dict[str, str]) -> dict:
    """The summary figures of one stats row."""
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    return {
        "requests": requests,
        "rate": _number(row["Requests/s"]),
        "p50_ms": _number(row["50%"]),
        "p95_ms": _number(row["95%"]),
        "p99_ms": _number(row["99%"]),
        "max_ms": _number(row["Max Response Time"]),
        "failures": failures,
        "failure_ratio": failures / requests if requests else 0.0,
    }


def summarize(prefix: str | Path) -> dict:
    """{"aggregated": figures, "requests": {"METHOD name": figures}, "failures": [failure rows]} of a run."""
    prefix = str(prefix)
    with open(f"{prefix}_stats.csv", encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    aggregated = [row for row in rows if row["Name"] == AGGREGATED and not row["Type"]]
    if not aggregated:
        raise ValueError(f"{prefix}_stats.csv has no {AGGREGATED} row")
    failures = []
    failures_path = Path(f"{prefix}_failures.csv")
    if failures_path.is_file():
        with open(failures_path, encoding="utf-8", newline="") as stream:
            failures = [{"name": f"{row['Method']} {row['Name']}", "error": _CAUGHT.sub(r"\2", row["Error"]),
                         "occurrences": int(row["Occurrences"])} for row in csv.DictReader(stream)]
    return {
        "aggregated": _row(aggregated[0]),
        "requests": {f"{row['Type']} {row['Name']}": _row(row) for row in rows if row is not aggregated[0]},
        "failures": failures,
    }


def _cell(value: float | None, digits: int = 0) -> str:
    """A figure for the table; N/A when Locust had none."""
    return "N/A" if value is None else f"{value:,.{digits}f}"


def format_summary(summary: dict) -> str:
    """The summary as a text table, the Aggregated row last, then the failures by message."""
    lines = [f"{'request':<24} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
             f"{'max ms':>8} {'failures':>9} {'ratio':>8}"]
    entries = [*summary["requests"].items(), (AGGREGATED, summary["aggregated"])]
    for name, row in entries:
        lines.append(f"{name:<24} {row['requests']:>9,} {_cell(row['rate'], 1):>8} {_cell(row['p50_ms']):>7} "
                     f"{_cell(row['p95_ms']):>7} {_cell(row['p99_ms']):>7} {_cell(row['max_ms'], 1):>8} "
                     f"{row['failures']:>9,} {row['failure_ratio']:>8.2%}")
    if summary["failures"]:
        lines.append("failures:")
        lines.extend(f"  {row['occurrences']:>7,}  {row['name']}: {row['error']}" for row in summary["failures"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the summary of the run at REPORT_PREFIX; 1 with a message when its stats CSV is missing."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m loadtest.load_summary REPORT_PREFIX", file=sys.stderr)
        return 2
    try:
        summary = summarize(args[0])
    except FileNotFoundError as error:
        print(f"load_summary: no Locust report: {error.filename} is missing", file=sys.stderr)
        return 1
    except (ValueError, KeyError) as error:
        print(f"load_summary: {args[0]}_stats.csv is not a Locust stats report: {error}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    server = server_figures(args[0])
    if server is not None:
        print(format_server(server))
    return 0


def server_figures(prefix: str | Path) -> dict | None:
    """The service's own latency figures of the run (`<prefix>_server.json`), if the locustfile could write them."""
    path = Path(f"{prefix}_server.json")
    return orjson.loads(path.read_bytes()) if path.is_file() else None


def format_server(figures: dict) -> str:
    """One line: the service's own p50/p95/p99 of the scoring requests of the run."""
    return (f"service's own view ({server_latency.HISTOGRAM}, POST /reg/): {figures['requests']:,} requests, "
            f"p50 {_cell(figures['p50_ms'], 2)} ms, p95 {_cell(figures['p95_ms'], 2)} ms, "
            f"p99 {_cell(figures['p99_ms'], 2)} ms")


if __name__ == "__main__":
    raise SystemExit(main())
