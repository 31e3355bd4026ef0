"""service/replay/verdict.py on hand-built `replays`, `labels` and `predictions` tables: exact counts, the paired
interval and McNemar's p against hand computations, the verdict's thresholds, the threshold search, and the
report's Replays section."""

from __future__ import annotations

import html
import json
import math
import re
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from model.engine import AI, CAMERA
from model.lifecycle.promotion_gate import summary_path
from service.predictions.rows import LABELS, PREDICTIONS, REPLAYS
from service.replay.verdict import (MAX_CUTS, SHIFT_EDGES, newcombe_paired, paired_of, points, search_threshold,
                                    summarize, verdict_of, wilson)
from service.report.data import Window, build
from service.report.references import References
from service.report.render import render
from service.report.verdict import MIN_PASSES, mcnemar_p

DAY = datetime(2026, 12, 1, tzinfo=timezone.utc)
WINDOW = Window(DAY, DAY + timedelta(days=2))
TRUE, AI_PLATE, CAMERA_PLATE = "А111АА77", "А111АА71", "А111АА7"


def replay_row(pass_id: str, positive: float, answered_positive: float, *, ai_right: bool = True,
               camera_right: bool = False, seconds: float = 3600.0, model: str = "v2", threshold: float = 0.5,
               answered_model: str = "v1", camera_type: str = "fixed", camera_class: str = "astra") -> list:
    """One replay row as regno-replay writes it: both picks follow the scores at threshold (ts in seconds)."""
    ai = TRUE if ai_right else AI_PLATE
    camera = TRUE if camera_right else CAMERA_PLATE
    source = AI if positive >= threshold else CAMERA
    answered = AI if answered_positive >= threshold else CAMERA
    return [DAY.timestamp() + seconds, pass_id, camera_type, camera_class, camera, ai, model, threshold, positive,
            ai if source == AI else camera, source, answered_model, "current", answered_positive,
            ai if answered == AI else camera, answered, "replay-1"]


def label_row(pass_id: str, plate: str, seconds: float, label_id: str, corrects: str | None = None) -> list:
    """One label in LABELS' column order: when, which pass, its true plate, its id and the label it corrects."""
    values = dict.fromkeys(LABELS.columns)
    values.update(ts=DAY.timestamp() + seconds, pass_id=pass_id, true_regno=plate, label_id=label_id,
                  corrects=corrects)
    return [values[name] for name in LABELS.columns]


def with_day(table: pa.Table) -> pa.Table:
    """The table with its UTC day as `day`, as the hive partition gives it to the views."""
    days = [None if ts is None else ts.astimezone(timezone.utc).date() for ts in table.column("ts").to_pylist()]
    return table.append_column("day", pa.array(days, pa.date32()))


def connection(replays: list[list], labels: list[list], predictions: list[list] = ()):
    """A DuckDB connection with the three tables registered under the names of regno-log's views."""
    database = duckdb.connect()
    database.register("replays", with_day(REPLAYS.arrow_table(replays)))
    database.register("labels", with_day(LABELS.arrow_table(labels)))
    database.register("predictions", with_day(PREDICTIONS.arrow_table(list(predictions))))
    return database


def labelled_all(replays: list[list]) -> list[list]:
    """A first label of the true plate for each replayed pass."""
    return [label_row(row[1], TRUE, 7200.0, f"label-{row[1]}") for row in replays]


def test_summarize_counts_exactly():
    """Passes, flips, agreement by camera, the score shift and its histogram, per-model and paired counts, as counted
    here; rows outside the window and of another version are left out."""
    rng = np.random.default_rng(5)
    replays = []
    for i in range(60):
        replays.append(replay_row(f"p{i}", float(rng.random()), float(rng.random()), ai_right=bool(i % 3),
                                  camera_right=i % 4 == 0, seconds=3600.0 + 1800 * i,
                                  answered_model="v1" if i % 5 else "v2-canary", camera_type=("fixed", "mobile")[i % 2],
                                  camera_class=("astra", "krechet", "x")[i % 3]))
    outside = [replay_row("early", 0.9, 0.1, seconds=-10.0), replay_row("late", 0.9, 0.1, seconds=2 * 86400.0),
               replay_row("other", 0.9, 0.1, model="v3")]
    labels = [label_row(row[1], TRUE, 90000.0, f"l{row[1]}") for row in replays[:45]]
    summary = summarize(connection(replays + outside, labels), "v2", WINDOW)

    columns = dict(zip(REPLAYS.columns, zip(*replays)))
    assert summary["candidate"] == "v2" and summary["passes"] == 60 and summary["threshold"] == 0.5
    assert summary["window"] == {"from": DAY.isoformat(), "to": (DAY + timedelta(days=2)).isoformat()}
    pairs = list(zip(columns["answered_source"], columns["source"]))
    assert summary["flips"] == {"to_ai": pairs.count((CAMERA, AI)), "to_camera": pairs.count((AI, CAMERA))}
    same = [answered == source for answered, source in pairs]
    assert summary["agreement"]["overall"] == pytest.approx(sum(same) / 60)
    for key, column in (("by_camera_type", "camera_type"), ("by_camera_class", "camera_class")):
        expected = {}
        for value, agreed in zip(columns[column], same):
            expected.setdefault(value, []).append(agreed)
        assert {row["value"]: (row["passes"], round(row["agreement"], 9)) for row in summary["agreement"][key]} \
            == {value: (len(agreed), round(sum(agreed) / len(agreed), 9)) for value, agreed in expected.items()}
        assert [row["passes"] for row in summary["agreement"][key]] == sorted(map(len, expected.values()),
                                                                              reverse=True)

    shifts = np.asarray(columns["positive"]) - np.asarray(columns["answered_positive"])
    shift = summary["score_shift"]
    assert shift["mean"] == pytest.approx(shifts.mean())
    assert shift["quantiles"]["p50"] == pytest.approx(np.quantile(shifts, 0.5))
    assert shift["quantiles"]["p05"] == pytest.approx(np.quantile(shifts, 0.05))
    assert shift["histogram"]["edges"] == list(SHIFT_EDGES)
    assert shift["histogram"]["counts"] == np.histogram(shifts, bins=SHIFT_EDGES)[0].tolist()

    judged = list(zip(columns["regno"], columns["answered_regno"], columns["answered_model"]))[:45]
    candidate_right = sum(pick == TRUE for pick, _, _ in judged)
    answered_right = sum(answer == TRUE for _, answer, _ in judged)
    only_candidate = sum(pick == TRUE != answer for pick, answer, _ in judged)
    only_answered = sum(answer == TRUE != pick for pick, answer, _ in judged)
    paired = summary["paired"]
    assert (paired["labelled"], paired["candidate_right"], paired["answered_right"]) == (45, candidate_right,
                                                                                          answered_right)
    assert (paired["only_candidate"], paired["only_answered"]) == (only_candidate, only_answered)
    assert paired["difference"] == pytest.approx((candidate_right - answered_right) / 45)
    assert paired["p_value"] == mcnemar_p(only_answered, only_candidate)
    models = {(row["model"], row["role"]): (row["labelled"], row["right"]) for row in summary["models"]}
    assert models[("v2", "candidate")] == (45, candidate_right)
    for model in ("v1", "v2-canary"):
        mine = [answer for _, answer, answered_model in judged if answered_model == model]
        assert models[(model, "answered")] == (len(mine), mine.count(TRUE))
    assert summary["models"][0]["role"] == "candidate"
    json.dumps(summary)  # what regno-replay writes as summary.json


def test_corrections_decide_the_truth():
    """A correction replaces the label it names, even when older; of the labels left, the latest wins."""
    replays = [replay_row("p1", 0.9, 0.9), replay_row("p2", 0.9, 0.9), replay_row("p3", 0.9, 0.9),
               replay_row("p4", 0.9, 0.9)]
    labels = [
        label_row("p1", "WRONG", 100.0, "a"), label_row("p1", TRUE, 200.0, "b", corrects="a"),
        label_row("p2", "WRONG", 100.0, "c"), label_row("p2", TRUE, 200.0, "d"),
        label_row("p3", "WRONG", 300.0, "e"), label_row("p3", TRUE, 100.0, "f", corrects="e"),
        label_row("p4", TRUE, 100.0, "g"), label_row("p4", "WRONG", 200.0, "h", corrects="g"),
    ]
    paired = summarize(connection(replays, labels), "v2", WINDOW)["paired"]
    assert (paired["labelled"], paired["candidate_right"], paired["answered_right"]) == (4, 3, 3)


def test_mcnemar_and_the_interval_against_hand_computations():
    """McNemar's p is the two-sided binomial tail of the discordant passes; the interval is Newcombe's method 10."""
    assert mcnemar_p(3, 12) == pytest.approx(2 * (1 + 15 + 105 + 455) / 2 ** 15)
    assert mcnemar_p(20039, 20060) == pytest.approx(0.920442552962335, rel=1e-9)  # fast at a replay's counts

    # 2x2 of (candidate, answered): both right 59, only candidate 6, only answered 16, neither 80.
    a, b, c, d = 59, 6, 16, 80
    n = a + b + c + d
    z = 1.959963984540054

    def wilson_by_hand(x: int) -> tuple[float, float]:
        p = x / n
        root = z * math.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
        return ((p + z ** 2 / (2 * n) - root) / (1 + z ** 2 / n), (p + z ** 2 / (2 * n) + root) / (1 + z ** 2 / n))

    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = wilson_by_hand(a + b), wilson_by_hand(a + c)
    assert wilson(a + b, n) == pytest.approx((l1, u1))
    cross = a * d - b * c  # > n / 2: corrected by n / 2
    phi = (cross - n / 2) / math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    lower = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    upper = p1 - p2 + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    assert newcombe_paired(a, b, c, d) == pytest.approx((lower, upper))
    assert lower < (b - c) / n < upper < 0

    paired = paired_of(n, a + c, a + b, c, b)
    assert paired["ci95"] == pytest.approx([lower, upper]) and paired["difference"] == pytest.approx((b - c) / n)
    assert paired["p_value"] == mcnemar_p(16, 6)
    # Large and balanced: close to the Wald interval d ± z·sqrt(b + c - (b - c)²/n)/n.
    big = paired_of(100000, 85000, 84000, 3000, 2000)
    half = z * math.sqrt(5000 - 1000 ** 2 / 100000) / 100000
    assert big["ci95"] == pytest.approx([-0.01 - half, -0.01 + half], abs=2e-4)
    # Every pass right for both: the interval still has a width, within [-1, 1].
    lower, upper = paired_of(50, 50, 50, 0, 0)["ci95"]
    assert -1 <= lower < 0 < upper <= 1
    assert paired_of(0, 0, 0, 0, 0) == {"labelled": 0, "answered_right": 0, "candidate_right": 0, "only_answered": 0,
                                        "only_candidate": 0, "difference": None, "ci95": None, "p_value": 1.0}


def test_the_verdict_thresholds():
    """Worse or better only below p 0.05 on MIN_PASSES labelled passes or more; else no difference, or too few."""
    assert MIN_PASSES == 30
    assert verdict_of(paired_of(30, 30, 24, 6, 0)) == "worse"  # p = 2/64
    assert verdict_of(paired_of(30, 24, 30, 0, 6)) == "better"
    assert verdict_of(paired_of(30, 30, 25, 5, 0)) == "no detectable difference"  # p = 2/32
    assert verdict_of(paired_of(29, 29, 9, 20, 0)) == "not enough labels"
    assert verdict_of(paired_of(0, 0, 0, 0, 0)) == "not enough labels"


def test_points_keep_a_narrow_interval_readable():
    """Differences in points: one decimal, two below a tenth of a point, and 0.0 for none."""
    assert [points(share) for share in (0.019, -0.004, 0.0004, -0.0003, 0.00004, 0.0)] == \
        ["+1.9", "-0.4", "+0.04", "-0.03", "0.0", "0.0"]


def test_verdict_words_of_a_worse_candidate():
    """The summary's verdict and its words: counts, both accuracies, the difference, its interval, McNemar's p."""
    replays = [replay_row(f"p{i}", 0.9 if i < 20 else 0.1, 0.9, ai_right=True) for i in range(1200)]
    summary = summarize(connection(replays, labelled_all(replays)), "v2", WINDOW)
    assert summary["verdict"] == "worse"
    lower, upper = summary["paired"]["ci95"]
    assert summary["verdict_words"] == (
        f"worse, on 1,200 labelled passes: the candidate picked right 1.7% against 100.0% (difference -98.3 points, "
        f"95% interval {100 * lower:+.1f} to {100 * upper:+.1f}; McNemar p < 0.001)")
    few = summarize(connection(replays[:10], labelled_all(replays[:10])), "v2", WINDOW)
    assert few["verdict"] == "not enough labels" and "at least 30 labelled passes" in few["verdict_words"]
    none = summarize(connection(replays, []), "v2", WINDOW)
    assert none["verdict"] == "not enough labels" and "no labelled pass" in none["verdict_words"]


def test_an_empty_replay_summarises_to_zeros_and_searches_nothing():
    """No row of the version in the window: zero passes, no shares, an empty histogram, no threshold search."""
    database = connection([replay_row("p1", 0.9, 0.9, model="v3")], [])
    summary = summarize(database, "v2", WINDOW)
    assert summary["passes"] == 0 and summary["threshold"] is None and summary["agreement"] == {"overall": None, "by_camera_type": [],
                                                               "by_camera_class": []}
    assert summary["score_shift"]["mean"] is None and set(summary["score_shift"]["quantiles"].values()) == {None}
    assert sum(summary["score_shift"]["histogram"]["counts"]) == 0
    assert summary["models"] == [{"model": "v2", "role": "candidate", "labelled": 0, "right": 0, "accuracy": None}]
    assert search_threshold(database, "v2", WINDOW, 0.5) is None


def test_threshold_search_on_a_hand_case_and_ties():
    """The best cut's midpoint, its accuracy, the accuracy at the threshold in use; equal cuts go to the nearest."""
    replays = [replay_row("a", 0.1, 0.5, ai_right=False, camera_right=True),
               replay_row("b", 0.2, 0.5, ai_right=False, camera_right=True),
               replay_row("c", 0.3, 0.5, ai_right=True), replay_row("d", 0.4, 0.5, ai_right=True)]
    found = search_threshold(connection(replays, labelled_all(replays)), "v2", WINDOW, 0.5)
    assert found["model"] == "v2" and found["labelled"] == 4
    assert found["best"] == pytest.approx(0.25) and found["best_accuracy"] == 1.0
    assert found["current"] == 0.5 and found["current_accuracy"] == 0.5  # all four take the camera's plate
    assert found["interval95"][0] <= 0.25 <= found["interval95"][1]
    curve = {round(point["threshold"], 6): point["accuracy"] for point in found["curve"]}
    assert len(curve) == 101 and curve[0.25] == 1.0 and curve[0.0] == 0.5 and curve[0.3] == 1.0 and curve[0.31] == 0.75
    # Both plates right everywhere: every cut is as good; the one nearest the threshold in use is taken.
    even = [replay_row(name, score, 0.5, ai_right=True, camera_right=True)
            for name, score in (("e", 0.1), ("f", 0.2), ("g", 0.3))]
    tied = search_threshold(connection(even, labelled_all(even)), "v2", WINDOW, 0.22)
    assert tied["best"] == pytest.approx(0.25) and tied["best_accuracy"] == 1.0
    assert search_threshold(connection(even, labelled_all(even)), "v2", WINDOW, 0.9)["best"] == pytest.approx(0.65)


def test_threshold_search_finds_a_planted_optimum():
    """The AI's plate is right mostly above 0.62: the best threshold is near it and its interval holds it."""
    rng = np.random.default_rng(11)
    scores = rng.random(3000)
    ai_right = rng.random(3000) < np.where(scores >= 0.62, 0.85, 0.15)
    replays = [replay_row(f"p{i}", float(score), 0.5, ai_right=bool(right), camera_right=not right)
               for i, (score, right) in enumerate(zip(scores, ai_right))]
    database = connection(replays, labelled_all(replays))
    found = search_threshold(database, "v2", WINDOW, 0.5, seed=3)
    lower, upper = found["interval95"]
    assert lower <= 0.62 <= upper and upper - lower < 0.1 and abs(found["best"] - 0.62) < 0.03
    assert found["best_accuracy"] > found["current_accuracy"]
    assert found == search_threshold(database, "v2", WINDOW, 0.5, seed=3)  # seeded: the same again


def test_threshold_search_on_a_million_passes_finds_the_planted_cut():
    """A million labelled passes, each of its own score: the bootstrap compares a subset of the cuts, and the best
    one is still the planted 0.7 within the interval (its speed is loadtest/bench/replay.py's)."""
    n = 1_000_000
    rng = np.random.default_rng(2)
    scores = rng.random(n)
    ai_right = rng.random(n) < np.where(scores >= 0.7, 0.9, 0.2)
    pass_ids = pa.array(np.char.add("p", np.arange(n).astype(str)))
    moment = pa.array(np.full(n, int(DAY.timestamp() * 1000) + 3_600_000), pa.timestamp("ms", tz="UTC"))
    plates = pa.array(np.where(ai_right, TRUE, AI_PLATE))
    database = duckdb.connect()
    database.register("replays", pa.table({
        "ts": moment, "pass_id": pass_ids, "model": pa.array(np.full(n, "v2")), "positive": scores,
        "answered_positive": scores,
        "afts_regno_ai": plates, "regno_recognize": pa.array(np.where(ai_right, CAMERA_PLATE, TRUE)),
        "day": pa.array(np.full(n, DAY.date()), pa.date32())}))
    database.register("labels", pa.table({"ts": moment, "pass_id": pass_ids, "true_regno": pa.array(np.full(n, TRUE)),
                                          "label_id": pass_ids, "corrects": pa.nulls(n, pa.string())}))
    found = search_threshold(database, "v2", WINDOW, 0.5)
    assert found["labelled"] == n and abs(found["best"] - 0.7) < 0.002
    assert found["interval95"][0] <= found["best"] <= found["interval95"][1]
    assert MAX_CUTS < n  # the bootstrap compared a subset of the cuts


def _prediction(pass_id: str, seconds: float) -> list:
    """A prediction row of v1 answering a pass, in PREDICTIONS' column order."""
    values = dict.fromkeys(PREDICTIONS.columns)
    values.update(ts=DAY.timestamp() + seconds, request_id=f"r-{pass_id}", pass_id=pass_id, endpoint="/reg/",
                  regno_recognize=CAMERA_PLATE, afts_regno_ai=TRUE, recognition_accuracy=90.0,
                  afts_regno_ai_score=0.9, afts_regno_ai_char_scores=[0.9], afts_regno_ai_length_scores=[0.9],
                  camera_type="fixed", camera_class="astra", time_check="2026-12-01 01:00:00", direction=1,
                  model="v1", arm="current", positive=0.9, negative=0.1, regno=TRUE, source=AI, cache="miss",
                  latency_ms=1.0)
    return [values[name] for name in PREDICTIONS.columns]


def test_the_report_shows_each_replay_of_its_window(tmp_path):
    """The page's Replays section: summarize() over the page's window, in tables and a histogram, and the threshold
    curve of the version's summary.json; a page with none says so."""
    replays = [replay_row(f"p{i}", 0.9 if i < 40 else 0.1, 0.9, ai_right=True) for i in range(100)]
    labels = labelled_all(replays)
    predictions = [_prediction(f"p{i}", 3600.0) for i in range(100)]
    database = connection(replays, labels, predictions)
    search = search_threshold(database, "v2", WINDOW, 0.5)
    path = summary_path(tmp_path, "v2")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**summarize(database, "v2", WINDOW), "threshold_search": search}), encoding="utf-8")

    report = build(database, WINDOW, 0.5, References({}, None, None), root=tmp_path)
    assert [replay.version for replay in report.replays] == ["v2"]
    assert report.replays[0].summary == summarize(database, "v2", WINDOW)  # what regno-replay --json prints
    page = render(report, str(tmp_path))
    assert {'id="replays"', 'id="replay-v2"', 'id="figure-replay-shift-v2"', 'id="figure-replay-threshold-v2"'} \
        <= set(re.findall(r'id="[^"]+"', page))
    paired = re.search(r'<tr id="replay-v2-paired">(.*?)</tr>', page, re.S).group(1)
    cells = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
             for cell in re.findall(r"<td>(.*?)</td>", paired, re.S)]
    assert cells[:4] == ["100", "100", "40.0% 40 / 100", "100.0% 100 / 100"]
    assert cells[4:6] == ["0", "60"] and cells[6] == "-60.0 points" and cells[8] == "p < 0.001"
    assert "worse, on 100 labelled passes" in page and "v2, replayed: worse" in page
    assert 'id="replay-v2-candidate-v2"' in page and 'id="replay-v2-answered-v1"' in page

    without = build(connection([], [], predictions), WINDOW, 0.5, References({}, None, None), root=tmp_path)
    assert without.replays == [] and "no replay in this window" in render(without, str(tmp_path))
    database.unregister("replays")  # a connection made without the view: the same page, no replay
    assert build(database, WINDOW, 0.5, References({}, None, None)).replays == []
