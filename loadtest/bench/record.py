"""In-process cost of one record: this service's path against the team's original approach.

python -m loadtest.bench.record [--model PATH] [--records CSV] [--rounds N]
Prints a Markdown table with the machine and date, for the README.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import catboost

from model import BUNDLED_MODEL
from model.engine import ScoringEngine
from model.records import parse_record
from model.routing import ModelSlot, Routing
from model.scorer import Scorer
from training.reference import pick_regno
from training.simulate import simulate_records


def machine() -> str:
    """CPU model, usable cores and Python/CatBoost versions, for the report."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, CatBoost {catboost.__version__}"


def per_call_ms(function: Callable[[dict], object], records: list[dict], calls: int) -> float:
    """Mean milliseconds per call of function over `calls` records, cycling through them."""
    started = time.perf_counter()
    for index in range(calls):
        function(records[index % len(records)])
    return (time.perf_counter() - started) * 1000 / calls


def load_records(csv_path: str | None, count: int = 200) -> list[dict]:
    """Records from a CSV with the contract's columns, or simulated ones."""
    if csv_path:
        with open(csv_path, encoding="utf-8", newline="") as stream:
            return list(csv.DictReader(stream))
    return simulate_records(count, seed=2026)


def main(argv: list[str] | None = None) -> int:
    """Measure each approach in interleaved rounds and print the medians side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(BUNDLED_MODEL), help="the .cbm to score with")
    parser.add_argument("--records", help="CSV of records (default: simulated)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    args = parser.parse_args(argv)

    scorer = Scorer.load(args.model)
    records = load_records(args.records)
    parsed = [parse_record(record) for record in records]
    scorer.probe()
    vectors = [scorer.build_vector(record) for record in parsed]
    batch = vectors[:100]
    engine, routing = ScoringEngine(0.5), Routing(ModelSlot.of(scorer, 32))  # the engine as regno-score runs it

    approaches: dict[str, tuple[Callable[[dict], object], int]] = {
        "team's approach: load model + pandas Series per call": (lambda r: pick_regno(r, args.model), 100),
        "service: validate + features + predict": (lambda r: scorer.score(parse_record(r)), 3000),
        "service engine, no cache: validate + route + features + predict + pick":
            (lambda r: engine.score([parse_record(r)], routing), 3000),
        "service: validate + features only": (lambda r: scorer.build_vector(parse_record(r)), 3000),
        "CatBoost predict of a built vector": (lambda r: scorer.predict_vectors([vectors[0]]), 3000),
        "batch of 100 vectors, per record": (lambda r: scorer.predict_vectors(batch), 100),
    }
    results: dict[str, list[float]] = {name: [] for name in approaches}
    for _ in range(args.rounds):
        for name, (function, calls) in approaches.items():
            result = per_call_ms(function, records, calls)
            results[name].append(result / 100 if name.startswith("batch") else result)

    baseline = statistics.median(results[next(iter(results))])
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}.")
    print(f"Model: {scorer.version} ({Path(args.model).name}); records: {args.records or 'simulated'}; "
          f"median of {args.rounds} interleaved rounds.\n")
    print("| path | ms per record | vs team's approach |")
    print("|---|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.4f} | {baseline / median:,.0f}x faster |" if median != baseline
              else f"| {name} | {median:.4f} | 1x (baseline) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
