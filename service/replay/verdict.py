"""What a replay shows: the candidate against the answers the log holds, on the same passes, in numbers and words.

Every pass of a replay was answered by some model (the current one, or a canary) and scored again by the
candidate, so the comparison is paired: on the labelled passes, only the passes where exactly one of the two
picked the true plate say which is better (McNemar's exact test, service/report/verdict.py). The interval of
the difference in accuracy is Newcombe's hybrid score interval for paired proportions (Newcombe 1998, method
10; Fagerland, Lydersen and Laake, "Statistical Analysis of Contingency Tables", chapter 8): two Wilson
intervals, squared and added with the correlation of the two accuracies. It stays within [-1, 1] and keeps
its coverage near 95% where the Wald interval (d ± 1.96·SE) is too narrow: few discordant passes, accuracies
near 100%.

The counting is done by DuckDB over the `replays` view; only the threshold search pulls the labelled passes'
scores, as numpy arrays, and finds the best cut with cumulative sums over them once sorted.
"""

from __future__ import annotations

import math

import numpy as np

from model.engine import AI, CAMERA
from service.predictions.query import rows
from service.report.data import REPLAYS_IN_WINDOW, TRUTH, Window
from service.report.verdict import MIN_PASSES, SIGNIFICANCE, mcnemar_p, p_words, percent

#: The two-sided 95% normal quantile of the intervals.
Z95 = 1.959963984540054
#: The score-shift quantiles reported, by name.
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
#: Edges of the score-shift histogram (candidate positive - answered positive), finer near 0, where a retrained
#: model's shifts mostly are; symmetric, with a bin of its own for "no shift" (within ±0.001).
_MAGNITUDES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SHIFT_EDGES = (*(-m for m in reversed(_MAGNITUDES)), *_MAGNITUDES)
#: Resamples of the threshold search's bootstrap, and the most cuts it compares in each (evenly spaced by rank
#: when there are more distinct scores: the interval then has a resolution of 1/MAX_CUTS of the passes).
BOOTSTRAP_RESAMPLES = 500
MAX_CUTS = 4096
#: Thresholds of the accuracy curve (0, 0.01, ..., 1), the best one added.
CURVE_POINTS = 101

#: The window's replay rows of one version, each with its pass's true plate (null when unlabelled) and the
#: candidate's score minus the answered one.
_REPLAYED = f"""
WITH {TRUTH}, replayed AS (
    SELECT replays.*, truth.true_regno, replays.positive - replays.answered_positive AS shift
    FROM replays LEFT JOIN truth USING (pass_id)
    WHERE model = $version AND {REPLAYS_IN_WINDOW}
)
"""

#: How many shifts lie below each inner edge of the histogram: its counts, once differenced.
_BELOW = ", ".join(f"count(*) FILTER (WHERE shift < {edge!r}) AS below_{i}"
                   for i, edge in enumerate(SHIFT_EDGES[1:-1], 1))

_TOTALS = _REPLAYED + f"""
SELECT count(*) AS passes, max(threshold) AS threshold,
       count(*) FILTER (WHERE answered_source = $camera AND source = $ai) AS to_ai,
       count(*) FILTER (WHERE answered_source = $ai AND source = $camera) AS to_camera,
       count(*) FILTER (WHERE source = answered_source) AS agreed,
       avg(shift) AS shift_mean,
       quantile_cont(shift, {list(QUANTILES.values())}) AS shift_quantiles,
       count(shift) AS shifted,
       {_BELOW},
       count(true_regno) AS labelled,
       count(*) FILTER (WHERE answered_regno = true_regno) AS answered_right,
       count(*) FILTER (WHERE regno = true_regno) AS candidate_right,
       count(*) FILTER (WHERE answered_regno = true_regno AND regno <> true_regno) AS only_answered,
       count(*) FILTER (WHERE regno = true_regno AND answered_regno <> true_regno) AS only_candidate
FROM replayed
"""

_AGREEMENT = _REPLAYED + """
SELECT grouping(camera_type) = 0 AS by_type,
       CASE WHEN grouping(camera_type) = 0 THEN camera_type ELSE camera_class END AS value, count(*) AS passes,
       avg(CASE WHEN source = answered_source THEN 1 ELSE 0 END) AS agreement
FROM replayed GROUP BY GROUPING SETS ((camera_type), (camera_class))
ORDER BY by_type DESC, passes DESC, value
"""

_ANSWERED = _REPLAYED + """
SELECT answered_model AS model, count(true_regno) AS labelled,
       count(*) FILTER (WHERE answered_regno = true_regno) AS right
FROM replayed GROUP BY answered_model ORDER BY answered_model
"""

#: The labelled passes' scores in order, and whether the AI's and the camera's plate was the true one.
_LABELLED = _REPLAYED + """
SELECT positive, coalesce(afts_regno_ai = true_regno, false) AS ai_right,
       coalesce(regno_recognize = true_regno, false) AS camera_right
FROM replayed WHERE true_regno IS NOT NULL AND positive IS NOT NULL
ORDER BY positive
"""


def _parameters(version: str, window: Window) -> dict:
    """The queries' parameters: the version, the window and its days."""
    return {**window.parameters(), "version": version}


def _share(part: int, whole: int) -> float | None:
    """part / whole, None when whole is 0."""
    return part / whole if whole else None


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired(both: int, only_first: int, only_second: int, neither: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval of first's accuracy minus second's on the same n passes (method 10).

    both, neither: passes both, or neither, got right; only_first, only_second: the discordant passes.
    """
    n = both + only_first + only_second + neither
    first, second = both + only_first, both + only_second
    p1, p2 = first / n, second / n
    l1, u1 = wilson(first, n, z)
    l2, u2 = wilson(second, n, z)
    margins = first * (n - first) * second * (n - second)
    # The correlation of the two accuracies; its numerator is corrected towards 0 for continuity, as Newcombe does.
    cross = both * neither - only_first * only_second
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    d = p1 - p2
    lower = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, lower), min(1.0, upper)


def paired_of(labelled: int, answered_right: int, candidate_right: int, only_answered: int,
              only_candidate: int) -> dict:
    """The summary's "paired" entry: the counts, the difference in accuracy, its 95% interval, McNemar's p."""
    paired = {"labelled": labelled, "answered_right": answered_right, "candidate_right": candidate_right,
              "only_answered": only_answered, "only_candidate": only_candidate, "difference": None, "ci95": None,
              "p_value": mcnemar_p(only_answered, only_candidate)}
    if labelled:
        both = candidate_right - only_candidate
        neither = labelled - both - only_answered - only_candidate
        paired["difference"] = (candidate_right - answered_right) / labelled
        paired["ci95"] = list(newcombe_paired(both, only_candidate, only_answered, neither))
    return paired


def verdict_of(paired: dict) -> str:
    """The verdict: "better" or "worse" when McNemar's p is below SIGNIFICANCE on MIN_PASSES labelled passes or
    more, else "no detectable difference"; "not enough labels" below MIN_PASSES."""
    if paired["labelled"] < MIN_PASSES:
        return "not enough labels"
    if paired["p_value"] < SIGNIFICANCE:
        return "better" if paired["only_candidate"] > paired["only_answered"] else "worse"
    return "no detectable difference"


def points(share: float) -> str:
    """A difference of shares in percentage points, signed: "+1.9", "-0.4", "0.0"; below a tenth of a point, two
    decimals ("-0.04"), so a narrow interval on many passes does not read as "0.0 to 0.0"."""
    value = 100 * share
    if round(value, 1):
        return f"{value:+.1f}"
    return f"{value:+.2f}" if round(value, 2) else "0.0"


def verdict_words(verdict: str, paired: dict) -> str:
    """The verdict in plain words, e.g. "worse, on 1,234 labelled passes: the candidate picked right 84.1% against
    86.0% (difference -1.9 points, 95% interval -2.6 to -1.2; McNemar p < 0.001)"."""
    n = paired["labelled"]
    if not n:
        return f"{verdict}: no labelled pass in the window yet (at least {MIN_PASSES} are needed to call a difference)"
    lower, upper = paired["ci95"]
    words = (f"{verdict}, on {n:,} labelled passes: the candidate picked right "
             f"{percent(paired['candidate_right'] / n)} against {percent(paired['answered_right'] / n)} "
             f"(difference {points(paired['difference'])} points, 95% interval {points(lower)} to {points(upper)}; "
             f"McNemar {p_words(paired['p_value'])})")
    if verdict == "not enough labels":
        words += f"; at least {MIN_PASSES} labelled passes are needed to call a difference"
    return words


def histogram(totals: dict) -> dict:
    """The score-shift histogram from the counts below each edge: {"edges", "counts"}, the last bin closed."""
    below = [totals[f"below_{i}"] for i in range(1, len(SHIFT_EDGES) - 1)]
    cumulative = [0, *below, totals["shifted"]]
    return {"edges": list(SHIFT_EDGES), "counts": [b - a for a, b in zip(cumulative, cumulative[1:])]}


def _agreement(connection, parameters: dict, totals: dict) -> dict:
    """Agreement (the candidate's source is the answered one) overall, by camera type and by camera class."""
    found = {"overall": _share(totals["agreed"], totals["passes"]), "by_camera_type": [], "by_camera_class": []}
    for row in rows(connection, _AGREEMENT, parameters):
        key = "by_camera_type" if row["by_type"] else "by_camera_class"
        found[key].append({"value": str(row["value"]), "passes": row["passes"], "agreement": row["agreement"]})
    return found


def summarize(connection, version: str, window: Window) -> dict:
    """What the window's replay rows of version show, as summary.json holds it (without replay_id, replayed_at,
    skipped and threshold_search, which the caller adds; the threshold is the one the rows were picked at, None
    without a row).

    connection has the views `replays` and `labels` (service.predictions.query.connect); the window picks replay
    rows by ts (a pass's first logged time). Labelled passes are those the truth rule of service/report/data.py
    gives a true plate (the latest label no correction replaced).
    """
    parameters = _parameters(version, window)
    totals = rows(connection, _TOTALS, {**parameters, "ai": AI, "camera": CAMERA})[0]
    quantiles = totals["shift_quantiles"] or [None] * len(QUANTILES)
    paired = paired_of(totals["labelled"], totals["answered_right"], totals["candidate_right"],
                       totals["only_answered"], totals["only_candidate"])
    models = [{"model": version, "role": "candidate", "labelled": paired["labelled"],
               "right": paired["candidate_right"], "accuracy": _share(paired["candidate_right"], paired["labelled"])}]
    models += [{"model": row["model"], "role": "answered", "labelled": row["labelled"], "right": row["right"],
                "accuracy": _share(row["right"], row["labelled"])} for row in rows(connection, _ANSWERED, parameters)]
    verdict = verdict_of(paired)
    return {
        "candidate": version,
        "threshold": totals["threshold"],
        "window": {"from": window.start.isoformat(), "to": window.end.isoformat()},
        "passes": totals["passes"],
        "flips": {"to_ai": totals["to_ai"], "to_camera": totals["to_camera"]},
        "agreement": _agreement(connection, parameters, totals),
        "score_shift": {"mean": totals["shift_mean"], "quantiles": dict(zip(QUANTILES, quantiles)),
                        "histogram": histogram(totals)},
        "models": models,
        "paired": paired,
        "verdict": verdict,
        "verdict_words": verdict_words(verdict, paired),
    }


def _nearest(values: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Per row of values, the index of its largest value; among ties, the one of the smallest distance."""
    best = values.max(axis=-1, keepdims=True)
    return np.argmin(np.where(values == best, distance, np.inf), axis=-1)


def _cuts(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every way a threshold splits the sorted scores: the count below it (k), and the threshold that does it.

    The threshold of k is the midpoint between the k-th score and the one below (0 and 1 at the ends); the AI's
    plate is taken at positive >= threshold, so all-camera (k = n) is possible only below a score of 1.
    """
    n = len(scores)
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    cuts = np.r_[starts, n] if scores[-1] < 1.0 else starts
    lower = np.where(cuts > 0, scores[np.maximum(cuts - 1, 0)], 0.0)
    upper = np.where(cuts < n, scores[np.minimum(cuts, n - 1)], 1.0)
    return cuts, (lower + upper) / 2


def _bootstrap(cuts: np.ndarray, thresholds: np.ndarray, gain: np.ndarray, best: int, current: float,
               rng: np.random.Generator) -> np.ndarray:
    """The best threshold in each of BOOTSTRAP_RESAMPLES Poisson resamples of the passes.

    gain[i] is +1 for a pass only the camera's plate got right, -1 for one only the AI's did, 0 otherwise: the
    right picks of cut k are a constant plus the sum of gain below k, so only those passes move the best cut.
    Resampling each pass Poisson(1) times gives each bin of passes between two cuts Poisson(its count) of each
    kind: the resample is drawn per bin, not per pass. Above MAX_CUTS cuts, MAX_CUTS are kept, evenly by rank
    (and the best one).
    """
    if len(cuts) > MAX_CUTS:
        kept = np.unique(np.r_[np.linspace(0, len(cuts) - 1, MAX_CUTS).round().astype(int), best])
        cuts, thresholds = cuts[kept], thresholds[kept]
    camera_only = np.r_[0, np.cumsum(gain > 0)][cuts]
    ai_only = np.r_[0, np.cumsum(gain < 0)][cuts]
    camera_bins, ai_bins = np.diff(camera_only), np.diff(ai_only)
    distance = np.abs(thresholds - current)
    found = []
    for size in np.diff(np.r_[0:BOOTSTRAP_RESAMPLES:100, BOOTSTRAP_RESAMPLES]):  # 100 at a time: bounded memory
        moved = rng.poisson(camera_bins, (size, len(camera_bins))) - rng.poisson(ai_bins, (size, len(ai_bins)))
        right = np.zeros((size, len(cuts)), dtype=np.int64)
        np.cumsum(moved, axis=1, out=right[:, 1:])
        found.append(thresholds[_nearest(right, distance)])
    return np.concatenate(found)


def search_threshold(connection, version: str, window: Window, current: float, seed: int = 0) -> dict | None:
    """The pick threshold that would have made the most right picks on the window's labelled replay passes of
    version (positive >= t takes the AI's plate, else the camera's), as summary.json's "threshold_search".

    The best is the midpoint between the scores around the best cut (of equally good cuts, the one nearest
    current); its interval95 is the 2.5% and 97.5% quantiles of the best threshold over a seeded Poisson
    bootstrap. Also the accuracy at current, and the accuracy curve at CURVE_POINTS thresholds and the best.
    None when no pass is labelled.
    """
    arrays = connection.execute(_LABELLED, _parameters(version, window)).fetchnumpy()
    scores = np.asarray(arrays["positive"], dtype=float)
    if not len(scores):
        return None
    ai = np.asarray(arrays["ai_right"], dtype=bool)
    camera = np.asarray(arrays["camera_right"], dtype=bool)
    n = len(scores)
    ai_above = int(ai.sum()) - np.r_[0, np.cumsum(ai)]  # AI right at or above the k-th score
    camera_below = np.r_[0, np.cumsum(camera)]  # camera right below it

    def accuracy(thresholds: np.ndarray) -> np.ndarray:
        """Share of right picks at each threshold."""
        k = np.searchsorted(scores, thresholds, side="left")
        return (camera_below[k] + ai_above[k]) / n

    cuts, thresholds = _cuts(scores)
    right = camera_below[cuts] + ai_above[cuts]
    best = int(_nearest(right, np.abs(thresholds - current)))
    resampled = _bootstrap(cuts, thresholds, camera.astype(np.int8) - ai.astype(np.int8), best, current,
                           np.random.default_rng(seed))
    grid = np.unique(np.r_[np.linspace(0.0, 1.0, CURVE_POINTS).round(6), thresholds[best]])
    return {
        "model": version,
        "labelled": n,
        "best": float(thresholds[best]),
        "best_accuracy": float(right[best] / n),
        "interval95": [float(value) for value in np.quantile(resampled, [0.025, 0.975])],
        "current": float(current),
        "current_accuracy": float(accuracy(np.array([current]))[0]),
        "curve": [{"threshold": float(t), "accuracy": float(a)} for t, a in zip(grid, accuracy(grid))],
    }
