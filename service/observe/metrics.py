"""Prometheus metrics: /metrics from prometheus-flask-exporter, HTTP and service metrics, per app."""

from __future__ import annotations

import functools
import time
from collections import Counter as Tally
from typing import Callable

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from model.engine import ORIGINS, Scored
from model.scorer import Scorer
from model.lifecycle.verify import REASONS as REFUSAL_REASONS
from service.cache.redis_store import EVENTS
from service.internals import unproxied
from service.quality.feedback import RESULTS as LABEL_RESULTS

#: Request latency buckets, in seconds: resolve the sub-millisecond to 100 ms range the service lives in.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Buckets for in-process steps (features, inference), in seconds.
STEP_BUCKETS = (0.00002, 0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.05)
#: Buckets of the positive score: the distribution a data scientist watches for drift.
SCORE_BUCKETS = tuple(round(0.05 * step, 2) for step in range(1, 21))
#: Buckets of the score difference between the candidate and the current model.
DIFFERENCE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
#: Buckets of a batch's wait for room in the prediction log's journal, in seconds (PREDICTION_LOG_BATCH_WAIT_S at most).
LOG_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Redis breaker states as gauge values; -1 when no Redis is configured.
BREAKER_CODES = {"off": -1, "closed": 0, "half-open": 1, "open": 2}
#: Label values exported at 0 from the start, so queries and alerts see the series before the first event.
CACHE_RESULTS = tuple(origin.metric for origin in ORIGINS)
#: The outcomes of a prediction-log row, exported at 0 from the start.
LOG_OUTCOMES = ("logged", "sampled_out", "dropped_queue_full", "dropped_spool_full")
#: The `measure` label of regno_quality_retracted_total: one per quality counter, as a verdict holds them.
QUALITY_MEASURES = ("labelled", "pick_correct", "camera_correct", "ai_correct", "model_correct", "log_loss")



class ServiceMetrics:
    """The service's own metrics, registered on one registry (one per app, so tests can build many apps)."""

    def __init__(self, registry: CollectorRegistry):
        self.inference = Histogram("regno_inference_seconds", "CatBoost predict time per record",
                                   buckets=STEP_BUCKETS, registry=registry)
        self.features = Histogram("regno_features_seconds", "Feature-vector build time per record",
                                  buckets=STEP_BUCKETS, registry=registry)
        self.cache_lookups = Counter("regno_cache_lookups_total", "Scoring requests by cache outcome",
                                     ["result"], registry=registry)
        self.breaker_state = Gauge("regno_redis_breaker_state",
                                   "Redis circuit breaker: -1 off, 0 closed, 1 half-open, 2 open (worst worker)",
                                   multiprocess_mode="livemax", registry=registry)
        self.redis_events = Counter("regno_redis_events_total", "Redis errors, writes and dropped writes",
                                    ["event"], registry=registry)
        self.validation_failures = Counter("regno_validation_failures_total", "Rejected requests by field",
                                           ["field"], registry=registry)
        self.positive = Histogram("regno_positive_score", "Distribution of the positive probability of model calls",
                                  ["model"], buckets=SCORE_BUCKETS, registry=registry)
        self.picks = Counter("regno_picks_total", "Picked plate by source, of model calls", ["source", "model"],
                             registry=registry)
        self.model_info = Gauge("regno_model_info", "The loaded model (value 1)", ["version", "checksum"],
                                multiprocess_mode="livemax", registry=registry)
        self.model_refusals = Counter("regno_model_refusals_total", "Models the watcher refused to swap to",
                                      registry=registry)
        self.model_swaps = Counter("regno_model_swaps_total", "Model swaps done, per worker", registry=registry)
        # The model syncer's numbers, mirrored from its status file by every worker (livemax: all say the same).
        self.source_info = Gauge("regno_model_source_info", "The model source the syncer follows (value 1)",
                                 ["source", "kind"], multiprocess_mode="livemax", registry=registry)
        self.source_versions = Gauge("regno_model_source_version_info", "The version each pointer names at the "
                                     "model source (value 1)", ["pointer", "version"], multiprocess_mode="livemax",
                                     registry=registry)
        self.sync_last_success = Gauge("regno_model_sync_last_success_timestamp_seconds", "When the syncer last "
                                       "reached the model source", multiprocess_mode="livemax", registry=registry)
        self.sync_last_attempt = Gauge("regno_model_sync_last_attempt_timestamp_seconds", "When the syncer last "
                                       "tried the model source", multiprocess_mode="livemax", registry=registry)
        self.sync_failures = Gauge("regno_model_sync_failures_total", "Sync passes that failed, by reason (source: "
                                   "unreachable; local: MODELS_DIR), as the syncer counts them", ["reason"],
                                   multiprocess_mode="livemax", registry=registry)
        self.sync_refusals = Gauge("regno_model_sync_refusals_total", "Models the syncer refused, by the check "
                                   "they failed, as the syncer counts them", ["reason"], multiprocess_mode="livemax",
                                   registry=registry)
        self.shadow_comparisons = Counter("regno_shadow_comparisons_total",
                                          "Passes the candidate also scored, by whether it picked the same plate",
                                          ["current", "candidate", "agreement"], registry=registry)
        self.shadow_difference = Histogram("regno_shadow_score_difference",
                                           "|candidate positive - current positive| of shadow-scored passes",
                                           ["current", "candidate"], buckets=DIFFERENCE_BUCKETS, registry=registry)
        self.log_rows_total = Counter("regno_prediction_log_rows_total",
                                      "Prediction-log rows by outcome: logged (written to the spool), sampled_out, "
                                      "dropped_queue_full, dropped_spool_full", ["outcome"], registry=registry)
        self.log_shipped_rows = Counter("regno_prediction_log_shipped_rows_total",
                                        "Prediction-log rows the sink confirmed", registry=registry)
        self.log_ship_failures = Counter("regno_prediction_log_ship_failures_total",
                                         "Tries to ship a segment that failed (it stays in the spool)",
                                         registry=registry)
        self.log_waits = Histogram("regno_prediction_log_wait_seconds", "Waits of a batch's row or a label for room in "
                                   "its worker's journal (/reg/ never waits)", buckets=LOG_WAIT_BUCKETS,
                                   registry=registry)
        self.log_spool_bytes = Gauge("regno_prediction_log_spool_bytes", "Bytes of unshipped segments in the spool",
                                     multiprocess_mode="livemax", registry=registry)
        self.log_segments_waiting = Gauge("regno_prediction_log_segments_waiting", "Sealed segments waiting to ship",
                                          multiprocess_mode="livemax", registry=registry)
        self.log_oldest_unshipped = Gauge("regno_prediction_log_oldest_unshipped_seconds",
                                          "Age of the oldest row not yet shipped (0 when the spool is empty)",
                                          multiprocess_mode="livemax", registry=registry)
        self.labels_total = Counter("regno_labels_total", "Labels POST /reg/feedback took (accepted) or refused, "
                                    "by result", ["result"], registry=registry)
        quality = ["model", "arm"]
        self.quality_labelled = Counter("regno_quality_labelled_total", "Labelled passes, by the model that scored "
                                        "them and its arm (current, canary, shadow)", quality, registry=registry)
        self.quality_pick_correct = Counter("regno_quality_pick_correct_total", "Labelled passes whose picked plate "
                                            "is the true plate", quality, registry=registry)
        self.quality_camera_correct = Counter("regno_quality_camera_correct_total", "Labelled passes whose camera "
                                              "plate is the true plate (always picking the camera's)", quality,
                                              registry=registry)
        self.quality_ai_correct = Counter("regno_quality_ai_correct_total", "Labelled passes whose AI plate is the "
                                          "true plate (always picking the AI's; the label)", quality, registry=registry)
        self.quality_model_correct = Counter("regno_quality_model_correct_total", "Labelled passes where positive >= "
                                             "PICK_THRESHOLD agrees with the label", quality, registry=registry)
        self.quality_log_loss = Counter("regno_quality_log_loss", "Sum of the labelled passes' log-loss", quality,
                                        registry=registry)
        # Counters only go up: a correction counts the replaced label's verdict here, and every quality query
        # subtracts it (deploy/prometheus/alerts.yml's recording rules), so a pass's final label counts once.
        self.quality_retracted = Counter("regno_quality_retracted_total", "Verdicts that corrections took back, by "
                                         "the regno_quality_<measure>_total they were counted in: subtract them",
                                         [*quality, "measure"], registry=registry)
        self.quality_floor = Gauge("regno_quality_pick_accuracy_floor", "QUALITY_PICK_ACCURACY_FLOOR: the alert's "
                                   "floor for the last hour's pick accuracy", multiprocess_mode="livemax",
                                   registry=registry)
        self.quality_min_labels = Gauge("regno_quality_min_labels", "QUALITY_MIN_LABELS: labels an hour needs before "
                                        "the alert may fire", multiprocess_mode="livemax", registry=registry)
        self._judged: dict[tuple[str, str], tuple] = {}
        self._log_outcomes: dict[str, Counter] = {}
        self._lookups: dict[str, Counter] = {}
        self._scored: dict[tuple[str, str], tuple] = {}
        self.workers_alive = Gauge("regno_workers_alive", "Worker processes serving", multiprocess_mode="livesum",
                                   registry=registry)

    def worker_started(self, scorer: Scorer, breaker_state: str) -> None:
        """Set the per-process gauges; called in each worker after the fork (never in the master)."""
        self.workers_alive.set(1)
        self.model_refusals.inc(0)
        self.model_swaps.inc(0)
        self.model_info.labels(scorer.version, scorer.checksum).set(1)
        self.breaker_changed(breaker_state)
        for result in CACHE_RESULTS:
            self.cache_lookups.labels(result).inc(0)  # inc(0) writes this worker's own zero
        for event in EVENTS:
            self.redis_events.labels(event).inc(0)
        for outcome in LOG_OUTCOMES:
            self.log_rows_total.labels(outcome).inc(0)
        self.log_shipped_rows.inc(0)
        self.log_ship_failures.inc(0)
        for result in LABEL_RESULTS:  # exported at 0 from the start
            self.labels_total.labels(result).inc(0)

    def model_changed(self, old: Scorer, new: Scorer) -> None:
        """A swap: the old model's info goes to 0, the new one's to 1."""
        self.model_info.labels(old.version, old.checksum).set(0)
        self.model_info.labels(new.version, new.checksum).set(1)
        self.model_swaps.inc()

    def source_synced(self, status: dict, before: dict | None) -> None:
        """Mirror the syncer's status file; the labels of what it said before go to 0."""
        if before is not None:
            self.source_info.labels(before.get("source") or "", before.get("kind") or "").set(0)
            for pointer, version in (before.get("source_versions") or {}).items():
                self.source_versions.labels(pointer, version or "none").set(0)
        self.source_info.labels(status.get("source") or "", status.get("kind") or "").set(1)
        for pointer, version in (status.get("source_versions") or {}).items():
            self.source_versions.labels(pointer, version or "none").set(1)
        self.sync_last_success.set(status.get("last_success") or 0)
        self.sync_last_attempt.set(status.get("last_attempt") or 0)
        for reason, count in (status.get("failures") or {}).items():
            self.sync_failures.labels(reason).set(count)
        for reason in REFUSAL_REASONS:
            self.sync_refusals.labels(reason).set((status.get("refusals") or {}).get(reason, 0))

    def shadow_compared(self, current: str, candidate: str, agree: bool, difference: float) -> None:
        """Record one shadow comparison between the current and the candidate model."""
        self.shadow_comparisons.labels(current, candidate, "agree" if agree else "disagree").inc()
        self.shadow_difference.labels(current, candidate).observe(difference)

    def breaker_changed(self, state: str) -> None:
        """Record the breaker's new state."""
        self.breaker_state.set(BREAKER_CODES[state])

    def redis_event(self, event: str, count: int) -> None:
        """Count a Redis event."""
        self.redis_events.labels(event).inc(count)

    def looked_up(self, cache_result: str, count: int = 1) -> None:
        """Count scoring lookups by cache outcome (hit_l1, hit_l2, miss, error)."""
        lookups = self._lookups.get(cache_result)
        if lookups is None:  # resolving labels costs more than the update: once per value
            lookups = self._lookups[cache_result] = self.cache_lookups.labels(cache_result)
        lookups.inc(count)

    def scored(self, results: list[Scored], by_model: list[Scored], features_s: float, inference_s: float) -> None:
        """Record one engine call: lookups by origin; drift signals per model-scored record; step times once.

        Only model calls count towards the score distribution and the picks: a cache hit repeats a pass
        already counted, and resent passes should not weigh more in the drift signals. The step times are
        the call's time per record.
        """
        if len(results) == 1:  # a /reg/ request: no Counter for one
            self.looked_up(results[0].origin.metric)
        else:
            for origin, count in Tally(result.origin for result in results).items():
                self.looked_up(origin.metric, count)
        for result in by_model:
            self._drift(result.score.positive, result.source, result.slot.version)
        if by_model:
            self.features.observe(features_s)
            self.inference.observe(inference_s)

    def log_rows(self, outcome: str, count: int = 1) -> None:
        """Count prediction-log rows by outcome (LOG_OUTCOMES)."""
        rows = self._log_outcomes.get(outcome)
        if rows is None:
            rows = self._log_outcomes[outcome] = self.log_rows_total.labels(outcome)
        rows.inc(count)

    def log_shipped(self, rows: int) -> None:
        """rows of the prediction log reached the sink."""
        self.log_shipped_rows.inc(rows)

    def log_ship_failed(self) -> None:
        """Shipping a segment failed."""
        self.log_ship_failures.inc()

    def log_waited(self, seconds: float) -> None:
        """A batch's row or a label waited seconds for room in the journal."""
        self.log_waits.observe(seconds)

    def log_spool(self, spool_bytes: int, waiting: int, oldest_s: float) -> None:
        """The spool's state, as the shipper last saw it."""
        self.log_spool_bytes.set(spool_bytes)
        self.log_segments_waiting.set(waiting)
        self.log_oldest_unshipped.set(oldest_s)

    def quality_targets(self, floor: float, min_labels: int) -> None:
        """Export the alert's settings, so the rule reads them instead of repeating them."""
        self.quality_floor.set(floor)
        self.quality_min_labels.set(min_labels)

    def labels_taken(self, results: dict[str, int]) -> None:
        """Count labels by result (service/quality/feedback.py's RESULTS)."""
        for result, count in results.items():
            self.labels_total.labels(result).inc(count)

    def judged(self, verdicts: list) -> None:
        """Count one accepted label against each model that scored its pass (service/quality/labels.py)."""
        for verdict in verdicts:
            key = (verdict.model, verdict.arm)
            children = self._judged.get(key)
            if children is None:
                children = self._judged[key] = tuple(counter.labels(*key) for counter in (
                    self.quality_labelled, self.quality_pick_correct, self.quality_camera_correct,
                    self.quality_ai_correct, self.quality_model_correct, self.quality_log_loss))
                for measure in QUALITY_MEASURES:  # at 0 beside them, so the queries that subtract have a series
                    self.quality_retracted.labels(*key, measure).inc(0)
            labelled, pick, camera, ai, model, loss = children
            labelled.inc()
            pick.inc(verdict.pick_correct)
            camera.inc(verdict.camera_correct)
            ai.inc(verdict.ai_correct)
            model.inc(verdict.model_correct)
            loss.inc(verdict.log_loss)

    def retracted(self, verdicts: list) -> None:
        """Count the verdicts of a label a correction replaced, measure by measure, as judged counted them."""
        for verdict in verdicts:
            key = (verdict.model, verdict.arm)
            for measure, amount in zip(QUALITY_MEASURES, (1, verdict.pick_correct, verdict.camera_correct,
                                                          verdict.ai_correct, verdict.model_correct,
                                                          verdict.log_loss)):
                self.quality_retracted.labels(*key, measure).inc(amount)

    def rejected(self, failures: dict[str, int]) -> None:
        """Count rejected records by the field at fault."""
        for field_name, count in failures.items():
            self.validation_failures.labels(field_name).inc(count)

    def _drift(self, positive: float, source: str, model: str) -> None:
        """Observe one model-scored record's positive score and count its pick."""
        children = self._scored.get((source, model))
        if children is None:
            children = self._scored[(source, model)] = (self.positive.labels(model), self.picks.labels(source, model))
        positive_histogram, picks = children
        positive_histogram.observe(positive)
        picks.inc()


class HttpMetrics:
    """The request duration histogram and request counter, by endpoint, method and status.

    prometheus-flask-exporter's default hooks record these too, but they resolve label values through
    Flask's proxies on every request: py-spy put them at 7% of a worker's time under load. These hooks
    record the same metrics, under the same names, with label children resolved once per combination.
    """

    #: Methods counted as themselves; any other method a client invents is counted as "other".
    METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

    def __init__(self, registry: CollectorRegistry):
        self.duration = Histogram("regno_http_request_duration_seconds", "HTTP request duration in seconds",
                                  ["method", "endpoint", "status"], buckets=LATENCY_BUCKETS, registry=registry)
        self.total = Counter("regno_http_request_total", "HTTP requests", ["method", "status"], registry=registry)
        self._children: dict[tuple, tuple] = {}

    def finished(self, response: Response) -> Response:
        """after_request: observe the duration (from the start access_log notes) and count the request."""
        context = unproxied(g)  # one proxy lookup instead of one per read
        started = getattr(context, "started", None)
        if started is None or getattr(context, "metrics_skip", False):
            return response
        current = unproxied(request)
        method = current.method if current.method in self.METHODS else "other"
        key = (method, current.endpoint, response.status_code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.duration.labels(method, str(current.endpoint), str(response.status_code)),
                self.total.labels(method, str(response.status_code)),
            )
        duration, total = children
        duration.observe(time.perf_counter() - started)
        total.inc()
        return response


def init_metrics(app: Flask, guard: Callable[[], None], multiprocess: bool) -> ServiceMetrics:
    """Serve /metrics (all the workers' together when multiprocess), record HTTP metrics, create the service metrics.

    guard runs before each scrape and raises to refuse it (who may read /metrics: service/http/exposure.py).
    """
    registry = CollectorRegistry()
    exporter_class = GunicornInternalPrometheusMetrics if multiprocess else PrometheusMetrics
    exporter = exporter_class.for_app_factory(
        registry=registry,
        export_defaults=False,  # HttpMetrics records them, cheaper; see its docstring
        metrics_decorator=_unrecorded(_guarded(guard)),
    )
    exporter.init_app(app)
    app.after_request(HttpMetrics(registry).finished)
    return ServiceMetrics(registry)


def _unrecorded(decorator):
    """Wrap the /metrics view so scrapes are not counted as traffic, then apply decorator if any."""
    def decorate(view):
        @functools.wraps(view)
        def unrecorded(*args, **kwargs):
            g.metrics_skip = True
            return view(*args, **kwargs)

        return decorator(unrecorded) if decorator else unrecorded

    return decorate


def _guarded(guard):
    """A decorator that runs guard before the metrics view."""
    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            guard()
            return view(*args, **kwargs)

        return guarded

    return decorate
