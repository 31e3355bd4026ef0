"""The benchmarks run and report sane figures (their speed is measured by them, not asserted here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from loadtest.bench import bulk as bench_bulk
from loadtest.servers import ROOT

pytestmark = [pytest.mark.gunicorn, pytest.mark.skipif(shutil.which("wrk") is None,
                                                         reason="wrk is not installed (make bench installs it)")]


def test_bench_reports_every_scenario_against_the_floor():
    """`python -m loadtest.bench` prints a rate, p50 and p99 per scenario and memory per process, then /reg/ beside
    maximum-size batches with and without the bulk pool."""
    result = subprocess.run([sys.executable, "-m", "loadtest.bench", "--seconds", "1", "--rounds", "2", "--skip-team",
                             "--rate", "50", "--bulk-seconds", "2", "--bulk-rounds", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| ((?:floor|service)[^|]*) \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
                      r"([\d. ]+) \|$", result.stdout, re.M)
    assert [row[0].split(":")[0].split(",")[0] for row in rows] == [
        "floor", "service", "service with the prediction log", "service", "service with Redis", "service",
        "service behind the proxy"]
    assert "batches of 100" in rows[5][0]
    for name, rate, records, p50, p99, ratio, each_round in rows:
        per_request = 100 if "batches" in name else 1
        assert float(rate.replace(",", "")) > 0, name
        assert float(records.replace(",", "")) == pytest.approx(float(rate.replace(",", "")) * per_request, rel=0.01)
        assert 0 < float(p50) <= float(p99), name
        assert 0 < float(ratio) < 3 * per_request, name
        ratios = [float(value) for value in each_round.split()]
        assert len(ratios) == 2 and min(ratios) <= float(ratio) <= max(ratios), name
    assert rows[0][5] == "1.00" and rows[0][6] == "1.00 1.00"
    memory = re.findall(r"^\| \w[^|]* \| (master|worker \d) \| (\d+) \| (\d+) \|$", result.stdout, re.M)
    assert len(memory) == 7 * 3  # gunicorn's master and two workers per scenario
    assert all(0 < int(pss) <= int(rss) for _, rss, pss in memory)
    bulk = re.findall(r"^\| (/reg/[^|]*) \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d,]+) \| "
                      r"([\d.-]+) \| ([\d /-]+) \|$", result.stdout, re.M)
    assert [row[0] for row in bulk] == [name for name, _, _ in bench_bulk.CASES]
    alone, beside, without_pool = bulk
    assert alone[1] == "100" and alone[6] == "0" and alone[7] == "-"  # 50 req/s for 2 s, no batch
    assert int(beside[6]) > 0 and float(beside[7]) > 0 and int(without_pool[6]) > 0
    assert beside[2] == "0"  # beside the bulk pool, every /reg/ request answered in time
    assert 0 < float(beside[5]) <= float(beside[4])  # the service's own share of the client's p99
    assert re.fullmatch(r"\d+ / \d+", beside[8]) and without_pool[8] == "-"


def test_in_process_bench_compares_with_the_team_approach():
    """`python -m loadtest.bench.record` measures the service path and the team's approach side by side."""
    result = subprocess.run([sys.executable, "-m", "loadtest.bench.record", "--rounds", "1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    baseline = re.search(r"\| team's approach[^|]*\| ([\d.]+) \| 1x \(baseline\) \|", result.stdout)
    service = re.search(r"\| service: validate \+ features \+ predict \| ([\d.]+) \| ([\d,]+)x faster \|",
                        result.stdout)
    assert baseline and service, result.stdout
    assert float(service.group(1)) > 0 and float(baseline.group(1)) > 0


def test_stalled_clients_bench_reports_zero_failures_through_the_proxy():
    """`python -m loadtest.bench.stalled`, short: every stalled connection held, every paced request answered."""
    result = subprocess.run([sys.executable, "-m", "loadtest.bench.stalled", "--seconds", "2", "--rate", "50",
                             "--stalled-headers", "10", "--stalled-bodies", "10", "--direct-seconds", "1",
                             "--direct-stalled", "2", "--timeout", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^Measured \d{4}-\d\d-\d\d on .+, \d+ cores", result.stdout, re.M), result.stdout
    rows = dict(re.findall(r"^\| (through nginx \(make serve\)|gunicorn direct) \| (.*) \|$", result.stdout, re.M))
    assert set(rows) == {"through nginx (make serve)", "gunicorn direct"}, result.stdout
    stalled, sent, failures, timeouts, p50, p95, p99, seconds = rows["through nginx (make serve)"].split(" | ")
    assert int(stalled) >= 20 and int(sent) == 100 and int(failures) == 0 and int(timeouts) == 0
    assert 0 < float(p50) <= float(p95) <= float(p99)
    # Met directly, two stalled connections hold both sync workers: the run still ends, bounded by its timeout.
    stalled, sent, failures, timeouts, *_, seconds = rows["gunicorn direct"].split(" | ")
    assert int(stalled) == 2 and int(sent) == 50 and 0 <= int(timeouts) <= int(failures) <= 50
    assert float(seconds) < 30


def test_log_bench_finds_a_row_for_every_answer():
    """`python -m loadtest.bench.log`, short: as many rows in Parquet as answers, one per request id, none dropped."""
    result = subprocess.run([sys.executable, "-m", "loadtest.bench.log", "--rate", "100", "--seconds", "3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    row = re.search(r"^\| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$",
                    result.stdout, re.M)
    assert row, result.stdout
    sent, answered, failed, found, ids, dropped = map(int, row.groups()[:6])
    assert sent == 300 and answered + failed == sent
    assert found == ids == answered and dropped == 0
    labels = re.search(r"^\| (\d+) \| (\d+) \| (\d+) \| ([\d,]+) \| (\d+) \| (\d+) \|$", result.stdout, re.M)
    assert labels, result.stdout
    labels_sent, accepted, labelled, _, indexed, bytes_per_pass = (int(value.replace(",", ""))
                                                                    for value in labels.groups())
    assert labels_sent == accepted == labelled == indexed == answered  # every pass found and counted once
    assert 50 < bytes_per_pass < 5000


def test_source_bench_times_every_promotion_and_the_request_path():
    """`python -m loadtest.bench.source`, short: every move reaches all four workers, no answer fails, and the
    request path is measured with the model from MODEL_PATH and from each kind of source."""
    result = subprocess.run([sys.executable, "-m", "loadtest.bench.source", "--swaps", "2", "--sync-s", "0.5",
                             "--poll-s", "0.2", "--rounds", "1", "--seconds", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    promotions = re.findall(r"^\| (s3|mlflow) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d,]+) \| (\d+) \|$",
                            result.stdout, re.M)
    assert [row[0] for row in promotions] == ["s3", "mlflow"], result.stdout
    for kind, swaps, middle, longest, answers, failed in promotions:
        assert swaps == "2" and 0 < float(middle) <= float(longest) and int(answers.replace(",", "")) > 0, kind
        assert failed == "0", kind
    rows = re.findall(r"^\| ((?:floor|service)[^|]*) \| [\d,]+ \|", result.stdout, re.M)
    assert [row.split(",")[1].strip() if row.startswith("service") else "floor" for row in rows] == [
        "floor", "model from MODEL_PATH (no source)", "model synced from a folder source",
        "model synced from S3 (moto)", "model synced from MLflow"]
