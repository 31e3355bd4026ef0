"""What we ship, run as shipped: the images built here and compose's own file brought up in a real Docker engine.

The engine is started when none runs (and stopped after); images come from scripts/build-images, which makes local
bases and stand-ins for the third-party images where no registry answers. The stack is brought up once for the
module under a project name of its own, and every test below speaks to it as a user would: through the proxy on
8080, with compose's own commands. The last tests stop and kill it on purpose, so they come last.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests
from catboost import CatBoostClassifier

from model import BUNDLED_MODEL
from model.records import parse_record
from model.scorer import Scorer
from loadtest.containers import ONE_SHOTS, PROMETHEUS_URL, PUBLIC_URL, RUNNING, ComposeStack, Traffic, docker, wait_for
from tests.conftest import readme_curl, with_pass_id_of
from training.simulate import simulate_records

pytestmark = [pytest.mark.containers, pytest.mark.slow]

KEY = "containers-test-key"
PASS_ID_SECRET = "containers-test-pass-id-secret"
#: compose's settings for this stack: keys, the pass-id secret, a quick syncer, and what the optional profiles ask for.
SETTINGS = {"API_KEYS": KEY, "LOAD_API_KEY": KEY, "GRAFANA_ADMIN_PASSWORD": "unused-here", "MODEL_SYNC_S": "2",
            "PASS_ID_SECRET": PASS_ID_SECRET}
BUNDLED_VERSION = "regno-sim-1"


@pytest.fixture(scope="module")
def stack(images):
    """The default profile up and healthy (but Grafana), removed with its volumes after the module."""
    compose = ComposeStack("regno-ci", SETTINGS)
    compose.down()  # what an interrupted run left
    try:
        compose.up()
        yield compose
    finally:
        compose.down()


def _post(path: str, body, key: str = KEY, **headers) -> requests.Response:
    """POST to the stack's one door."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{PUBLIC_URL}{path}", data=data, timeout=30,
                         headers={"content-type": "application/json", "x-api-key": key, **headers})


def _internal_health(stack: ComposeStack) -> dict:
    """/health from the proxy's internal door, the whole of it: compose does not publish that door, so it is asked
    from inside the proxy's container."""
    done = stack.exec("proxy", "wget", "-q", "-O", "-", "http://127.0.0.1:8081/health")
    return json.loads(done.stdout)["body"] if done.returncode == 0 else {}


def _rows_by_request(stack: ComposeStack, prefix: str) -> dict[str, int]:
    """How many prediction-log rows each request id with prefix has in the sink's Parquet."""
    rows = stack.log_rows(f"select request_id, count(*) as n from predictions where request_id like '{prefix}-%' "
                          f"group by request_id")
    return {row["request_id"]: row["n"] for row in rows}


def test_every_service_is_healthy_or_done_its_job(stack):
    """Each long-running service is running and healthy (the exporter, which has no check, running); the
    one-shots exited 0."""
    states = stack.states()
    for service in RUNNING:
        state = states[service]
        assert state["State"] == "running", (service, state)
        assert state["Health"] in ("healthy", ""), (service, state)
        assert state["Health"] == "healthy" or service == "nginx-exporter", (service, state)
    for service in ONE_SHOTS:
        assert states[service]["State"] == "exited" and states[service]["ExitCode"] == 0, states[service]


def test_the_readme_curl_through_the_proxy(stack):
    """The README's record through the proxy on 8080 gets the README's answer to the digit (its pass id keyed with
    this stack's PASS_ID_SECRET instead of make run's)."""
    record, answer = readme_curl()
    response = _post("/reg/", record)
    assert response.status_code == 200
    assert response.json() == with_pass_id_of(answer, record, PASS_ID_SECRET)
    # SHAP through the pruned image: CatBoost's explanation path runs without the plotting stack.
    explained = _post("/reg/explain?top=3", record)
    assert explained.status_code == 200 and len(explained.json()["body"]["contributions"]) == 3, explained.text


def test_the_proxy_refuses_a_large_body_in_the_envelope(stack):
    """A body over MAX_BODY_BYTES gets nginx's own 413 in the service's envelope, with a request id."""
    response = _post("/reg/", b"{" + b" " * 70_000 + b"}")
    assert response.status_code == 413
    assert response.json()["status"] == "fail" and "body" in response.json()
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")


def test_gunicorn_is_reachable_only_over_its_socket(stack):
    """The api container listens on no TCP port and publishes none; its socket is in the shared run folder."""
    # Listening sockets (state 0A) of the container's network namespace, less Docker's embedded DNS (127.0.0.11).
    listening = stack.exec("api", "sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 | awk '$4 == \"0A\" {print $2}'")
    assert listening.returncode == 0, listening
    assert [address for address in listening.stdout.split() if not address.startswith("0B00007F:")] == []
    assert stack.exec("api", "test", "-S", "/run/regno/gunicorn.sock").returncode == 0
    ports = subprocess.run([docker(), "port", stack.container("api")], capture_output=True, text=True)
    assert ports.stdout.strip() == ""


def test_bulk_work_goes_to_the_bulk_pool(stack):
    """A batch through the proxy is answered by api-bulk, at its lower CPU priority, a /reg/ pass by the api; both
    pools write one metrics folder, each process's files named after its pool and pid."""
    record, _ = readme_curl()
    assert _post("/reg/batch", [record, record], **{"X-Request-ID": "bulk-pool-batch"}).status_code == 200
    assert _post("/reg/", record, **{"X-Request-ID": "bulk-pool-single"}).status_code == 200
    wait_for(lambda: "bulk-pool-batch" in stack.logs("api-bulk"), 10, "the batch's access line in api-bulk")
    assert "bulk-pool-single" not in stack.logs("api-bulk")
    assert "bulk-pool-single" in stack.logs("api") and "bulk-pool-batch" not in stack.logs("api")
    # The nice value of every gunicorn process of the bulk pool (its master and workers), read from /proc.
    program = ("import os, pathlib; print(sorted({int((p / 'stat').read_text().rsplit(')', 1)[1].split()[16]) "
               "for p in pathlib.Path('/proc').glob('[0-9]*') if p.name != str(os.getpid()) "
               "and b'POOL=bulk' in (p / 'environ').read_bytes() and b'gunicorn' in (p / 'cmdline').read_bytes()}))")
    niceness = stack.exec("api-bulk", "python", "-c", program)
    assert niceness.stdout.strip() == "[10]", niceness
    # One metrics folder for both, each process's files named after its pool and pid (both count pids from 1).
    files = stack.exec("api-bulk", "ls", "/run/regno/metrics").stdout.split()
    assert any("_main-" in name for name in files) and any("_bulk-" in name for name in files), files


def test_our_containers_run_as_10001(stack):
    """Every service of ours, and the proxy and its exporter, runs as uid 10001, never root."""
    for service in ("api", "api-bulk", "model-syncer", "prediction-sink", "proxy-answers", "proxy", "nginx-exporter"):
        assert stack.user_of(service) == 10001, service


def test_the_api_cannot_write_its_models(stack):
    """The models volume is read-only in the api: only the syncers write verified models there."""
    wrote = stack.exec("api", "touch", "/models/planted")
    assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr


def test_the_team_probabilities_inside_the_image(images, team_model, team_sample, team_expected):
    """The team's model and sample in the api image (CatBoost without its plotting stack) give the team's
    probabilities, as the service's scorer computes them."""
    program = (
        "import csv, json; from model.records import parse_record; from model.scorer import Scorer\n"
        "scorer = Scorer.load('/customer/model.cbm')\n"
        "rows = list(csv.DictReader(open('/customer/sample.csv', encoding='utf-8')))\n"
        "print(json.dumps([scorer.score(parse_record(row))._asdict() for row in rows]))\n"
    )
    done = subprocess.run([docker(), "run", "--rm", "--read-only", "--user", "10001:10001",
                           "-v", f"{team_model}:/customer/model.cbm:ro",
                           "-v", f"{team_model.parent / 'test_data.csv'}:/customer/sample.csv:ro",
                           "regno-api:local", "python", "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)
    assert len(scores) == len(team_expected) == 100
    for index, (score, (negative, positive)) in enumerate(zip(scores, team_expected)):
        assert score["positive"] == pytest.approx(positive, abs=1e-9), index
        assert score["negative"] == pytest.approx(negative, abs=1e-9), index
    # The image holds only what serving imports: no plotting stack, no Parquet or DuckDB, no boto3.
    absent = subprocess.run([docker(), "run", "--rm", "regno-api:local", "python", "-c",
                             "import importlib.util as u; print([m for m in ('matplotlib', 'plotly', 'graphviz', "
                             "'pyarrow', 'duckdb', 'boto3', 'scipy.stats') if u.find_spec(m.split('.')[0]) and "
                             "u.find_spec(m)])"], capture_output=True, text=True, timeout=60)
    assert absent.stdout.strip() == "[]", absent


def test_a_model_published_under_traffic(stack, tmp_path):
    """A model published into the source is served while traffic runs: every answer is wholly one model's (its
    score is that model's for that record), none failed; then a corrupted upload is refused and serving goes on."""
    # v2 differs from v1 in every answer: the bundled model with its raw score shifted by 0.5.
    shifted = CatBoostClassifier()
    shifted.load_model(str(BUNDLED_MODEL))
    scale, bias = shifted.get_scale_and_bias()
    shifted.set_scale_and_bias(scale, bias + 0.5)
    tmp_path.chmod(0o755)
    shifted.save_model(str(tmp_path / "shifted.cbm"))
    (tmp_path / "shifted.cbm").chmod(0o644)
    scorers = {BUNDLED_VERSION: Scorer.load(BUNDLED_MODEL), "regno-shifted-2": Scorer.load(tmp_path / "shifted.cbm")}
    with Traffic(PUBLIC_URL, KEY, "publish", threads=3) as traffic:
        time.sleep(2)
        stack.one_off("model-seed", "regno-model", "publish", "/upload/shifted.cbm", "--version", "regno-shifted-2",
                      "--current", volumes=[f"{tmp_path}:/upload:ro"])
        wait_for(lambda: any(o.model == "regno-shifted-2" for o in traffic.answered()[-20:]), 60, "v2 answers")
        # A corrupted upload: a good publish, its model file damaged in the source, then promoted.
        stack.one_off("model-seed", "sh", "-c", "regno-model publish /upload/shifted.cbm --version regno-broken-3 && "
                      "truncate -s 4096 /srv/published-models/regno-broken-3/model.cbm && "
                      "regno-model promote regno-broken-3", volumes=[f"{tmp_path}:/upload:ro"])
        refused = wait_for(lambda: (_internal_health(stack).get("model_source") or {}).get("last_refused"), 60,
                           "the syncer's refusal in /health")
        time.sleep(4)  # answers keep coming after the refusal
    outcomes = traffic.outcomes
    assert outcomes and all(outcome.status == 200 for outcome in outcomes), \
        {(o.status, o.error) for o in outcomes if o.status != 200}
    assert "regno-broken-3" in json.dumps(refused)
    for outcome in outcomes:
        expected = scorers[outcome.model].score(parse_record(outcome.record)).positive
        assert outcome.positive == pytest.approx(expected, abs=1e-12), (outcome.request_id, outcome.model)
    last = outcomes[-10:]
    assert {outcome.model for outcome in last} == {"regno-shifted-2"}


def test_the_prediction_log_end_to_end(stack):
    """Answers through the proxy become rows through JetStream, prediction-sink and Parquet, read with regno-log
    in the tools image: exactly one row per answer."""
    sent = [_post("/reg/", record, **{"x-request-id": f"e2e-{index}"})
            for index, record in enumerate(simulate_records(200, seed=25))]
    assert all(response.status_code == 200 for response in sent)
    rows = wait_for(lambda: (found := _rows_by_request(stack, "e2e")) and len(found) >= 200 and found, 90,
                    "200 rows in Parquet")
    assert rows == {f"e2e-{index}": 1 for index in range(200)}


def test_prometheus_scrapes_every_target(stack):
    """Prometheus (compose's, with the repo's configuration) has `up` = 1 for each scrape target."""
    def targets() -> dict[str, str] | None:
        found = requests.get(f"{PROMETHEUS_URL}/api/v1/query", params={"query": "up"}, timeout=5).json()
        values = {sample["metric"]["job"]: sample["value"][1] for sample in found["data"]["result"]}
        return values if len(values) == 3 and set(values.values()) == {"1"} else None
    up = wait_for(targets, 60, "up == 1 for all three jobs", every_s=2)
    assert set(up) == {"regno-api", "regno-proxy", "regno-proxy-answers"}


def test_the_load_profile_through_the_proxy(stack, tmp_path):
    """compose's load profile (Locust in its container) at 500 req/s for 30 s through the proxy: no failure."""
    code, summary = stack.load_profile(tmp_path, users=20, seconds=30, LOAD_BAD_SHARE="0")
    assert code == 0, summary
    print(f"\ncompose load profile: {summary['requests']} requests, {summary['rate']:.1f} req/s, "
          f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, {summary['failures']} failures")
    assert summary["failures"] == 0
    assert summary["requests"] >= 500 * 30 * 0.8  # Locust shares the 2 cores with the whole stack
    assert summary["p99_ms"] is not None


def test_stop_under_traffic_answers_what_it_accepted(stack):
    """`docker compose stop` under traffic: every request answered 200 has exactly one row, no request has a row
    without its answer, and none was answered with a 5xx."""
    with Traffic(PUBLIC_URL, KEY, "stop", threads=4) as traffic:
        time.sleep(3)
        stack.run("stop", "--timeout", "60", timeout=240)
    outcomes = traffic.outcomes
    answered = {outcome.request_id for outcome in outcomes if outcome.status == 200}
    assert len(answered) > 50
    assert not [outcome for outcome in outcomes if outcome.status is not None and outcome.status != 200]
    stack.up()
    rows = wait_for(lambda: (found := _rows_by_request(stack, "stop")) and len(found) >= len(answered) and found,
                    90, "a row for every answer")
    assert rows == {request_id: 1 for request_id in answered}


def test_a_killed_api_loses_no_answered_row(stack):
    """SIGKILL to the api container under load, then the stack brought up again: every request that was answered
    has its row (the journal and the spool are on the api's volume)."""
    with Traffic(PUBLIC_URL, KEY, "kill", threads=4) as traffic:
        time.sleep(3)
        subprocess.run([docker(), "kill", "--signal", "KILL", stack.container("api")], check=True,
                       capture_output=True)
        time.sleep(1)
    answered = {outcome.request_id for outcome in traffic.outcomes if outcome.status == 200}
    assert len(answered) > 50
    stack.up()
    rows = wait_for(lambda: (found := _rows_by_request(stack, "kill")) and answered <= set(found) and found,
                    120, "a row for every answered request")
    assert answered <= set(rows)
