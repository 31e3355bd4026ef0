"""The report's numbers: DuckDB queries over the prediction log and its labels for one time window.

Passes are chosen by the time of their prediction rows; a pass's label joins on pass_id whenever it arrived
(a correction replaces the label it names in `corrects`; of labels nothing replaced, the latest wins). Volume
counts rows (a resent pass is traffic too); quality counts each pass once per model and arm, with its first
answer from that model. The candidate's shadow scores form a third arm, "shadow", whose pick is the AI's plate
when shadow_source names it, else the camera's.
Every quality figure is computed here from the predictions and the true plates, not from the label rows'
precomputed flags, so the report is exact against the log. A candidate replayed over the window (regno-replay's
rows in the `replays` view) is summarised by service/replay/verdict.py, the same numbers `regno-replay --json`
gives for that window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

import numpy as np

from model.engine import AI
from model.evaluation import accuracy, calibration, log_loss, roc_auc
from model.profile import CATEGORICAL, categorical_shift, drift, inputs_of
from model.lifecycle.promotion_gate import latest_replay
from model.records import FIELDS
from service.predictions.query import rows
from service.report.references import References
from service.report.verdict import Paired, verdict

#: The order arms are shown in.
ARMS = ("current", "canary", "shadow")
#: Cache outcomes that are hits.
CACHE_HITS = ("hit-l1", "hit-l2")
#: Categories listed per categorical input: the ones whose share moved most.
TOP_CATEGORIES = 3
CALIBRATION_BINS = 10


def anchor(*parts: str) -> str:
    """An HTML id made of parts ("v1", "current" -> "v1-current"), with anything unsafe as "_"."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]", "_", part) for part in parts)


def top_shifts(shares: dict[str, dict[str, float]], count: int = TOP_CATEGORIES) -> list[dict]:
    """The categories whose share moved most, as {value, reference, observed}, biggest move first."""
    moved = sorted(shares.items(), key=lambda item: -abs(item[1]["observed"] - item[1]["reference"]))
    return [{"value": value, **share} for value, share in moved[:count]]


@dataclass(frozen=True)
class Window:
    """The time window: predictions with start <= ts < end (both timezone-aware)."""

    start: datetime
    end: datetime

    def parameters(self) -> dict:
        """The query parameters of the window; the days let DuckDB skip the other day partitions."""
        return {"start": self.start, "end": self.end, "first_day": self.start.date(),
                "last_day": (self.end - timedelta(microseconds=1)).date()}


#: The rows of a Window (its parameters()): by time, and by day partition, so DuckDB reads only the window's days.
IN_WINDOW = "ts >= $start AND ts < $end AND day BETWEEN $first_day AND $last_day"
#: The same over `replays`, which is an empty table with a text day until a replay is written.
REPLAYS_IN_WINDOW = "ts >= $start AND ts < $end AND CAST(day AS DATE) BETWEEN $first_day AND $last_day"

#: The common table `truth`: each labelled pass's true plate, the latest of its labels no correction replaced.
#: Every query that judges a pick against the truth (this report's, service/replay's) joins this one.
TRUTH = """truth AS (
    SELECT pass_id, arg_max(true_regno, ts) AS true_regno FROM labels
    WHERE NOT EXISTS (SELECT 1 FROM labels AS later WHERE later.corrects = labels.label_id)
    GROUP BY pass_id
)"""

#: The window's prediction rows, their latest true plate per pass, and one answer per pass and (model, arm).
_BASE = f"""
WITH window_rows AS (
    SELECT * FROM predictions
    WHERE {IN_WINDOW}
), scored AS (
    SELECT * FROM window_rows WHERE error IS NULL AND model IS NOT NULL
), {TRUTH}, answers AS (
    SELECT model, arm, pass_id, arg_min(positive, ts) AS positive, arg_min(source, ts) AS source,
           arg_min(regno, ts) AS pick, arg_min(regno_recognize, ts) AS camera, arg_min(afts_regno_ai, ts) AS ai
    FROM scored GROUP BY model, arm, pass_id
    UNION ALL
    SELECT shadow_model, 'shadow', pass_id, arg_min(shadow_positive, ts), arg_min(shadow_source, ts),
           arg_min(CASE WHEN shadow_source = $ai THEN afts_regno_ai ELSE regno_recognize END, ts),
           arg_min(regno_recognize, ts), arg_min(afts_regno_ai, ts)
    FROM scored WHERE shadow_model IS NOT NULL GROUP BY shadow_model, pass_id
), judged AS (
    SELECT answers.*, truth.true_regno FROM answers LEFT JOIN truth USING (pass_id)
)
"""

_TOTALS = _BASE + """
SELECT (SELECT count(*) FROM window_rows) AS rows,
       (SELECT count(*) FROM window_rows WHERE error IS NOT NULL) AS failed,
       (SELECT count(DISTINCT pass_id) FROM scored) AS passes,
       (SELECT count(DISTINCT pass_id) FROM scored JOIN truth USING (pass_id)) AS labelled,
       (SELECT min(ts) FROM window_rows) AS first_ts, (SELECT max(ts) FROM window_rows) AS last_ts
"""

_VOLUME = _BASE + """
SELECT model, arm, count(*) AS rows, count(DISTINCT pass_id) AS passes,
       avg(CASE WHEN source = $ai THEN 1 ELSE 0 END) AS ai_pick_share,
       avg(CASE WHEN cache IN ('hit-l1', 'hit-l2') THEN 1 ELSE 0 END) AS cache_share
FROM scored GROUP BY model, arm
UNION ALL
SELECT shadow_model, 'shadow', count(*), count(DISTINCT pass_id),
       avg(CASE WHEN shadow_source = $ai THEN 1 ELSE 0 END), NULL
FROM scored WHERE shadow_model IS NOT NULL GROUP BY shadow_model
"""

_QUALITY = _BASE + """
SELECT model, arm,
       list(positive ORDER BY pass_id) AS positives,
       list(positive ORDER BY pass_id) FILTER (WHERE true_regno IS NOT NULL) AS labelled_positives,
       list(ai = true_regno ORDER BY pass_id) FILTER (WHERE true_regno IS NOT NULL) AS labels,
       count(true_regno) AS labelled,
       count(*) FILTER (WHERE pick = true_regno) AS pick_right,
       count(*) FILTER (WHERE camera = true_regno) AS camera_right,
       count(*) FILTER (WHERE ai = true_regno) AS ai_right
FROM judged GROUP BY model, arm
"""

#: Per current model and candidate: the passes both scored (shadow), agreement, and the paired accuracy.
_PAIRED = _BASE + """
, shadowed AS (
    SELECT model AS current_model, shadow_model AS candidate, pass_id,
           arg_min(source, ts) AS current_source, arg_min(shadow_source, ts) AS candidate_source,
           arg_min(regno, ts) AS current_pick,
           arg_min(CASE WHEN shadow_source = $ai THEN afts_regno_ai ELSE regno_recognize END, ts) AS candidate_pick
    FROM scored WHERE shadow_model IS NOT NULL GROUP BY model, shadow_model, pass_id
)
SELECT current_model, candidate, count(*) AS passes,
       avg(CASE WHEN current_source = candidate_source THEN 1 ELSE 0 END) AS agreement,
       count(true_regno) AS labelled,
       count(*) FILTER (WHERE current_pick = true_regno) AS current_right,
       count(*) FILTER (WHERE candidate_pick = true_regno) AS candidate_right,
       count(*) FILTER (WHERE current_pick = true_regno AND candidate_pick <> true_regno) AS only_current,
       count(*) FILTER (WHERE candidate_pick = true_regno AND current_pick <> true_regno) AS only_candidate
FROM shadowed LEFT JOIN truth USING (pass_id)
GROUP BY current_model, candidate ORDER BY current_model, candidate
"""

#: The candidate versions replayed over passes of the window.
_REPLAYED_VERSIONS = f"""
SELECT DISTINCT model FROM replays WHERE {REPLAYS_IN_WINDOW} ORDER BY model
"""

#: The raw record fields of the passes a version scored (answered or shadow-scored), once per pass.
_INPUTS = _BASE + f"""
SELECT {", ".join(f"arg_min({name}, ts) AS {name}" for name in FIELDS)}
FROM scored WHERE model = $version OR shadow_model = $version GROUP BY pass_id
"""


@dataclass
class Quality:
    """How one model and arm did on its labelled passes."""

    labelled: int
    pick_right: int
    camera_right: int
    ai_right: int
    #: Share of passes where the model's call at the threshold (take the AI's plate or not) matched the label.
    model_accuracy: float
    #: None when every labelled pass has the same label: AUC is undefined then.
    auc: float | None
    log_loss: float
    calibration: list[dict]
    labels: np.ndarray
    positives: np.ndarray

    @property
    def pick_accuracy(self) -> float:
        """Share of labelled passes whose picked plate is the true plate."""
        return self.pick_right / self.labelled

    @property
    def camera_accuracy(self) -> float:
        """The always-camera baseline."""
        return self.camera_right / self.labelled

    @property
    def ai_accuracy(self) -> float:
        """The always-AI baseline."""
        return self.ai_right / self.labelled


@dataclass
class Arm:
    """One model version in one arm (current, canary or shadow): its traffic and, with labels, its quality."""

    model: str
    arm: str
    rows: int
    passes: int
    ai_pick_share: float
    #: None for the shadow arm: shadow scores never go through the cache.
    cache_share: float | None
    #: Its positive score of each pass.
    positives: np.ndarray
    quality: Quality | None

    @property
    def id(self) -> str:
        """Its HTML id."""
        return anchor(self.model, self.arm)


@dataclass
class Candidate:
    """A model seen as canary or shadow, against the current model on the passes both scored."""

    version: str
    current: str | None
    #: Distinct passes the candidate shadow-scored beside the current model, and the share picked the same source.
    shadow_passes: int
    agreement: float | None
    paired: Paired | None
    verdict: str


@dataclass
class ModelDrift:
    """The live inputs of one model version against its training reference, or why there is no comparison."""

    version: str
    path: str | None
    problem: str | None
    passes: int = 0
    features: list[dict] = field(default_factory=list)


@dataclass
class Replay:
    """A candidate replayed over passes of the window: what those passes show, and the replay's threshold search."""

    version: str
    #: service/replay/verdict.py's summarize() over the page's window.
    summary: dict
    #: The threshold search of the version's summary.json: over the replay's own window, which may differ.
    threshold_search: dict | None = None
    #: That window ({"from", "to"}), and why the summary could not be read when it could not.
    replay_window: dict | None = None
    problem: str | None = None

    @property
    def id(self) -> str:
        """Its HTML id."""
        return anchor(self.version)


@dataclass
class Report:
    """Everything the page shows."""

    window: Window
    threshold: float
    totals: dict
    arms: list[Arm]
    candidates: list[Candidate]
    drift: list[ModelDrift]
    replays: list[Replay] = field(default_factory=list)

    @property
    def verdicts(self) -> list[str]:
        """The candidates' verdicts, then the replays', for the first page."""
        return ([candidate.verdict for candidate in self.candidates]
                + [f"{replay.version}, replayed: {replay.summary['verdict_words']}." for replay in self.replays])


class EmptyWindow(LookupError):
    """The window holds no prediction row."""


def _quality(row: dict, threshold: float) -> Quality | None:
    """The quality figures of one (model, arm) row of _QUALITY; None without a labelled pass."""
    if not row["labelled"]:
        return None
    labels = np.asarray(row["labels"], dtype=int)
    scores = np.asarray(row["labelled_positives"], dtype=float)
    try:
        auc = roc_auc(labels.tolist(), scores.tolist())
    except ValueError:  # one class only: no pair of a right and a wrong AI plate to rank
        auc = None
    return Quality(row["labelled"], row["pick_right"], row["camera_right"], row["ai_right"],
                   accuracy(labels.tolist(), scores.tolist(), threshold), auc, log_loss(labels, scores),
                   calibration(labels, scores, bins=CALIBRATION_BINS), labels, scores)


def _arms(connection, parameters: dict, threshold: float) -> list[Arm]:
    """Every (model, arm) of the window, current first, then canary, then shadow."""
    quality = {(row["model"], row["arm"]): row for row in rows(connection, _QUALITY, parameters)}
    found = []
    for row in rows(connection, _VOLUME, parameters):
        judged = quality[(row["model"], row["arm"])]
        found.append(Arm(row["model"], row["arm"], row["rows"], row["passes"], row["ai_pick_share"],
                         row["cache_share"], np.asarray(judged["positives"], dtype=float),
                         _quality(judged, threshold)))
    return sorted(found, key=lambda arm: (ARMS.index(arm.arm), arm.model))


def _candidates(connection, parameters: dict, arms: Sequence[Arm]) -> list[Candidate]:
    """Each candidate (canary or shadow) with its verdict against the current model it was shadow-scored beside."""
    found = []
    shadowed = set()
    for row in rows(connection, _PAIRED, parameters):
        paired = Paired(row["current_model"], row["candidate"], row["labelled"], row["current_right"],
                        row["candidate_right"], row["only_current"], row["only_candidate"])
        shadowed.add(row["candidate"])
        found.append(Candidate(row["candidate"], row["current_model"], row["passes"], row["agreement"], paired,
                               verdict(paired)))
    currents = sorted({arm.model for arm in arms if arm.arm == "current"})
    for arm in arms:
        if arm.arm == "canary" and arm.model not in shadowed:
            found.append(Candidate(arm.model, ", ".join(currents) or None, 0, None, None,
                                   f"{arm.model} answered {arm.passes} passes as canary but scored none beside the "
                                   "current model (no shadow scoring), so no paired verdict: its canary arm and "
                                   "the current arm answered different passes."))
            shadowed.add(arm.model)
    return found


def _drift(connection, parameters: dict, version: str, references: References) -> ModelDrift:
    """The drift table of one version: PSI per input, and the categories that moved most."""
    reference = references.get(version)
    path = str(reference.path) if reference.path else None
    if reference.profile is None:
        return ModelDrift(version, path, reference.problem)
    cursor = connection.execute(_INPUTS, {**parameters, "version": version})
    names = [column[0] for column in cursor.description]
    columns = dict(zip(names, map(list, zip(*cursor.fetchall())))) or {name: [] for name in names}
    inputs = inputs_of(columns)
    features = []
    for row in drift(reference.profile, inputs):
        reference_feature = reference.profile["features"][row["feature"]]
        top = []
        if row["feature"] in CATEGORICAL and inputs.get(row["feature"]):
            top = top_shifts(categorical_shift(reference_feature, inputs[row["feature"]])["shares"])
        features.append({**row, "top": top})
    return ModelDrift(version, path, None, len(columns.get(FIELDS[0], [])), features)


def _saved(root: Path | None, version: str) -> tuple[dict, str | None]:
    """The version's summary.json under the log's root ({} when there is none), and why it is unreadable."""
    if root is None:
        return {}, None
    try:
        return latest_replay(root, version) or {}, None
    except ValueError as error:
        return {}, str(error)


def _replays(connection, window: Window, root: Path | None) -> list[Replay]:
    """Each candidate replayed over passes of the window, summarised over the window."""
    from service.replay.verdict import summarize  # not at the top: service.replay builds on this module's TRUTH

    present = rows(connection, "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'replays'")
    if not present[0]["n"]:  # a connection made without the replays view
        return []
    found = []
    for row in rows(connection, _REPLAYED_VERSIONS, window.parameters()):
        saved, problem = _saved(root, row["model"])
        found.append(Replay(row["model"], summarize(connection, row["model"], window),
                            saved.get("threshold_search"), saved.get("window"), problem))
    return found


def build(connection, window: Window, threshold: float, references: References, root: Path | None = None) -> Report:
    """The report of the window, from a connection of service.predictions.query.connect; EmptyWindow if no row.

    root is the log's Parquet folder, where each replay's summary.json is (for its threshold search).
    """
    parameters = {**window.parameters(), "ai": AI}
    totals = rows(connection, _TOTALS, parameters)[0]
    if not totals["rows"]:
        raise EmptyWindow(f"no prediction row between {window.start.isoformat()} and {window.end.isoformat()}")
    arms = _arms(connection, parameters, threshold)
    versions = list(dict.fromkeys(arm.model for arm in arms))
    drifts = [_drift(connection, parameters, version, references) for version in versions]
    return Report(window, threshold, totals, arms, _candidates(connection, parameters, arms), drifts,
                  _replays(connection, window, root))
