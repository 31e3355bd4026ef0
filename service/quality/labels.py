"""Labels: what POST /reg/feedback takes, checked one by one, and what a label says about its pass.

A label names a pass (by `pass_id`, or by the `request_id` of a request that answered one pass) and its
true plate, with an optional source (`manual_review`, `dispute`, ...) and the time the truth was found,
which may not lie in the future nor before the pass (give or take LABEL_CLOCK_SKEW_S). `"correction": true`
replaces the label a pass has. The label of a pass is "the AI's plate is the true plate"; a label also tells
whether the pick, the camera's plate and, where shadow scoring ran, the candidate's pick were right.
"""

from __future__ import annotations

import math
import os
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple

import orjson

from model.engine import AI
from model.records import TIMESTAMP_PATTERN, RecordError, json_kind, parse_plate
from service.predictions.rows import label_row
from service.quality.passes import PassFacts

#: A pass id: the 8-byte pass digest in hex, as answers carry it.
_PASS_ID = re.compile(r"[0-9a-f]{16}")
#: What a request id may be (service/observe/access_log.py keeps only such ids).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: A label's source: a short lower-case word.
_SOURCE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
DEFAULT_SOURCE = "unspecified"
#: Keys a label may hold; anything else is refused, so a typo is not silently ignored.
KEYS = frozenset({"pass_id", "request_id", "true_regno", "source", "labelled_at", "correction"})
#: Probabilities are clipped this far from 0 and 1 in the log-loss, so one confident miss stays finite.
LOG_LOSS_EPSILON = 1e-15


class Label(NamedTuple):
    """One well-formed label, not yet matched to its pass."""

    pass_id: str | None
    request_id: str | None
    true_regno: str
    source: str
    #: When the truth was established (seconds since the epoch), or None.
    labelled_at: float | None
    #: It replaces the label the pass has (a second label without it is a duplicate).
    correction: bool = False


class Judged(NamedTuple):
    """What a label says about one model's answer to its pass, for the quality metrics."""

    model: str
    #: "current", "canary" or "shadow".
    arm: str
    positive: float
    #: The AI's plate is the true plate (the label itself).
    ai_correct: bool
    pick_correct: bool
    camera_correct: bool
    #: The model's call at the threshold (take the AI's plate or not) was right.
    model_correct: bool
    #: The pass's binary cross-entropy (log_loss).
    log_loss: float


def parse_label(raw: Any, skew_s: float = 300.0, now: float | None = None) -> Label:
    """Check one decoded label; raise RecordError naming the first bad key.

    labelled_at may lie at most skew_s seconds after now (the clocks of the sender and this host may differ).
    """
    if not isinstance(raw, dict):
        raise RecordError("label", f"must be a JSON object, got {json_kind(raw)}")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise RecordError(unknown[0], f"is not a label key (keys: {', '.join(sorted(KEYS))})")
    pass_id, request_id = raw.get("pass_id"), raw.get("request_id")
    if (pass_id is None) == (request_id is None):
        raise RecordError("pass_id", "name the pass by pass_id or by request_id (one of them)")
    if pass_id is not None and not (isinstance(pass_id, str) and _PASS_ID.fullmatch(pass_id)):
        raise RecordError("pass_id", "must be the 16 hex digits a scoring answer gives")
    if request_id is not None and not (isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id)):
        raise RecordError("request_id", "must be a request id as X-Request-ID carries it")
    if "true_regno" not in raw:
        raise RecordError("true_regno", "is missing")
    true_regno = parse_plate(raw["true_regno"], "true_regno")
    if "_" in true_regno:
        raise RecordError("true_regno", "must be the whole true plate: '_' marks a character nobody read")
    source = raw.get("source", DEFAULT_SOURCE)
    if not (isinstance(source, str) and _SOURCE.fullmatch(source)):
        raise RecordError("source", "must be a short lower-case word such as manual_review or dispute")
    correction = raw.get("correction", False)
    if not isinstance(correction, bool):
        raise RecordError("correction", f"must be true or false, got {json_kind(correction)}")
    labelled_at = _time(raw.get("labelled_at"))
    if labelled_at is not None and labelled_at > (time.time() if now is None else now) + skew_s:
        raise RecordError("labelled_at", f"is in the future (more than {skew_s:g} s ahead of this host's clock)")
    return Label(pass_id, request_id, true_regno, source, labelled_at, correction)


def check_after_pass(label: Label, pass_ts: float, skew_s: float) -> None:
    """Raise RecordError when the label says the truth was found before its pass was answered (past the skew)."""
    if label.labelled_at is not None and label.labelled_at < pass_ts - skew_s:
        raise RecordError("labelled_at", f"is before its pass was answered (more than {skew_s:g} s)")


def _time(value: Any) -> float | None:
    """labelled_at in seconds since the epoch: a timestamp as time_check takes it, UTC unless it says otherwise."""
    if value is None:
        return None
    if not (isinstance(value, str) and _TIMESTAMP.fullmatch(value)):
        raise RecordError("labelled_at", "must be a timestamp like '2026-12-03 10:15:00' (UTC unless it has an offset)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError("labelled_at", "is not a real date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def judge(facts: PassFacts, true_regno: str, threshold_of: Callable[[str], float]) -> list[Judged]:
    """The label's verdict on each model that scored the pass: the one that answered, and the shadow if any.

    threshold_of gives each model's pick threshold (ScoringEngine.thresholds), for its call's verdict.
    """
    ai_correct, camera_correct = facts.ai == true_regno, facts.camera == true_regno

    def verdict(model: str, arm: str, positive: float, picked: str) -> Judged:
        return Judged(model, arm, positive, ai_correct, picked == true_regno, camera_correct,
                      (positive >= threshold_of(model)) == ai_correct, log_loss(positive, ai_correct))

    verdicts = [verdict(facts.model, facts.arm, facts.positive, facts.regno)]
    if facts.shadow_model is not None:
        shadow_pick = facts.ai if facts.shadow_source == AI else facts.camera
        verdicts.append(verdict(facts.shadow_model, "shadow", facts.shadow_positive, shadow_pick))
    return verdicts


def log_loss(positive: float, label: bool) -> float:
    """One pass's binary cross-entropy: -log of the probability the model gave the true outcome."""
    probability = positive if label else 1.0 - positive
    return -math.log(min(max(probability, LOG_LOSS_EPSILON), 1.0))


def new_label_id() -> str:
    """A fresh id for one stored label, which a later correction names in its `corrects` column."""
    return os.urandom(8).hex()


def mark(label_id: str, verdicts: list[Judged]) -> str:
    """What the pass index keeps of a pass's label: its id and the verdicts it counted, for a correction to undo."""
    return orjson.dumps({"id": label_id, "verdicts": [list(verdict) for verdict in verdicts]}).decode()


def read_mark(text: str) -> tuple[str, list[Judged]] | None:
    """The label id and verdicts of a mark; None for a mark an older version left (it holds neither)."""
    try:
        found = orjson.loads(text)
        return found["id"], [Judged(*verdict) for verdict in found["verdicts"]]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None


def stored_row(label: Label, facts: PassFacts, verdicts: list[Judged], label_id: str, corrects: str | None,
               key_name: str | None) -> tuple:
    """The label's row for the log (rows.LABELS' columns): the truth, the pass's answer and verdicts, who sent it."""
    answered = verdicts[0]
    shadow = verdicts[1] if len(verdicts) > 1 else None
    return label_row((
        time.time(), facts.pass_id, facts.request_id, facts.ts, label.true_regno, label.source, label.labelled_at,
        answered.ai_correct, facts.model, facts.arm, facts.positive, facts.regno, facts.source,
        answered.pick_correct, answered.camera_correct, facts.shadow_model, facts.shadow_positive,
        facts.shadow_source, shadow.pick_correct if shadow else None,
        label_id, corrects, key_name, facts.key_name,
    ))
