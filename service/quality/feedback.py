"""Taking labels: each is checked, matched to its pass, claimed once, stored in the log and counted.

Flask-free: service/api/feedback.py reads the body and writes the envelope around take()'s results.
A label is answered "accepted" only once its row is in the worker's journal (as durable as a prediction
row); when it cannot be, its claim is undone and the sender is told to retry.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Protocol

from model.records import RecordError
from service.predictions.spool import PredictionLog
from service.quality.labels import Judged, Label, judge, parse_label, stored_row
from service.quality.passes import INDEX_ERRORS, PassIndex

log = logging.getLogger("regno")

#: Why a label was refused, as results and the regno_labels_total metric name it.
MALFORMED, UNKNOWN, AMBIGUOUS = "malformed", "unknown_pass", "ambiguous"
DUPLICATE, NOT_STORED = "duplicate", "not_stored"
ACCEPTED = "accepted"
RESULTS = (ACCEPTED, MALFORMED, UNKNOWN, AMBIGUOUS, DUPLICATE, NOT_STORED)


class QualityObserver(Protocol):
    """What hears of labels (service/observe/metrics.py's ServiceMetrics)."""

    def labels_taken(self, results: Counter) -> None:
        """Labels by result (RESULTS)."""

    def judged(self, verdicts: list[Judged]) -> None:
        """One accepted label's verdicts, one per model that scored its pass."""


def _refused(index: int, error: str, message: str, pass_id: str | None = None) -> dict:
    result = {"index": index, "status": "rejected", "error": error, "message": message}
    if pass_id is not None:
        result["pass_id"] = pass_id
    return result


def _take(raws: list[Any], index: PassIndex, prediction_log: PredictionLog, threshold: float,
          observer: QualityObserver | None, results: list) -> None:
    """Fill results in: each label checked, matched, claimed, stored and counted (raises what the index raises)."""
    wanted: dict[int, tuple[Label, str]] = {}
    for position, raw in enumerate(raws):
        try:
            label = parse_label(raw)
        except RecordError as error:
            results[position] = _refused(position, MALFORMED, str(error))
            continue
        pass_id = label.pass_id or _pass_of_request(index, label.request_id, position, results)
        if pass_id is not None:
            wanted[position] = (label, pass_id)
    found = index.find(sorted({pass_id for _, pass_id in wanted.values()}))
    seen: set[str] = set()
    for position, (label, pass_id) in wanted.items():
        facts = found.get(pass_id)
        if facts is None:
            results[position] = _refused(position, UNKNOWN, "no pass with this id in the log's index (never answered, "
                                         "sampled out, or older than LABEL_WINDOW_DAYS)", pass_id)
        elif pass_id in seen or not index.claim(pass_id):
            results[position] = _refused(position, DUPLICATE, "this pass is already labelled", pass_id)
        else:
            seen.add(pass_id)
            verdicts = judge(facts, label.true_regno, threshold)
            if not prediction_log.log_label(stored_row(label, facts, verdicts)):
                index.release(pass_id)
                results[position] = _refused(position, NOT_STORED, "the log's queue is full: send it again", pass_id)
                continue
            answered = verdicts[0]
            results[position] = {"index": position, "status": ACCEPTED, "pass_id": pass_id, "model": facts.model,
                                 "arm": facts.arm, "label": answered.ai_correct, "pick_correct": answered.pick_correct}
            if observer is not None:
                observer.judged(verdicts)


def take(raws: list[Any], index: PassIndex, prediction_log: PredictionLog, threshold: float,
         observer: QualityObserver | None = None) -> list[dict]:
    """One result per label, in order: accepted with its verdict, or rejected with the reason.

    When the index fails midway, the labels not yet taken are answered not_stored (send them again);
    those taken before stay taken.
    """
    results: list[dict | None] = [None] * len(raws)
    try:
        _take(raws, index, prediction_log, threshold, observer, results)
    except INDEX_ERRORS as error:
        log.warning("pass index unavailable: %s: %s", type(error).__name__, error)
        for position, result in enumerate(results):
            if result is None:
                results[position] = _refused(position, NOT_STORED, "the pass index is unavailable: send it again")
    if observer is not None:
        observer.labels_taken(Counter(result["error"] if result["status"] != ACCEPTED else ACCEPTED
                                      for result in results))
    return results


def _pass_of_request(index: PassIndex, request_id: str, position: int, results: list) -> str | None:
    """The one pass a request answered; None (and the result says why) when it answered none or several."""
    passes = index.passes_of_request(request_id)
    if len(passes) == 1:
        return passes[0]
    if passes:
        results[position] = _refused(position, AMBIGUOUS, "this request answered several passes (a batch): "
                                     "label them by pass_id")
    else:
        results[position] = _refused(position, UNKNOWN, "no pass answered by this request id in the log's index")
    return None
