"""A simulated week with labels, end to end: replay judges a truly better and a truly worse candidate apart, the gate
follows the verdict, and a replay measures exactly what a canary of the same model measured on the same passes.

The week goes through the real service (app, canary, prediction log, labels, shipper), with the prediction rows'
clock moved back so that its passes fall on seven days. The current model is trained on 4,000 simulated passes;
the better candidate is the bundled model, trained on 40,000; the worse one is trained on the same 4,000 with the
labels of half of them shuffled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config import named_keys
from loadtest.report_screenshot import flush_log, post_closed
from loadtest.servers import ROOT
from model import BUNDLED_MODEL
from model.registry import CANDIDATE, CURRENT, publish, read_pointer, write_pointer
from service import create_app
from service.predictions import rows as log_rows
from service.predictions.query import connect, rows
from service.report.data import Window, build
from service.report.references import References
from training.simulate import simulate

PASSES = 4000
SEED = 20261207
#: Every RESEND_EVERY-th pass is sent twice, every FAILED_EVERY-th pass is preceded by a record that fails validation.
RESEND_EVERY, FAILED_EVERY = 10, 100
#: Passes whose true plate is sent back: every pass but those whose position ends in LEFT_UNLABELLED.
LEFT_UNLABELLED = (3, 7)
DAYS = 7
CURRENT_VERSION, BETTER, WORSE = "small-1", "better-1", "worse-1"


def _train(folder: Path, version: str, *options: str) -> subprocess.Popen:
    """Start training a model on 4,000 simulated passes (the project's script), in the background."""
    return subprocess.Popen([sys.executable, "-m", "training.train", "--rows", "4000", "--version", version,
                             "--out", str(folder / f"{version}.cbm"), *options], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class _Clock:
    """The prediction rows' clock: `time` as service/predictions/rows.py uses it, at a moment the test sets."""

    def __init__(self, now: float):
        self.now = now
        self.strftime, self.gmtime = time.strftime, time.gmtime

    def time(self) -> float:
        """The moment set."""
        return self.now


@pytest.fixture(scope="module")
def week(settings, tmp_path_factory):
    """Seven days of simulated traffic through the service: small-1 answers, better-1 is a 50% canary."""
    folder = tmp_path_factory.mktemp("replay-week")
    training = [_train(folder, CURRENT_VERSION), _train(folder, WORSE, "--shuffle-labels", "0.5")]
    for process in training:
        _, error = process.communicate(timeout=600)
        assert process.returncode == 0, error.decode()
    source = folder / "source"
    publish(folder / f"{CURRENT_VERSION}.cbm", source, CURRENT_VERSION)
    publish(BUNDLED_MODEL, source, BETTER)
    publish(folder / f"{WORSE}.cbm", source, WORSE)
    write_pointer(source, CURRENT, CURRENT_VERSION)
    write_pointer(source, CANDIDATE, BETTER)
    app = create_app(replace(settings, models_dir=source, canary_share=0.5, prediction_log_dir=folder / "log",
                             log_level="WARNING"))
    state = app.extensions["regno"]
    assert state.watcher.check() is True
    key = named_keys(state.settings.effective_api_keys(), "API_KEYS")[0][1]
    label_key = named_keys(state.settings.effective_label_api_keys(), "LABEL_API_KEYS")[0][1]
    client = app.test_client()
    # Seven whole UTC days, the last of them ended: a minute in from the first midnight to a minute before the last.
    start = (time.time() // 86400 - DAYS - 1) * 86400 + 60
    end = start + DAYS * 86400 - 120
    clock, answers, failed = _Clock(start), [], 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(log_rows, "time", clock)
        for position, simulated in enumerate(simulate(PASSES, SEED)):
            clock.now = start + position * (end - start) / PASSES
            if position % FAILED_EVERY == 0:
                status, _ = post_closed(client, "/reg/", {**simulated.record, "direction": "sideways"}, key)
                assert status == 400
                failed += 1
            status, answer = post_closed(client, "/reg/", simulated.record, key)
            assert status == 200, answer
            if position % RESEND_EVERY == 0:
                post_closed(client, "/reg/", simulated.record, key)
            answers.append((simulated, answer["body"]))
    flush_log(state)
    labels = [{"pass_id": answer["pass_id"], "true_regno": simulated.plate}
              for position, (simulated, answer) in enumerate(answers) if position % 10 not in LEFT_UNLABELLED]
    for first in range(0, len(labels), 500):
        status, answer = post_closed(client, "/reg/feedback", {"labels": labels[first:first + 500]}, label_key)
        assert status == 200 and answer["body"]["accepted"] == len(labels[first:first + 500]), answer
    flush_log(state)
    state.shipper.ship_once()
    window = ["--from", datetime.fromtimestamp(start - 1, timezone.utc).isoformat(),
              "--to", datetime.fromtimestamp(end + 1, timezone.utc).isoformat()]
    return {"folder": folder, "source": source, "root": folder / "log" / "parquet", "answers": answers,
            "failed": failed, "labelled": len(labels), "window": window,
            "span": Window(datetime.fromtimestamp(start - 1, timezone.utc),
                           datetime.fromtimestamp(end + 1, timezone.utc))}


def _replay(week, monkeypatch, capsys, *options: str) -> dict:
    """Run regno-replay on the week with the model source of the week; its --json summary."""
    from service.replay.main import main as regno_replay

    monkeypatch.setenv("MODEL_SOURCE", str(week["source"]))
    capsys.readouterr()
    status = regno_replay(["--dir", str(week["root"]), *week["window"], "--json", *options])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def _promote(source: Path, root: Path, monkeypatch, capsys, *options: str) -> tuple[int, str]:
    """regno-model promote against source, with the week's log: (exit status, stderr)."""
    from model.lifecycle.manage import main as regno_model

    monkeypatch.setenv("PREDICTION_LOG_PARQUET_DIR", str(root))
    monkeypatch.setenv("REPLAY_MIN_LABELS", "200")
    capsys.readouterr()
    status = regno_model(["promote", "--to", str(source), *options])
    return status, capsys.readouterr().err


def test_the_week_spans_seven_days_of_logged_passes(week):
    """Every pass, resend and failure reached Parquet, on seven day partitions."""
    found = rows(connect(week["root"]), "SELECT count(DISTINCT day) AS days, count(*) FILTER (WHERE error IS NULL) AS "
                                        "scored, count(*) FILTER (WHERE error IS NOT NULL) AS failed FROM predictions")
    assert found == [{"days": DAYS, "scored": PASSES + len(range(0, PASSES, RESEND_EVERY)), "failed": week["failed"]}]


def test_a_better_candidate_is_better_and_its_replay_equals_its_canary(week, monkeypatch, capsys):
    """The bundled model, replayed on the week: better, and on the passes it answered as canary, exactly as right."""
    summary = _replay(week, monkeypatch, capsys, "--version", "candidate")
    assert summary["candidate"] == BETTER
    assert (summary["passes"], summary["skipped"]) == (PASSES, week["failed"])
    assert summary["paired"]["labelled"] == week["labelled"]
    assert summary["verdict"] == "better", summary["verdict_words"]
    connection = connect(week["root"])
    replayed = rows(connection, """
        SELECT count(*) AS labelled, count(*) FILTER (WHERE replays.regno = labels.true_regno) AS right,
               count(*) FILTER (WHERE replays.positive <> replays.answered_positive) AS differ
        FROM replays JOIN labels USING (pass_id)
        WHERE replays.model = $model AND replays.answered_arm = 'canary'""", {"model": BETTER})[0]
    report = build(connection, week["span"], 0.5, References({}, None, None))
    canary = next(arm for arm in report.arms if (arm.model, arm.arm) == (BETTER, "canary"))
    assert replayed["labelled"] > 500
    assert (replayed["labelled"], replayed["right"]) == (canary.quality.labelled, canary.quality.pick_right)
    assert replayed["differ"] == 0  # the same model gives the same score, offline as live


def test_a_worse_candidate_is_worse_and_the_gate_refuses_it(week, monkeypatch, capsys, caplog, tmp_path):
    """A model taught half-shuffled labels: worse on the week, so promote refuses it (exit 1) unless forced, and
    the log says it was forced."""
    summary = _replay(week, monkeypatch, capsys, "--version", WORSE)
    assert summary["candidate"] == WORSE
    assert summary["verdict"] == "worse", summary["verdict_words"]
    assert summary["paired"]["only_answered"] > summary["paired"]["only_candidate"]
    source = tmp_path / "source"
    subprocess.run(["cp", "-a", str(week["source"]), str(source)], check=True)
    write_pointer(source, CANDIDATE, WORSE)
    status, error = _promote(source, week["root"], monkeypatch, capsys)
    assert status == 1 and len(error.strip().splitlines()) == 1 and WORSE in error, error
    assert read_pointer(source, CURRENT).name == CURRENT_VERSION
    with caplog.at_level("WARNING", logger="regno"):
        status, _ = _promote(source, week["root"], monkeypatch, capsys, "--force")
    assert status == 0
    assert [record.levelname for record in caplog.records if "forced" in record.getMessage()] == ["WARNING"]
    assert read_pointer(source, CURRENT).name == WORSE


def test_the_gate_lets_the_better_candidate_through(week, monkeypatch, capsys, tmp_path):
    """The better model's replay passes the gate: promote names what the replay showed and promotes it."""
    _replay(week, monkeypatch, capsys, "--version", BETTER)
    source = tmp_path / "source"
    subprocess.run(["cp", "-a", str(week["source"]), str(source)], check=True)
    status, error = _promote(source, week["root"], monkeypatch, capsys)
    assert status == 0 and BETTER in error, error
    assert read_pointer(source, CURRENT).name == BETTER


def test_the_threshold_from_the_labels_beats_or_equals_todays(week, monkeypatch, capsys):
    """--threshold on the current model: the best threshold's accuracy is at least today's, inside its interval."""
    summary = _replay(week, monkeypatch, capsys, "--version", "current", "--threshold")
    search = summary["threshold_search"]
    assert summary["candidate"] == CURRENT_VERSION and search["current"] == 0.5
    assert search["labelled"] == week["labelled"]
    assert search["best_accuracy"] >= search["current_accuracy"]
    assert search["interval95"][0] <= search["best"] <= search["interval95"][1]
    at_today = next(point["accuracy"] for point in search["curve"] if point["threshold"] == 0.5)
    assert at_today == search["current_accuracy"]
    # Replaying the model that answered gives back its answers: no pick changes on the passes it answered.
    same = rows(connect(week["root"]), """
        SELECT count(*) AS passes, count(*) FILTER (WHERE regno <> answered_regno OR positive <> answered_positive)
               AS changed FROM replays WHERE model = $model AND answered_model = $model""",
                {"model": CURRENT_VERSION})[0]
    assert same["passes"] > PASSES // 3 and same["changed"] == 0
