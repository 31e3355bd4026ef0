"""A real Prometheus scraping a real multi-worker gunicorn (and the proxy's exporters): every query answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests
import yaml

from model import BUNDLED_MODEL
from model.registry import CANDIDATE, CURRENT, METADATA_FILE, MODEL_FILE, publish, write_pointer
from model.scorer import Scorer
from tests.conftest import API_KEY, KEYS_ENV, LABEL_KEY
from training.simulate import simulate_records
from service.observe.metrics_files import process_name
from loadtest.servers import ROOT, children, gunicorn, prometheus, serve

pytestmark = pytest.mark.gunicorn
CONFIG = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "regno-api.json"
HEADERS = {"x-api-key": API_KEY, "content-type": "application/json"}
SCORED = 'sum(regno_http_request_duration_seconds_count{endpoint="scoring.score_one"})'
# `<query> <comparison> <number>`: the alert rules are written so, and the query must answer with data.
ALERT_SHAPE = re.compile(r"^(?P<query>.+?)\s*(?:>=|<=|==|!=|>|<)\s*[0-9.eE+-]+$")
#: Metrics of the proxy's exporters (nginx exporter, mtail): their queries are checked against make serve's stack.
PROXY_METRIC = re.compile(r"\b(nginx_\w+|regno_proxy_\w+)")


def _dashboard_queries() -> list[str]:
    """Every PromQL expression of every dashboard panel (rows have none)."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def _rules() -> list[dict]:
    """Every rule in the committed rules file: alerts and recording rules."""
    rules = yaml.safe_load((CONFIG / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def _alert_rules() -> list[dict]:
    """Every alert rule in the committed rules file."""
    return [rule for rule in _rules() if "alert" in rule]


def _recording_rules() -> list[dict]:
    """Every recording rule in the committed rules file."""
    return [rule for rule in _rules() if "record" in rule]


def _of_proxy(expression: str) -> bool:
    """True when a query needs the proxy's exporters."""
    return bool(PROXY_METRIC.search(expression))


def _promtool(*args: str) -> subprocess.CompletedProcess:
    """Run promtool with args."""
    executable = shutil.which("promtool")
    assert executable, "promtool is not installed: `make test` installs it with prometheus"
    return subprocess.run([executable, *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_config_and_rules():
    """promtool check config and check rules pass on the committed files."""
    config = _promtool("check", "config", str(CONFIG / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool("check", "rules", str(CONFIG / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in rules.stdout


def test_dashboard_has_the_required_panels():
    """The dashboard has a panel for each thing operations watch."""
    titles = " | ".join(panel["title"] for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"])
    for words in ("Request rate", "p50 / p95 / p99", "Error ratio by status", "inference time", "Cache",
                  "breaker", "Validation failures by field", "positive score distribution", "Pick by source",
                  "Loaded model", "since the last successful sync", "refused models"):
        assert words.lower() in titles.lower(), words


def _query(base: str, expression: str) -> list:
    """The result vector of an instant query."""
    answer = requests.get(f"{base}/api/v1/query", params={"query": expression}, timeout=10).json()
    assert answer["status"] == "success", (expression, answer)
    return answer["data"]["result"]


def _wait_for(base: str, expression: str, value: float, seconds: float = 40) -> None:
    """Wait until an instant query answers exactly value."""
    deadline = time.monotonic() + seconds
    seen = None
    while time.monotonic() < deadline:
        result = _query(base, expression)
        seen = float(result[0]["value"][1]) if result else None
        if seen == value:
            return
        time.sleep(0.25)
    raise AssertionError(f"{expression} stayed at {seen}, expected {value}")


def _wait_for_data(base: str, expression: str, seconds: float = 20) -> list:
    """The result of an instant query once it has one (a recording rule's first evaluation, say)."""
    deadline = time.monotonic() + seconds
    while not (result := _query(base, expression)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert result, f"{expression} has no data after {seconds} s"
    return result


def _send(base_url: str, bodies: list[bytes], headers: dict) -> list[int]:
    """POST every body to /reg/, four at a time, and return the statuses."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda body: requests.post(f"{base_url}/reg/", data=body, headers=headers,
                                                         timeout=10).status_code, bodies))


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, simulated_records):
    """gunicorn with 3 workers, scraped every second by a real Prometheus loaded with the committed rules."""
    folder = tmp_path_factory.mktemp("prometheus")
    metrics_dir = folder / "multiproc"
    # Models from a source (a folder: the syncer's metrics are the same for S3 and MLflow), so its queries answer.
    publish(BUNDLED_MODEL, folder / "source")
    write_pointer(folder / "source", CURRENT, Scorer.load(BUNDLED_MODEL).version)
    env = {**KEYS_ENV, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PREDICTION_LOG_DIR": str(folder / "log"),
           "QUALITY_MIN_LABELS": "5", "MODEL_SOURCE": str(folder / "source"), "MODELS_DIR": str(folder / "models"),
           "MODEL_SYNC_S": "1"}
    with gunicorn(env, folder / "gunicorn.log", workers=3) as server:
        config = yaml.safe_load((CONFIG / "prometheus.yml").read_text(encoding="utf-8"))
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(CONFIG / "alerts.yml")]
        config["scrape_configs"][0]["static_configs"] = [{"targets": [server.base_url.removeprefix("http://")]}]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        with prometheus(folder / "prometheus.yml", folder) as base:
            yield server, base, metrics_dir


def test_counts_are_exact_and_every_query_answers(scraped, simulated_records, record):
    """N requests over three workers count exactly N; every dashboard and alert query returns data."""
    server, base, _ = scraped
    good = [orjson.dumps(item) for item in simulated_records] * 3  # repeats become cache hits
    bad = [orjson.dumps(dict(record, direction=9))] * 7 + [b"{"] * 3
    statuses = _send(server.base_url, good + bad, HEADERS)
    assert statuses.count(200) == len(good) and statuses.count(400) == len(bad)
    _wait_for(base, SCORED, len(good) + len(bad))
    _wait_for(base, 'sum(regno_http_request_duration_seconds_count{endpoint="scoring.score_one",status="400"})',
              len(bad))
    _wait_for(base, 'sum(regno_cache_lookups_total)', len(good))
    _wait_for(base, "sum(regno_workers_alive)", 3)
    _label_wrongly(server.base_url, 6, seed=11)  # the quality panels need labels
    time.sleep(2)  # a few more scrapes, so every rate() has two points
    for rule in _recording_rules():  # the quality panels and RegnoPickAccuracyLow read these once evaluated
        _wait_for_data(base, rule["record"])
    for expression in _dashboard_queries():
        if _of_proxy(expression):
            continue  # test_proxy_queries_answer_against_make_serve
        result = _query(base, expression.replace("$__rate_interval", "1m"))
        assert result, f"dashboard query returned no data: {expression}"
    for rule in _alert_rules():
        if _of_proxy(rule["expr"]):
            continue
        shape = ALERT_SHAPE.match(rule["expr"])
        assert shape, f"alert {rule['alert']} is not `<query> <comparison> <number>`"
        assert _query(base, shape["query"]), f"alert {rule['alert']} query returned no data"
    groups = requests.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in loaded} == {rule.get("alert") or rule["record"] for rule in _rules()}
    assert {rule["health"] for rule in loaded} <= {"ok", "unknown"}


def _label_wrongly(base_url: str, count: int, seed: int) -> None:
    """Score count new passes and label each with a plate neither recogniser read: every pick is wrong."""
    headers = {"x-api-key": API_KEY}
    ids = [requests.post(f"{base_url}/reg/", json=record, headers=headers, timeout=10).json()["body"]["pass_id"]
           for record in simulate_records(count, seed=seed)]
    time.sleep(0.3)  # the log's writers index their batch every 50 ms
    labels = [{"pass_id": pass_id, "true_regno": "Ж000ЖЖ00"} for pass_id in ids]
    results = requests.post(f"{base_url}/reg/feedback", json=labels, headers={"x-api-key": LABEL_KEY},
                            timeout=10).json()["body"]
    assert results["accepted"] == count, results


def _wait_for_alert(base: str, name: str, seconds: float = 30.0) -> list[dict]:
    """The firing alerts called name, waiting up to seconds for one."""
    deadline = time.monotonic() + seconds
    while True:
        alerts = requests.get(f"{base}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        firing = [alert for alert in alerts if alert["labels"]["alertname"] == name and alert["state"] == "firing"]
        if firing or time.monotonic() > deadline:
            return firing
        time.sleep(0.5)


def test_pick_accuracy_below_the_floor_fires_its_alert(scraped):
    """Labels that say every pick was wrong, more than QUALITY_MIN_LABELS of them: RegnoPickAccuracyLow fires."""
    server, base, _ = scraped
    _label_wrongly(server.base_url, 6, seed=12)
    firing = _wait_for_alert(base, "RegnoPickAccuracyLow")
    assert firing, "RegnoPickAccuracyLow did not fire"
    # Its value: the hour's pick accuracy (0) minus the default floor.
    assert firing[0]["labels"]["arm"] == "current" and float(firing[0]["value"]) == pytest.approx(-0.8)


def test_a_stale_sync_pages_per_instance(tmp_path):
    """promtool's rule tests: RegnoModelSyncStale fires for the one instance whose syncer stopped succeeding."""
    rule = next(rule for rule in _alert_rules() if rule["alert"] == "RegnoModelSyncStale")
    # Timestamps as Prometheus's clock sees them in a rule test: seconds since 0, one sample a minute.
    fresh = " ".join(str(60 * minute) for minute in range(31))
    stuck = " ".join(["0"] * 31)
    tests = {"rule_files": [str(CONFIG / "alerts.yml")], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": 'regno_model_sync_last_success_timestamp_seconds{instance="a:8000",job="regno-api"}',
             "values": fresh},
            {"series": 'regno_model_sync_last_success_timestamp_seconds{instance="b:8000",job="regno-api"}',
             "values": stuck}],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": rule["alert"], "exp_alerts": []},
            # b's last success is 0: more than 600 s old from 10m01s, and `for: 1m` later it fires.
            {"eval_time": "12m", "alertname": rule["alert"], "exp_alerts": [{
                "exp_labels": {"instance": "b:8000", "severity": "page"},
                "exp_annotations": {key: value.replace("{{ $labels.instance }}", "b:8000").replace(
                    "{{ $value | humanizeDuration }}", "12m 0s") for key, value in rule["annotations"].items()}}]}],
    }]}
    (tmp_path / "stale_test.yml").write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(tmp_path / "stale_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_correction_retracts_its_verdict_from_the_alert(tmp_path):
    """promtool's rule tests: 30 wrong labels page RegnoPickAccuracyLow; once a correction replaces each with a
    right one (the wrong verdicts counted in regno_quality_retracted_total), the pass counts once and it stops."""
    rule = next(rule for rule in _alert_rules() if rule["alert"] == "RegnoPickAccuracyLow")
    arm = 'arm="current",model="v1",job="regno-api",instance="a:8000"'

    def series(name: str, before: int, after: int, labels: str = arm) -> dict:
        """A counter at 0, then before from minute 1, then after from minute 6 (the corrections arrive)."""
        return {"series": f"{name}{{{labels}}}", "values": " ".join(["0"] + [str(before)] * 5 + [str(after)] * 14)}

    firing = {key: value.replace("{{ $labels.model }}", "v1").replace("{{ $labels.arm }}", "current").replace(
        "{{ $value | humanizePercentage }}", "-80%") for key, value in rule["annotations"].items()}
    tests = {"rule_files": [str(CONFIG / "alerts.yml")], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            series("regno_quality_labelled_total", 30, 60), series("regno_quality_pick_correct_total", 0, 30),
            series("regno_quality_retracted_total", 0, 30, f'measure="labelled",{arm}'),
            series("regno_quality_retracted_total", 0, 0, f'measure="pick_correct",{arm}'),
            {"series": "regno_quality_pick_accuracy_floor", "values": "0.8x20"},
            {"series": "regno_quality_min_labels", "values": "20x20"}],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": rule["alert"], "exp_alerts": [{
                "exp_labels": {"model": "v1", "arm": "current", "severity": "page"}, "exp_annotations": firing}]},
            {"eval_time": "10m", "alertname": rule["alert"], "exp_alerts": []}],
        # The recorded hour, net: the 30 passes once, each with its corrected (right) pick.
        "promql_expr_test": [{"expr": f"model_arm:regno_quality_{measure}:increase1h", "eval_time": "10m",
                              "exp_samples": [{"labels": f'model_arm:regno_quality_{measure}:increase1h'
                                                         '{arm="current",model="v1"}', "value": 30}]}
                             for measure in ("labelled", "pick_correct")],
    }]}
    (tmp_path / "correction_test.yml").write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(tmp_path / "correction_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_name_only_exported_metrics(scraped):
    """Every metric a dashboard or alert query names is one the service exports (or Prometheus's own up)."""
    server, _, _ = scraped
    exported = set(re.findall(r"^(\w+)", requests.get(f"{server.base_url}/metrics", timeout=5).text, re.M))
    expressions = [e for e in _dashboard_queries() + [rule["expr"] for rule in _rules()] if not _of_proxy(e)]
    named = {name for expression in expressions for name in re.findall(r"\b(regno_\w+|up)\b(?=\s*[{\[)]|\s*$|\s)",
                                                                        expression)}
    assert named, "no metric names found in the queries"
    # Shadow series are labelled by the two models' versions, so they exist only once a candidate is set
    # (tests/test_model_swap.py checks that a shadow comparison exports them).
    candidate_only = {"regno_shadow_comparisons_total", "regno_shadow_score_difference_bucket"}
    assert named - exported <= {"up"} | candidate_only, named - exported - candidate_only


def test_counts_survive_a_worker_restart_and_files_stay_bounded(scraped, record):
    """A worker killed and replaced loses no counts, and its files are folded into the archive."""
    server, base, metrics_dir = scraped
    before = float(_query(base, SCORED)[0]["value"][1])
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (victim in server.worker_pids() or len(server.worker_pids()) < 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    body = orjson.dumps(record)
    assert set(_send(server.base_url, [body] * 30, HEADERS)) == {200}
    _wait_for(base, SCORED, before + 30)
    _wait_for(base, "sum(regno_workers_alive)", 3)
    names = [path.name for path in metrics_dir.glob("*.db")]
    assert not [name for name in names if name.endswith(f"_{process_name('main', victim)}.db")]
    master = process_name("main", server.process.pid)
    assert f"counter_archive-{master}.db" in names and f"histogram_archive-{master}.db" in names


def test_a_refused_model_fires_its_alert_and_the_old_one_answers(scraped, record):
    """A truncated model named candidate at the source: the syncer refuses it, RegnoModelRefused fires.

    Last of the tests on `scraped`: its answer would land in the next test's counts a scrape late.
    """
    server, base, metrics_dir = scraped
    source = metrics_dir.parent / "source"
    assert _wait_for_alert(base, "RegnoModelRefused", seconds=0) == []
    (source / "truncated").mkdir()
    (source / "truncated" / MODEL_FILE).write_bytes(BUNDLED_MODEL.read_bytes()[:4000])
    (source / "truncated" / METADATA_FILE).write_text(json.dumps({"version": "truncated"}))
    write_pointer(source, CANDIDATE, "truncated")
    _wait_for(base, 'sum(regno_model_sync_refusals_total{reason="unloadable"})', 1)
    assert _wait_for_alert(base, "RegnoModelRefused"), "RegnoModelRefused did not fire"
    answer = requests.post(f"{server.base_url}/reg/", json=record, headers=HEADERS, timeout=10).json()["body"]
    assert answer["model"] == Scorer.load(BUNDLED_MODEL).version
    assert not (metrics_dir.parent / "models" / "truncated").exists()


def test_proxy_queries_answer_against_make_serve(tmp_path):
    """make serve's stack scraped by a real Prometheus: the proxy's panels and alerts answer; a 504 fires its alert."""
    env = {"API_KEYS": API_KEY, "TIMEOUT": "1"}  # nginx waits TIMEOUT + 5 s for gunicorn: a frozen one gives 504 soon
    with serve(env, tmp_path / "stack.log", workers=2) as stack:
        config = yaml.safe_load((CONFIG / "prometheus.yml").read_text(encoding="utf-8"))
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(CONFIG / "alerts.yml")]
        targets = {"regno-api": stack.internal_url, "regno-proxy": stack.exporter_url,
                   "regno-proxy-answers": stack.answers_url}
        assert [job["job_name"] for job in config["scrape_configs"]] == list(targets)
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [targets[job["job_name"]].removeprefix("http://")]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        with prometheus(tmp_path / "prometheus.yml", tmp_path) as base:
            assert _send(stack.base_url, [orjson.dumps({"pad": "a" * 70_000})] * 3, HEADERS) == [413] * 3
            _wait_for(base, 'sum(regno_proxy_answers_total{status="413"})', 3)
            failing = next(rule for rule in _alert_rules() if rule["alert"] == "RegnoUpstreamFailing")
            assert _query(base, failing["expr"]) == []  # refusals are not upstream failures
            frozen = [stack.gunicorn_pid(), *children(stack.gunicorn_pid())]
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            try:
                timed_out = requests.post(f"{stack.base_url}/reg/", data=b"{}", headers=HEADERS, timeout=30)
            finally:
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
            assert timed_out.status_code == 504
            _wait_for(base, 'sum(regno_proxy_answers_total{status="504"})', 1)
            time.sleep(2)  # a few more scrapes, so every rate() has two points
            for expression in filter(_of_proxy, _dashboard_queries()):
                assert _query(base, expression.replace("$__rate_interval", "1m")), expression
            for rule in _alert_rules():
                if _of_proxy(rule["expr"]):
                    assert _query(base, ALERT_SHAPE.match(rule["expr"])["query"]), rule["alert"]
            assert _query(base, failing["expr"]), "the 502/504 alert's condition is not met after a 504"
            down = next(rule for rule in _alert_rules() if rule["alert"] == "RegnoProxyDown")
            assert _query(base, down["expr"]) == []  # nginx is up
            exported = {name for url in targets.values() for name in
                        re.findall(r"^(\w+)", requests.get(f"{url}/metrics", timeout=5).text, re.M)}
    named = {name for expression in _dashboard_queries() + [rule["expr"] for rule in _alert_rules()]
             for name in PROXY_METRIC.findall(expression)}
    assert named and named <= exported, named - exported
