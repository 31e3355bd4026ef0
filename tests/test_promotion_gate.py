"""The promotion gate: regno-model promote reads the candidate's latest replay and refuses a worse one with enough
labels, on a folder, S3 (moto's server) and MLflow (a real server); --force goes past it; publish --threshold."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from model import BUNDLED_MODEL
from model.lifecycle.manage import main, publish
from model.lifecycle.promotion_gate import Decision, judge, latest_replay, summary_path
from model.registry import CANDIDATE, CURRENT, METADATA_FILE
from model.sources import SourceOptions, open_source
from tests.test_model_source import AWS, moto, regno_model, s3  # noqa: F401 - fixtures
from tests.test_model_source_mlflow import registry, server  # noqa: F401 - fixtures

#: The settings regno-model reads that a test must not inherit from the shell running it.
SETTINGS = ("MODEL_SOURCE", "PREDICTION_LOG_DIR", "PREDICTION_LOG_PARQUET_DIR", "REPLAY_MIN_LABELS")
WORDS = {"worse": "worse, on {n:,} labelled passes: the candidate picked right 84.1% against 86.0% (difference -1.9 "
                  "points, 95% interval -2.6 to -1.2; McNemar p < 0.001)",
         "better": "better, on {n:,} labelled passes: the candidate picked right 88.0% against 86.0% (difference "
                   "+2.0 points, 95% interval +1.2 to +2.7; McNemar p < 0.001)"}


def summary(version: str, verdict: str, labelled: int) -> dict:
    """A replay summary with the spec's keys, written by hand: what the gate reads."""
    return {"replay_id": "r-1", "replayed_at": "2026-12-08T03:00:00+00:00", "candidate": version, "threshold": 0.5,
            "window": {"from": "2026-12-01T00:00:00+00:00", "to": "2026-12-08T00:00:00+00:00"},
            "passes": 2 * labelled, "skipped": 0, "flips": {"to_ai": 10, "to_camera": 30},
            "paired": {"labelled": labelled, "answered_right": 0, "candidate_right": 0, "only_answered": 0,
                       "only_candidate": 0, "difference": -0.019, "ci95": [-0.026, -0.012], "p_value": 0.0001},
            "verdict": verdict, "verdict_words": WORDS[verdict].format(n=labelled), "threshold_search": None}


def write_replay(log_dir: Path, version: str, verdict: str, labelled: int) -> Path:
    """The version's summary.json under the log folder, where regno-replay writes it."""
    path = summary_path(log_dir, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary(version, verdict, labelled)), encoding="utf-8")
    return path


@pytest.fixture
def clean_env(monkeypatch):
    """No model source, log folder or REPLAY_MIN_LABELS from the shell."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def folder(tmp_path, clean_env) -> Path:
    """A folder source serving v1, with v2 as its candidate (both the bundled model)."""
    source = open_source(str(tmp_path / "source"), SourceOptions())
    publish(source, BUNDLED_MODEL, "v1", CURRENT)
    publish(source, BUNDLED_MODEL, "v2", CANDIDATE)
    return tmp_path / "source"


def pointers(source_uri: str, options: SourceOptions = SourceOptions()) -> tuple[str | None, str | None]:
    """(current, candidate) at the source."""
    source = open_source(source_uri, options)
    return source.read_pointer(CURRENT), source.read_pointer(CANDIDATE)


def test_judge_refuses_only_worse_on_enough_labels(tmp_path):
    """Worse on min_labels or more refuses; worse on fewer, better, no difference and too few labels do not."""
    refused = judge(summary("v2", "worse", 200), 200)
    assert refused == Decision(True, refused.words) and WORDS["worse"].format(n=200) in refused.words
    assert "2026-12-01T00:00:00+00:00 to 2026-12-08T00:00:00+00:00" in refused.words
    few = judge(summary("v2", "worse", 199), 200)
    assert not few.refuse and "fewer than the 200 labelled passes (REPLAY_MIN_LABELS)" in few.words
    assert not judge(summary("v2", "better", 5000), 200).refuse
    for verdict in ("no detectable difference", "not enough labels"):
        assert not judge({**summary("v2", "better", 5000), "verdict": verdict}, 200).refuse
    assert summary_path(tmp_path, "v2") == tmp_path / "replays" / "v2" / "summary.json"
    assert latest_replay(tmp_path, "v2") is None
    write_replay(tmp_path, "v2", "worse", 300)
    assert latest_replay(tmp_path, "v2")["paired"]["labelled"] == 300
    summary_path(tmp_path, "v2").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a readable replay summary"):
        latest_replay(tmp_path, "v2")


def test_a_worse_replay_refuses_the_promotion(folder, tmp_path, capsys):
    """Exit 1 and one line on stderr saying what the replay showed; current and candidate stay where they were."""
    write_replay(tmp_path / "log", "v2", "worse", 250)
    assert main(["promote", "--to", str(folder), "--log-dir", str(tmp_path / "log")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith("regno-model: not promoting v2: the replay of v2 over 2026-12-01") and "--force" in err
    assert WORDS["worse"].format(n=250) in err
    assert pointers(str(folder)) == ("v1", "v2")


def test_too_few_labels_a_better_replay_or_none_lets_it_go_on(folder, tmp_path, clean_env, capsys):
    """Worse on fewer than REPLAY_MIN_LABELS, better, or no replay at all: promoted, with one line saying why."""
    log = tmp_path / "log"
    write_replay(log, "v2", "worse", 150)
    assert main(["promote", "--to", str(folder), "--log-dir", str(log)]) == 0
    out, err = capsys.readouterr()
    assert out == "v2\n" and len(err.splitlines()) == 1 and "fewer than the 200 labelled passes" in err
    assert pointers(str(folder)) == ("v2", None)

    publish(open_source(str(folder), SourceOptions()), BUNDLED_MODEL, "v3", CANDIDATE)
    write_replay(log, "v3", "better", 900)
    clean_env.setenv("PREDICTION_LOG_PARQUET_DIR", str(log))  # the log folder from the settings
    assert main(["promote", "--to", str(folder)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("regno-model: promoting v3: the replay of v3") and WORDS["better"].format(n=900) in err

    publish(open_source(str(folder), SourceOptions()), BUNDLED_MODEL, "v4", CANDIDATE)
    assert main(["promote", "--to", str(folder)]) == 0
    assert capsys.readouterr().err == f"regno-model: no replay of v4 found under {log}: promoting without one\n"
    clean_env.delenv("PREDICTION_LOG_PARQUET_DIR")
    assert main(["promote", "v3", "--to", str(folder)]) == 0  # no log folder configured at all
    err = capsys.readouterr().err
    assert err.startswith("regno-model: no replay of v3 found: no log folder is set") and len(err.splitlines()) == 1
    assert pointers(str(folder)) == ("v3", None)


def test_replay_min_labels_decides_how_many_labels_refuse(folder, tmp_path, clean_env, capsys):
    """REPLAY_MIN_LABELS=100: a worse replay on 150 labelled passes now refuses."""
    write_replay(tmp_path / "log", "v2", "worse", 150)
    clean_env.setenv("REPLAY_MIN_LABELS", "100")
    assert main(["promote", "--to", str(folder), "--log-dir", str(tmp_path / "log")]) == 1
    assert "not promoting v2" in capsys.readouterr().err and pointers(str(folder)) == ("v1", "v2")


def test_force_promotes_past_a_refusing_replay_and_logs_it(folder, tmp_path, capsys, caplog):
    """--force: promoted, and a warning on the regno logger (which regno-model writes to stderr) says it was forced."""
    write_replay(tmp_path / "log", "v2", "worse", 250)
    with caplog.at_level(logging.WARNING, logger="regno"):
        assert main(["promote", "--to", str(folder), "--log-dir", str(tmp_path / "log"), "--force"]) == 0
    assert capsys.readouterr().out == "v2\n" and pointers(str(folder)) == ("v2", None)
    [record] = [record for record in caplog.records if record.name == "regno"]
    assert record.levelno == logging.WARNING and "forced past a refusing replay" in record.getMessage()
    assert WORDS["worse"].format(n=250) in record.getMessage()

    # The console script, in a process of its own: the warning is one line on stderr.
    publish(open_source(str(folder), SourceOptions()), BUNDLED_MODEL, "v3", CANDIDATE)
    write_replay(tmp_path / "log", "v3", "worse", 250)
    run = regno_model("promote", "--to", str(folder), "--log-dir", str(tmp_path / "log"), "--force", env={})
    assert run.returncode == 0 and run.stdout == "v3\n"
    assert run.stderr.startswith("regno-model: forced past a refusing replay (--force): promoting v3 although the "
                                 "replay of v3") and len(run.stderr.splitlines()) == 1


def test_publish_records_the_threshold_and_refuses_a_bad_one(tmp_path, clean_env, capsys):
    """--threshold lands in the version's metadata (what the syncer keeps); outside 0..1: exit 2, one line."""
    source = tmp_path / "source"
    assert main(["publish", str(BUNDLED_MODEL), "--to", str(source), "--version", "v7", "--threshold", "0.62"]) == 0
    assert json.loads((source / "v7" / METADATA_FILE).read_text())["threshold"] == 0.62
    capsys.readouterr()
    for bad in ("1.5", "-0.1", "nan", "high"):
        assert main(["publish", str(BUNDLED_MODEL), "--to", str(source), "--version", "v8", "--threshold", bad]) == 2
        assert capsys.readouterr().err == f"regno-model: --threshold takes a number from 0 to 1, got {bad!r}\n"
    assert not (source / "v8").exists()


def test_the_gate_on_s3(s3, moto, tmp_path, clean_env, capsys):  # noqa: F811 - fixtures
    """An S3 source: refused with a worse replay, promoted with --force."""
    clean_env.setenv("MODEL_SOURCE_S3_ENDPOINT", moto.url)
    options = SourceOptions(timeout_s=5.0, s3_endpoint=moto.url)
    source = open_source(s3, options)
    publish(source, BUNDLED_MODEL, "v1", CURRENT)
    publish(source, BUNDLED_MODEL, "v2", CANDIDATE)
    write_replay(tmp_path / "log", "v2", "worse", 400)
    assert main(["promote", "--to", s3, "--log-dir", str(tmp_path / "log")]) == 1
    assert capsys.readouterr().err.startswith("regno-model: not promoting v2:")
    assert pointers(s3, options) == ("v1", "v2")
    assert main(["promote", "--to", s3, "--log-dir", str(tmp_path / "log"), "--force"]) == 0
    assert pointers(s3, options) == ("v2", None)


def test_the_gate_on_mlflow_checks_the_served_version_name(registry, tmp_path, clean_env, capsys):  # noqa: F811
    """A models:/ source: the replay is looked up as <name>-v<N>; publish --threshold travels in the version's tags
    and comes back with fetch (so the syncer keeps it)."""
    uri, options = registry
    name = uri.removeprefix("models:/")
    clean_env.setenv("MLFLOW_TRACKING_URI", options.mlflow_tracking_uri)
    source = open_source(uri, options)
    publish(source, BUNDLED_MODEL, point=CURRENT)
    assert main(["publish", str(BUNDLED_MODEL), "--to", uri, "--threshold", "0.7", "--candidate"]) == 0
    assert capsys.readouterr().out.strip() == f"{name}-v2"
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    assert source.fetch(f"{name}-v2", fetched)["threshold"] == 0.7

    write_replay(tmp_path / "log", f"{name}-v2", "worse", 300)
    assert main(["promote", "--to", uri, "--log-dir", str(tmp_path / "log")]) == 1
    assert capsys.readouterr().err.startswith(f"regno-model: not promoting {name}-v2: the replay of {name}-v2")
    assert pointers(uri, options) == (f"{name}-v1", f"{name}-v2")
    write_replay(tmp_path / "log", f"{name}-v2", "better", 300)
    assert main(["promote", "--to", uri, "--log-dir", str(tmp_path / "log")]) == 0
    assert pointers(uri, options) == (f"{name}-v2", None)
