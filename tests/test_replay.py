"""regno-replay: a candidate scored on a logged day answers as POST /reg/batch would, one row per pass, whole."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from loadtest.report_screenshot import flush_log, post_closed, publish_models, simulated_day, window_options
from model.lifecycle.promotion_gate import summary_path
from model.registry import CANDIDATE, CURRENT, publish, write_folder, write_pointer
from service import create_app
from service.predictions.query import connect, main as regno_log, rows
from service.predictions.rows import REPLAYS
from service.replay.main import main
from tests.conftest import API_KEY
from tests.test_model_source import wrong_features  # noqa: F401 - fixture
from tests.test_model_swap import second_model  # noqa: F401 - fixture

PASSES = 300
#: The candidate's own pick threshold, from its metadata: the replay and /reg/batch both apply it.
CANDIDATE_THRESHOLD = 0.35
BAD_RECORDS = 3


@pytest.fixture(scope="module")
def day(settings, second_model, tmp_path_factory):  # noqa: F811 - fixture
    """A logged day: v1 current and v2 (a small model) a 30% canary, 300 passes (every 8th resent), 60% labelled,
    and BAD_RECORDS records that failed validation; v3, the small model with a pick threshold of its own, is the
    candidate at the models folder, which is also the replay's model source."""
    folder = tmp_path_factory.mktemp("replay-day")
    models_dir = publish_models(folder / "models", second_model)
    app = create_app(replace(settings, models_dir=models_dir, canary_share=0.3, prediction_log_dir=folder / "log",
                             log_level="WARNING"))
    started = datetime.now(timezone.utc)
    sent = simulated_day(app, passes=PASSES)
    client = app.test_client()
    for _ in range(BAD_RECORDS):
        assert post_closed(client, "/reg/", {**sent[0].simulated.record, "direction": 7}, API_KEY)[0] == 400
    state = app.extensions["regno"]
    flush_log(state)
    state.shipper.ship_once()
    ended = datetime.now(timezone.utc)
    publish(second_model, models_dir, "v3", {"threshold": CANDIDATE_THRESHOLD})
    write_pointer(models_dir, CANDIDATE, "v3")
    return {"folder": folder, "models_dir": models_dir, "root": folder / "log" / "parquet", "sent": sent,
            "window": window_options(started, ended), "settings": settings}


def replay(day, *options: str) -> int:
    """Run regno-replay in process on the day, with its models folder as the source; its exit status."""
    return main(["--dir", str(day["root"]), "--source", str(day["models_dir"]), "--workers", "2", *day["window"],
                 *options])


@pytest.fixture(scope="module")
def replayed(day) -> dict:
    """The candidate (the source's `candidate` pointer) replayed on the day, --json: its summary."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # capsys is per test
        status = replay(day, "--json", "--threshold")
    assert status == 0, err.getvalue()
    return json.loads(out.getvalue())


def _replay_rows(day, version: str = "v3") -> dict[str, dict]:
    """The replay rows of version through the `replays` view, by pass id."""
    found = rows(connect(day["root"]), "SELECT * FROM replays WHERE model = $version", {"version": version})
    return {row["pass_id"]: row for row in found}


def test_replay_answers_are_what_post_reg_batch_answers(day, replayed, settings):
    """Every pass's candidate score, plate and source equal, exactly, what /reg/batch answers with the candidate
    serving (the same records, the same model, its own threshold)."""
    serving = day["folder"] / "serving-v3"
    publish(day["models_dir"] / "v3" / "model.cbm", serving, "v3", {"threshold": CANDIDATE_THRESHOLD})
    write_pointer(serving, CURRENT, "v3")
    app = create_app(replace(settings, models_dir=serving))
    records = [one.simulated.record for one in day["sent"]]
    status, answer = post_closed(app.test_client(), "/reg/batch", records, API_KEY)
    assert status == 200
    answers = {result["pass_id"]: result for result in answer["body"]}
    found = _replay_rows(day)
    assert set(found) == set(answers) and len(found) == PASSES
    for pass_id, row in found.items():
        expected = answers[pass_id]
        assert (row["positive"], row["regno"], row["source"]) == (expected["positive"], expected["regno"],
                                                                    expected["source"]), pass_id
        assert row["threshold"] == expected["threshold"] == CANDIDATE_THRESHOLD
    assert replayed["threshold"] == CANDIDATE_THRESHOLD and replayed["candidate"] == "v3"


def test_one_row_per_pass_with_its_first_answer(day, replayed):
    """A resent pass is replayed once, with the first answer the log holds; failed rows are skipped and counted."""
    connection = connect(day["root"])
    first = {row["pass_id"]: row for row in rows(connection, """
        SELECT pass_id, min(ts) AS ts, arg_min(model, ts) AS model, arg_min(arm, ts) AS arm,
               arg_min(positive, ts) AS positive, arg_min(regno, ts) AS regno, count(*) AS answers
        FROM predictions WHERE error IS NULL GROUP BY pass_id""")}
    assert sum(row["answers"] > 1 for row in first.values()) == len(day["sent"][::8])
    found = _replay_rows(day)
    assert len(rows(connection, "SELECT pass_id FROM replays")) == len(found) == len(first) == PASSES
    for pass_id, row in found.items():
        logged = first[pass_id]
        assert (row["ts"], row["answered_model"], row["answered_arm"], row["answered_positive"],
                row["answered_regno"]) == (logged["ts"], logged["model"], logged["arm"], logged["positive"],
                                           logged["regno"])
    failed = rows(connection, "SELECT count(*) AS n FROM predictions WHERE error IS NOT NULL")[0]["n"]
    assert replayed["skipped"] == failed == BAD_RECORDS
    assert replayed["passes"] == PASSES
    assert {row["replay_id"] for row in found.values()} == {replayed["replay_id"]}


def test_the_summary_is_written_beside_the_rows(day, replayed):
    """summary.json is what --json printed; the threshold search ran on the labelled passes."""
    written = json.loads(summary_path(day["root"], "v3").read_text(encoding="utf-8"))
    assert written == replayed
    labelled = sum(one.labelled for one in day["sent"])
    assert replayed["paired"]["labelled"] == labelled
    assert replayed["threshold_search"]["labelled"] == labelled
    assert replayed["threshold_search"]["current"] == CANDIDATE_THRESHOLD
    assert [model["role"] for model in replayed["models"]] == ["candidate", "answered", "answered"]


def test_a_new_replay_of_the_version_replaces_the_old_one_whole(day, replayed, capsys):
    """--version v3 again: the folder holds the new run's rows only, no staging folder is left, the summary is new;
    a person reads the verdict and the best threshold."""
    before = sorted(path.relative_to(day["root"]) for path in (day["root"] / "replays").rglob("*.parquet"))
    assert replay(day, "--version", "v3", "--threshold") == 0
    out = capsys.readouterr().out
    assert "300 passes" in out and "verdict:" in out
    search = json.loads(summary_path(day["root"], "v3").read_text(encoding="utf-8"))["threshold_search"]
    assert f"best threshold: {search['best']:.3f} " in out and f"of {search['labelled']:,} labelled" in out
    found = _replay_rows(day)
    summary = json.loads(summary_path(day["root"], "v3").read_text(encoding="utf-8"))
    assert summary["replay_id"] != replayed["replay_id"]
    assert {row["replay_id"] for row in found.values()} == {summary["replay_id"]} and len(found) == PASSES
    assert sorted(path.relative_to(day["root"]) for path in (day["root"] / "replays").rglob("*.parquet")) == before
    assert not [path for path in (day["root"] / "replays").iterdir() if path.name.startswith(".")]


def test_regno_log_reads_the_replays_view(day, replayed, capsys, tmp_path):
    """`regno-log sql` sees the replays; a log with none has an empty `replays` of the same columns."""
    assert regno_log(["--dir", str(day["root"]), "sql",
                      "SELECT model, count(*) AS passes FROM replays GROUP BY model"]) == 0
    assert [orjson.loads(line) for line in capsys.readouterr().out.splitlines()] == [{"model": "v3", "passes": PASSES}]
    bare = tmp_path / "bare"
    (bare / "day=2026-12-01").mkdir(parents=True)
    for path in day["root"].glob("day=*/*.parquet"):
        (bare / "day=2026-12-01" / path.name).write_bytes(path.read_bytes())
        break
    connection = connect(bare)
    assert rows(connection, "SELECT count(*) AS n FROM replays") == [{"n": 0}]
    names = [column[0] for column in connection.execute("DESCRIBE replays").fetchall()]
    assert names == [*REPLAYS.columns, "day"]


def test_regno_report_shows_the_replay_with_its_threshold_curve(day, replayed, capsys, tmp_path):
    """The command regno-report on the day: the candidate's Replays section, with the threshold curve of the
    summary.json its replay wrote beside the log."""
    from service.report.main import main as regno_report

    out = tmp_path / "report.html"
    assert regno_report(["--dir", str(day["root"]), *day["window"], "-o", str(out)]) == 0, capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    assert 'id="replay-v3"' in page and 'id="figure-replay-threshold-v3"' in page


def test_a_model_file_replays_at_pick_threshold(day, monkeypatch, capsys):
    """--model FILE: the file's own version, PICK_THRESHOLD applied."""
    monkeypatch.setenv("PICK_THRESHOLD", "0.7")
    assert replay(day, "--model", str(day["models_dir"] / "v2" / "model.cbm"), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["candidate"], summary["threshold"]) == ("tiny-2", 0.7)
    assert {row["threshold"] for row in _replay_rows(day, "tiny-2").values()} == {0.7}


def test_a_candidate_the_contract_cannot_build_is_refused_on_one_line(day, wrong_features, capsys):  # noqa: F811
    """A .cbm with other features, or a version at the source that fails the syncer's checks: one line, exit 2."""
    assert replay(day, "--model", str(wrong_features)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("regno-replay: ") and "cannot build" in err[0]
    write_folder(wrong_features, day["models_dir"], {**describe_file(wrong_features), "version": "bad"})
    assert replay(day, "--version", "bad") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad" in err[0] and "refused (features)" in err[0]
    assert not (day["root"] / "replays" / "bad").exists()


def describe_file(path: Path) -> dict:
    """The metadata a publisher records for a file describe() refuses: its checksum only."""
    from model.scorer import file_checksum

    return {"sha256": file_checksum(path)}


@pytest.mark.parametrize("options", [
    ["--day", "today", "--from", "2026-12-01"],
    ["--model", "a.cbm", "--version", "v1", "--day", "today"],
    ["--workers", "-1", "--day", "today"],
    ["--day", "someday"],
    ["--no-such-option"],
    [],
], ids=["day-and-from", "model-and-version", "negative-workers", "bad-day", "unknown-option", "no-window"])
def test_bad_arguments_exit_2_on_one_line(options, capsys):
    """Every misuse: one line naming the command, exit 2, no usage text."""
    with pytest.raises(SystemExit) as exited:
        main(options)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("regno-replay: ") and "usage" not in err[0]


def test_no_log_or_an_empty_window_exit_2_on_one_line(day, tmp_path, capsys):
    """A folder with no log, and a window with no pass: one line each, exit 2, no replay written."""
    assert main(["--dir", str(tmp_path), "--day", "today", "--model", str(day["models_dir"] / "v2" / "model.cbm")]) == 2
    assert main(["--dir", str(day["root"]), "--day", "2001-01-01", "--source", str(day["models_dir"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no prediction-log Parquet files" in err[0] and "no scored pass" in err[1]
