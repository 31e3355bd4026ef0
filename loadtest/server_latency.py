"""The service's own view of a load run: latency quantiles of POST /reg/ from its Prometheus histogram.

Locust's latencies include Locust itself, which on a small machine shares the cores with the service.
The service's regno_http_request_duration_seconds histogram, read before and after the run, gives the
time from the request reaching Flask to the response leaving it, for the same requests.
"""

from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

HISTOGRAM = "regno_http_request_duration_seconds"
ENDPOINT = "scoring.score_one"


def scrape(base_url: str, api_key: str, timeout: float = 5.0) -> dict[float, float]:
    """Cumulative counts by upper bound (seconds) of the scoring endpoint's POSTs, all statuses summed."""
    request = urllib.request.Request(f"{base_url.rstrip('/')}/metrics", headers={"x-api-key": api_key})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode("utf-8")
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != HISTOGRAM:
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_bucket") and labels.get("endpoint") == ENDPOINT and labels.get("method") == "POST":
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def difference(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    """The counts added between two scrapes (a bucket missing before counts from zero).

    Empty when a count went down: the service restarted in between and the run's figures are lost.
    """
    added = {bound: count - before.get(bound, 0.0) for bound, count in after.items()}
    return {} if any(count < 0 for count in added.values()) else added


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile in seconds, interpolated inside its bucket as Prometheus' histogram_quantile does.

    None without observations; the highest finite bound when the quantile falls in the +Inf bucket.
    """
    bounds = sorted(buckets)
    total = buckets.get(math.inf, buckets[bounds[-1]] if bounds else 0.0)
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below) if count > below else bound
        lower, below = bound, count
    return lower


def summary(buckets: dict[float, float]) -> dict:
    """Requests and p50, p95, p99 in ms of a run's bucket counts."""
    total = buckets.get(math.inf, 0.0)
    figures = {"requests": int(total)}
    for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        value = quantile(q, buckets)
        figures[name] = None if value is None else round(value * 1000, 3)
    return figures
