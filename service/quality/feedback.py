"""Taking labels: each is checked, matched to its pass, claimed once, stored in the log and counted.

Flask-free: service/api/feedback.py reads the body and writes the envelope around take()'s results.
A label is answered "accepted" only once its row is in the worker's journal (as durable as a prediction
row); when it cannot be, even after the request's labels waited PREDICTION_LOG_BATCH_WAIT_S for room there,
its claim is undone and the sender is told to retry. A pass the index lacks may have been answered a moment
ago (the log's writers index a pass up to WRITE_INTERVAL_S after its answer): it is looked for again, up to
LABEL_PASS_WAIT_S for the whole request, before its label is called unknown.

A correction (`"correction": true`) replaces the label a pass has: the pass index swaps the pass's mark for
the new one in one step and hands back the old one, whose verdicts are counted as retracted (the metrics
subtract them) while the new ones are counted as usual, so the pass's final label counts once. Both label
rows stay in the log; the new one names the old one's label_id in `corrects`. Answers say whether a label
was taken, never what it said about the plates: a label key must not learn a pass's plates by trying some.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Callable, NamedTuple, Protocol

from model.records import RecordError
from service.predictions.spool import PredictionLog
from service.quality.labels import (Judged, Label, check_after_pass, judge, mark, new_label_id, parse_label,
                                    read_mark, stored_row)
from service.quality.passes import INDEX_ERRORS, PassFacts, PassIndex

log = logging.getLogger("regno")

#: Why a label was refused, as results and the regno_labels_total metric name it.
MALFORMED, UNKNOWN, AMBIGUOUS = "malformed", "unknown_pass", "ambiguous"
DUPLICATE, NOT_STORED, UNCORRECTABLE = "duplicate", "not_stored", "uncorrectable"
#: A label taken: a pass's first label, or a correction of the one it had.
ACCEPTED, CORRECTED = "accepted", "corrected"
RESULTS = (ACCEPTED, CORRECTED, MALFORMED, UNKNOWN, AMBIGUOUS, DUPLICATE, UNCORRECTABLE, NOT_STORED)
#: Seconds between two looks at the index for passes answered but not yet indexed.
INDEX_RETRY_S = 0.02


class QualityObserver(Protocol):
    """What hears of labels (service/observe/metrics.py's ServiceMetrics)."""

    def labels_taken(self, results: Counter) -> None:
        """Labels by result (RESULTS)."""

    def judged(self, verdicts: list[Judged]) -> None:
        """One accepted label's verdicts, one per model that scored its pass."""

    def retracted(self, verdicts: list[Judged]) -> None:
        """The verdicts of a label a correction replaced, as they were counted."""


def _refused(index: int, error: str, message: str, pass_id: str | None = None) -> dict:
    result = {"index": index, "status": "rejected", "error": error, "message": message}
    if pass_id is not None:
        result["pass_id"] = pass_id
    return result


class Taking(NamedTuple):
    """What every label of one request is taken with."""

    index: PassIndex
    prediction_log: PredictionLog
    #: The pick threshold of a model version (ScoringEngine.thresholds).
    threshold_of: Callable[[str], float]
    observer: QualityObserver | None
    #: The name of the label key that sent them (stored with each label; never the key).
    key_name: str | None
    #: LABEL_CLOCK_SKEW_S.
    skew_s: float
    #: Until when (time.monotonic) the request's labels may wait, all together, for room in the log's journal.
    deadline: float | None = None
    #: Until when (time.monotonic) they may wait, all together, for passes answered but not yet indexed.
    indexed_by: float = 0.0


def _take(raws: list[Any], taking: Taking, results: list) -> None:
    """Fill results in: each label checked, matched, claimed, stored and counted (raises what the index raises)."""
    wanted: dict[int, tuple[Label, str]] = {}
    now = time.time()
    for position, raw in enumerate(raws):
        try:
            label = parse_label(raw, taking.skew_s, now)
        except RecordError as error:
            results[position] = _refused(position, MALFORMED, str(error))
            continue
        pass_id = label.pass_id or _pass_of_request(taking, label.request_id, position, results)
        if pass_id is not None:
            wanted[position] = (label, pass_id)
    found = _find(taking, sorted({pass_id for _, pass_id in wanted.values()}))
    seen: set[str] = set()
    for position, (label, pass_id) in wanted.items():
        facts = found.get(pass_id)
        if facts is None:
            results[position] = _refused(position, UNKNOWN, "no pass with this id in the log's index (never answered, "
                                         "sampled out, or older than LABEL_WINDOW_DAYS)", pass_id)
            continue
        try:
            check_after_pass(label, facts.ts, taking.skew_s)
        except RecordError as error:
            results[position] = _refused(position, MALFORMED, str(error), pass_id)
            continue
        if pass_id in seen:
            results[position] = _refused(position, DUPLICATE, "this pass is labelled earlier in this request", pass_id)
            continue
        results[position] = _store(position, label, facts, taking)
        if results[position]["status"] == ACCEPTED:
            seen.add(pass_id)


def _store(position: int, label: Label, facts: PassFacts, taking: Taking) -> dict:
    """Claim (or, for a correction, take over) the pass's mark, store the label's row and count it: its result."""
    index, pass_id = taking.index, facts.pass_id
    verdicts = judge(facts, label.true_regno, taking.threshold_of)
    label_id = new_label_id()
    new_mark = mark(label_id, verdicts)
    previous, replaced = None, None
    if not label.correction:
        if not index.claim(pass_id, new_mark):
            return _refused(position, DUPLICATE, 'this pass is already labelled: to replace its label, send '
                                                 '"correction": true', pass_id)
    else:
        previous = index.replace(pass_id, new_mark)
        if previous is None:
            return _refused(position, UNCORRECTABLE, 'this pass has no label to correct: send it without '
                                                     '"correction"', pass_id)
        replaced = read_mark(previous)
        if replaced is None:
            index.release(pass_id, previous)
            return _refused(position, UNCORRECTABLE, "this pass was labelled by an older version, which kept nothing "
                                                     "to take back: its label cannot be corrected", pass_id)
    corrects = replaced[0] if replaced is not None else None
    if not taking.prediction_log.log_label(stored_row(label, facts, verdicts, label_id, corrects, taking.key_name),
                                           taking.deadline):
        index.release(pass_id, previous)
        return _refused(position, NOT_STORED, "the log's queue is full: send it again", pass_id)
    if taking.observer is not None:
        if replaced is not None:
            taking.observer.retracted(replaced[1])
        taking.observer.judged(verdicts)
    result = {"index": position, "status": ACCEPTED, "pass_id": pass_id, "model": facts.model, "arm": facts.arm,
              "label_id": label_id}
    if corrects is not None:
        result["corrects"] = corrects
    return result


def _counted_as(result: dict) -> str:
    """A result's value of the `result` label of regno_labels_total."""
    if result["status"] != ACCEPTED:
        return result["error"]
    return CORRECTED if "corrects" in result else ACCEPTED


def take(raws: list[Any], index: PassIndex, prediction_log: PredictionLog, threshold_of: Callable[[str], float],
         observer: QualityObserver | None = None, key_name: str | None = None, skew_s: float = 300.0,
         index_wait_s: float = 1.0) -> list[dict]:
    """One result per label, in order: accepted (a correction names the label it replaced), or rejected and why.

    When the index fails midway, the labels not yet taken are answered not_stored (send them again);
    those taken before stay taken.
    """
    results: list[dict | None] = [None] * len(raws)
    try:
        _take(raws, Taking(index, prediction_log, threshold_of, observer, key_name, skew_s,
                           prediction_log.wait_deadline(), time.monotonic() + index_wait_s), results)
    except INDEX_ERRORS as error:
        log.warning("pass index unavailable: %s: %s", type(error).__name__, error)
        for position, result in enumerate(results):
            if result is None:
                results[position] = _refused(position, NOT_STORED, "the pass index is unavailable: send it again")
    if observer is not None:
        observer.labels_taken(Counter(_counted_as(result) for result in results))
    return results


def _find(taking: Taking, pass_ids: list[str]) -> dict[str, PassFacts]:
    """The index's facts of the passes; those it lacks are asked for again until taking.indexed_by.

    The log's writers index a pass after they write its row, up to WRITE_INTERVAL_S after its answer (longer
    while they lag): a label sent right after its answer must not be called unknown for that.
    """
    found = taking.index.find(pass_ids)
    while len(found) < len(pass_ids) and time.monotonic() < taking.indexed_by:
        time.sleep(INDEX_RETRY_S)
        found.update(taking.index.find([pass_id for pass_id in pass_ids if pass_id not in found]))
    return found


def _pass_of_request(taking: Taking, request_id: str, position: int, results: list) -> str | None:
    """The one pass a request answered; None (and the result says why) when it answered none or several."""
    passes = taking.index.passes_of_request(request_id)
    while not passes and time.monotonic() < taking.indexed_by:  # answered a moment ago, not indexed yet (_find)
        time.sleep(INDEX_RETRY_S)
        passes = taking.index.passes_of_request(request_id)
    if len(passes) == 1:
        return passes[0]
    if passes:
        results[position] = _refused(position, AMBIGUOUS, "this request answered several passes (a batch): "
                                     "label them by pass_id")
    else:
        results[position] = _refused(position, UNKNOWN, "no pass answered by this request id in the log's index")
    return None
