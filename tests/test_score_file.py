"""regno-score: the team's sample scored as their code scores it, bad rows kept, Parquet, chunks, bounded memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from loadtest.bench.score_file import REGNO_SCORE, run_measured, write_records
from model.records import FIELDS
from training.simulate import simulate_records
from tests.conftest import read_csv
from loadtest.servers import ROOT

def run(args: list, **env) -> subprocess.CompletedProcess:
    """regno-score as a user runs it (the console script setup.cfg declares), with extra environment."""
    full_env = {**os.environ, **{name: str(value) for name, value in env.items()}}
    return subprocess.run([REGNO_SCORE, *map(str, args)], capture_output=True, text=True, env=full_env, timeout=600)


def test_team_sample_matches_their_probabilities(customer, team_model, team_expected, tmp_path):
    """With the team's model, every row scores what their code gives; the input columns come back unchanged."""
    output = tmp_path / "scored.csv"
    result = run([customer / "test_data.csv", "-o", output], MODEL_PATH=team_model)
    assert result.returncode == 0, result.stderr
    assert "100 rows, 100 scored, 0 failed" in result.stderr
    scored = read_csv(output)
    original = read_csv(customer / "test_data.csv")
    assert [{name: row[name] for name in FIELDS} for row in scored] == original
    for row, (negative, positive) in zip(scored, team_expected, strict=True):
        assert float(row["positive"]) == pytest.approx(positive, abs=1e-9)
        assert float(row["negative"]) == pytest.approx(negative, abs=1e-9)
        assert row["regno"] == (row["afts_regno_ai"] if float(row["positive"]) >= 0.5 else row["regno_recognize"])
        assert row["error"] == ""


def test_bad_rows_are_kept_with_an_error_and_counted(simulated_records, tmp_path):
    """A bad row keeps its place with `error` set and no score; the summary counts it; the exit status is 1."""
    rows = [dict(record) for record in simulated_records[:5]]
    rows[1]["direction"] = "7"
    rows[3]["time_check"] = "yesterday"
    source = tmp_path / "passes.csv"
    write_records(source, rows)
    result = run([source])
    assert result.returncode == 1
    assert "5 rows, 3 scored, 2 failed (direction 1, time_check 1)" in result.stderr
    scored = read_csv(tmp_path / "passes.scored.csv")
    assert [row["error"] for row in scored] == ["", "direction: must be 0 or 1, got 7", "",
                                                 "time_check: must be a timestamp like '2021-08-01 09:02:59', got "
                                                 "'yesterday'", ""]
    assert [row["positive"] == "" for row in scored] == [False, True, False, True, False]


def test_parquet_in_and_out_and_chunks_agree_with_csv(simulated_records, tmp_path):
    """Parquet input and output, and any chunk size, give the same scores as one CSV chunk."""
    source = tmp_path / "passes.csv"
    write_records(source, simulated_records)
    assert run([source, "-o", tmp_path / "whole.csv"]).returncode == 0
    pd.read_csv(source, dtype=str, keep_default_na=False).to_parquet(tmp_path / "passes.parquet")
    assert run([tmp_path / "passes.parquet", "-o", tmp_path / "chunked.parquet", "--chunk-rows", "3"]).returncode == 0
    whole = pd.read_csv(tmp_path / "whole.csv", dtype={"direction": str})
    chunked = pd.read_parquet(tmp_path / "chunked.parquet")
    assert list(chunked.columns) == [*FIELDS, "negative", "positive", "regno", "source", "error"]
    assert chunked["positive"].tolist() == whole["positive"].tolist()
    assert chunked["regno"].tolist() == whole["regno"].tolist()
    assert chunked["error"].isna().all()


@pytest.mark.parametrize("args,message", [
    (["missing.csv"], "no such file: missing.csv"),
    (["only_two.csv"], "the input has no column"),
    (["only_two.csv", "-o", "only_two.csv"], "would overwrite the input"),
])
def test_unusable_runs_say_why_in_one_line(tmp_path, args, message):
    """A run that cannot start or finish exits 2 with one line naming the problem."""
    (tmp_path / "only_two.csv").write_text("regno_recognize,afts_regno_ai\nA1,A2\n", encoding="utf-8")
    result = subprocess.run([REGNO_SCORE, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


@pytest.mark.slow
def test_memory_stays_bounded_as_the_file_grows(tmp_path):
    """Peak memory with 10 times the rows grows by far less than the data: the file is never held whole."""
    records = simulate_records(6_000, seed=5)
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    write_records(small, records)
    write_records(large, records, copies=10)
    small_status, small_peak, _ = run_measured([small, "--chunk-rows", "2000"])
    large_status, large_peak, _ = run_measured([large, "--chunk-rows", "2000"])
    assert small_status == large_status == 0
    assert large.stat().st_size > 10 * 1024 * 1024
    # Reading the large file whole would add its size several times over (pandas objects per cell).
    assert large_peak - small_peak < 20 * 1024, (small_peak, large_peak)
    assert len(read_csv(tmp_path / "large.scored.csv")) == 60_000


def test_file_bench_reports_time_and_peak_memory():
    """`python -m loadtest.bench.score_file` scores a generated file and prints rows, time and peak RSS."""
    result = subprocess.run([sys.executable, "-m", "loadtest.bench.score_file", "--rows", "300", "--chunk-rows", "100"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    figures = re.search(r"^300 rows, [\d.]+ MB of CSV, chunks of 100: exit 0, ([\d.]+) s wall, peak RSS ([\d,]+) MiB$",
                        result.stdout, re.M)
    assert figures, result.stdout
    assert float(figures.group(1)) > 0 and 50 < int(figures.group(2).replace(",", "")) < 4000
    assert "300 rows, 300 scored, 0 failed" in result.stdout
