"""The Locust load test: its record loader, its answer checks, the CSV summary, and a short run against gunicorn."""

from __future__ import annotations

import csv
import importlib
import math
import os
import subprocess
import sys

import pytest

from loadtest import server_latency
from loadtest.load_summary import main as summary_main
from loadtest.load_summary import server_figures, summarize
from tests.conftest import API_KEY
from loadtest.servers import ROOT, gunicorn

LOCUST = [sys.executable, "-m", "locust"]
STATS_HEADER = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
                "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
                "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")


@pytest.fixture
def locustfile(monkeypatch):
    """The locustfile as a module, imported without gevent's monkey-patching, which would change this pytest process."""
    monkeypatch.setenv("LOCUST_SKIP_MONKEY_PATCH", "1")  # read by `import locust`, on the first import only
    module = importlib.import_module("loadtest.locustfile")
    from gevent import monkey

    assert not monkey.is_module_patched("socket"), "locust was imported with monkey-patching before this fixture"
    return module


def test_summary_of_a_hand_written_report(tmp_path):
    """Rate, percentiles, max and failures come from the stats rows; failure messages lose Locust's wrapper."""
    (tmp_path / "run_stats.csv").write_text("\n".join([
        STATS_HEADER,
        "POST,/reg/ fresh,90,0,3,3.2,1.1,20.5,150.0,45.0,0.0,3,4,4,5,6,8,10,12,20,20,21",
        "POST,/reg/ malformed,10,2,2,2.1,1.0,4.0,40.0,5.0,1.0,2,2,2,2,3,4,4,4,4,4,4",
        "POST,/reg/ idle,0,0,0,0.0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A",
        ",Aggregated,100,2,3,3.1,1.0,20.5,139.0,50.0,1.0,3,4,4,5,6,7,10,11,20,20,21",
    ]) + "\n", encoding="utf-8")
    (tmp_path / "run_failures.csv").write_text(
        "Method,Name,Error,Occurrences,First Seen,Last Seen\n"
        "POST,/reg/ malformed,\"CatchResponseError('not JSON: expected HTTP 400, got 500')\",2,,\n", encoding="utf-8")

    summary = summarize(tmp_path / "run")

    assert summary["aggregated"] == {"requests": 100, "rate": 50.0, "p50_ms": 3.0, "p95_ms": 7.0, "p99_ms": 11.0,
                                     "max_ms": 20.5, "failures": 2, "failure_ratio": 0.02}
    assert summary["requests"]["POST /reg/ malformed"]["failure_ratio"] == 0.2
    assert summary["requests"]["POST /reg/ idle"]["p99_ms"] is None
    assert summary["failures"] == [{"name": "POST /reg/ malformed", "error": "not JSON: expected HTTP 400, got 500",
                                    "occurrences": 2}]


def test_summary_prints_a_table_or_fails_without_a_report(tmp_path, capsys):
    """The command prints every row, Aggregated last; a missing stats CSV exits 1 with one line."""
    (tmp_path / "run_stats.csv").write_text(
        STATS_HEADER + "\n,Aggregated,10,0,3,3.0,1.0,5.0,139.0,10.0,0.0,3,3,3,3,4,5,5,5,5,5,5\n", encoding="utf-8")
    assert summary_main([str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["Aggregated", "10", "10.0", "3", "5", "5", "5.0",
                                                                "0", "0.00%"]

    assert summary_main([str(tmp_path / "missing")]) == 1
    assert "missing_stats.csv is missing" in capsys.readouterr().err


def test_loader_replays_a_csv(locustfile, monkeypatch, tmp_path, simulated_records):
    """With LOAD_RECORDS_CSV set, the loader gives that CSV's records with production's types."""
    records = simulated_records[:5]
    path = tmp_path / "records.csv"
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=[*records[0], "label"])
        writer.writeheader()
        writer.writerows(dict(record, label=1) for record in records)  # extra columns are dropped
    monkeypatch.setenv("LOAD_RECORDS_CSV", str(path))

    assert locustfile.load_records(locustfile.Options.from_env()) == records


def test_traffic_mix_and_answer_checks(locustfile, simulated_records):
    """Fresh bodies never repeat, even past the end of the sample; verdicts accept only the right answers."""
    options = locustfile.Options.from_env({"LOAD_REPEAT_SHARE": "0.3", "LOAD_BAD_SHARE": "0.1", "LOAD_HOT_RECORDS": "4"})
    traffic = locustfile.Traffic(options, simulated_records)
    fresh = [traffic.next_fresh() for _ in range(3 * (len(simulated_records) - 4))]
    assert len(set(fresh)) == len(fresh)
    names = [traffic.next_request()[0] for _ in range(2000)]
    assert 0.25 < names.count(locustfile.REPEAT) / 2000 < 0.35
    assert 0.07 < names.count(locustfile.MALFORMED) / 2000 < 0.13

    verdict = locustfile.verdict
    assert verdict(200, b'{"body": {}, "status": "ok"}', "") is None
    assert verdict(400, b'{"body": "direction: must be 0 or 1, got 7", "status": "fail"}', "direction 7") is None
    assert verdict(400, b'{"body": "x", "status": "fail"}', "") == "expected HTTP 200, got 400"
    assert verdict(200, b'{"body": {}, "status": "ok"}', "not JSON") == "not JSON: expected HTTP 400, got 200"
    assert verdict(400, b"<html>", "not JSON") == "not JSON: answer is not JSON"
    with pytest.raises(ValueError, match="LOAD_BAD_SHARE"):
        locustfile.Options.from_env({"LOAD_BAD_SHARE": "2"})


@pytest.mark.gunicorn
@pytest.mark.slow
def test_short_load_against_gunicorn(tmp_path):
    """8 s at 100 req/s from 10 users: about the target rate, no failures, malformed requests correctly refused."""
    rate, seconds = 100, 8
    with gunicorn({"API_KEYS": API_KEY}, tmp_path / "gunicorn.log", workers=2) as server:
        env = {name: value for name, value in os.environ.items() if not name.startswith(("LOCUST_", "LOAD_"))}
        env.update(API_KEY=API_KEY, LOAD_RATE=str(rate), LOAD_USERS="10", LOAD_REPEAT_SHARE="0.3",
                   LOAD_BAD_SHARE="0.1", LOAD_SAMPLE_SIZE="1000")
        command = [*LOCUST, "-f", "loadtest/locustfile.py", "--headless", "-u", "10", "-r", "10", "-t", f"{seconds}s",
                   "--host", server.base_url, "--csv", str(tmp_path / "load"), "--only-summary"]
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stdout + run.stderr

    summary = summarize(tmp_path / "load")
    total = summary["aggregated"]
    assert total["requests"] > 0
    assert total["rate"] > 0.5 * rate, summary
    assert total["failures"] == 0 and summary["failures"] == [], summary
    assert total["p99_ms"] > 0
    assert {name: row["requests"] > 0 for name, row in summary["requests"].items()} == {
        "POST /reg/ fresh": True, "POST /reg/ repeat": True, "POST /reg/ malformed": True}

    server = server_figures(tmp_path / "load")
    assert server is not None, "the locustfile wrote no server-side figures"
    assert abs(server["requests"] - total["requests"]) <= 10, (server, total)  # only requests in flight at the stop differ
    assert 0 < server["p50_ms"] <= server["p95_ms"] <= server["p99_ms"] < 2500, server


def test_server_quantiles_follow_prometheus_interpolation():
    """Quantiles interpolate inside their bucket; a run across a restart (counts going down) has none."""
    buckets = {0.001: 50.0, 0.002: 90.0, 0.005: 100.0, math.inf: 100.0}
    assert server_latency.quantile(0.5, buckets) == pytest.approx(0.001)
    assert server_latency.quantile(0.9, buckets) == pytest.approx(0.002)
    assert server_latency.quantile(0.99, buckets) == pytest.approx(0.0047)
    assert server_latency.summary(buckets) == {"requests": 100, "p50_ms": 1.0, "p95_ms": 3.5, "p99_ms": 4.7}
    assert server_latency.quantile(0.99, {0.001: 0.0, math.inf: 10.0}) == 0.001  # all beyond the last bound
    assert server_latency.summary({})["p99_ms"] is None
    before = {0.001: 5.0, math.inf: 6.0}
    assert server_latency.difference(before, {0.001: 7.0, math.inf: 9.0}) == {0.001: 2.0, math.inf: 3.0}
    assert server_latency.difference(before, {0.001: 1.0, math.inf: 1.0}) == {}


def test_summary_prints_the_server_line(tmp_path, capsys):
    """With a <prefix>_server.json beside the CSV, the summary adds the service's own figures."""
    (tmp_path / "run_stats.csv").write_text(
        STATS_HEADER + "\n,Aggregated,10,0,3,3.0,1.0,5.0,139.0,10.0,0.0,3,3,3,3,4,5,5,5,5,5,5\n", encoding="utf-8")
    (tmp_path / "run_server.json").write_text('{"requests": 10, "p50_ms": 0.7, "p95_ms": 1.2, "p99_ms": 1.9}')
    assert summary_main([str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "service's own view (regno_http_request_duration_seconds, POST /reg/): 10 requests, "
        "p50 0.70 ms, p95 1.20 ms, p99 1.90 ms")
