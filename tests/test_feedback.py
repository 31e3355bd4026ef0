"""Ground truth: POST /reg/feedback matches labels to logged passes, stores them, and the quality metrics count them."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from loadtest.servers import gunicorn
from model.engine import pick
from model.records import parse_record
from model.registry import CANDIDATE, write_pointer
from model.scorer import Scorer
from service import create_app
from service.predictions.query import connect, rows
from service.predictions.rows import PREDICTIONS
from service.quality.labels import judge, log_loss, parse_label
from service.quality.passes import PassFacts
from model.records import RecordError
from tests.conftest import API_KEY, ApiClient, redis_url
from tests.test_metrics import _samples
from tests.test_model_swap import models_dir, second_model  # noqa: F401 - fixtures
from training.simulate import simulate

QUALITY = ("labelled", "pick_correct", "camera_correct", "ai_correct", "model_correct")


def _facts(**changes) -> PassFacts:
    """A pass the AI read right and the model took the AI's plate for."""
    facts = PassFacts("0123456789abcdef", "r1", time.time(), "v1", "current", 0.8, "А123ВС77", "А123ВС78",
                      "А123ВС77", "afts_regno_ai", None, None, None)
    return facts._replace(**changes)


def test_a_label_is_checked_key_by_key():
    """Each malformed label names what is wrong with it."""
    good = parse_label({"pass_id": "0123456789abcdef", "true_regno": "А123ВС77", "labelled_at": "2026-12-01 10:00:00"})
    assert good.source == "unspecified" and good.labelled_at == 1796119200.0
    for raw, field in [({"true_regno": "А1"}, "pass_id"), ({"pass_id": "x", "true_regno": "А1"}, "pass_id"),
                       ({"pass_id": "0123456789abcdef", "request_id": "r", "true_regno": "А1"}, "pass_id"),
                       ({"pass_id": "0123456789abcdef"}, "true_regno"),
                       ({"pass_id": "0123456789abcdef", "true_regno": "А1_"}, "true_regno"),
                       ({"pass_id": "0123456789abcdef", "true_regno": "А 1"}, "true_regno"),
                       ({"pass_id": "0123456789abcdef", "true_regno": "А1", "source": "Manual Review"}, "source"),
                       ({"pass_id": "0123456789abcdef", "true_regno": "А1", "labelled_at": "yesterday"}, "labelled_at"),
                       ({"pass_id": "0123456789abcdef", "true_regno": "А1", "plate": "А1"}, "plate"),
                       ([], "label")]:
        with pytest.raises(RecordError) as caught:
            parse_label(raw)
        assert caught.value.field == field, raw


def test_the_verdicts_of_a_label():
    """A label judges the answering model and, when shadow scoring ran, the candidate, each by its own pick."""
    facts = _facts(shadow_model="v2", shadow_positive=0.3, shadow_source="regno_recognize")
    answered, shadow = judge(facts, "А123ВС77", 0.5)
    assert (answered.model, answered.arm, answered.ai_correct, answered.pick_correct, answered.camera_correct,
            answered.model_correct) == ("v1", "current", True, True, False, True)
    assert (shadow.model, shadow.arm, shadow.pick_correct, shadow.model_correct) == ("v2", "shadow", False, False)
    assert answered.log_loss == pytest.approx(-__import__("math").log(0.8))
    both_wrong = judge(facts, "Х999ХХ99", 0.5)[0]
    assert not (both_wrong.ai_correct or both_wrong.pick_correct or both_wrong.camera_correct)
    assert both_wrong.model_correct is False  # it took the AI's plate, which was wrong
    assert log_loss(1.0, False) < 40  # clipped: one confident miss stays finite


@pytest.fixture
def logged_app(settings, tmp_path):
    """An app with the prediction log on, its rows in tmp_path."""
    return create_app(replace(settings, prediction_log_dir=tmp_path))


def _flush(app) -> None:
    """Write what the worker's journal holds (and so index it), as the writer does every 50 ms."""
    assert app.extensions["regno"].prediction_log.flush()


def test_labels_join_their_passes_and_every_refusal_is_per_item(logged_app, tmp_path):
    """Accepted, duplicate, unknown, malformed and ambiguous labels each get their result, in order."""
    client = ApiClient(logged_app.test_client())
    passes = simulate(6, seed=7)
    answers = [client.post(json=p.record, headers={"X-Request-ID": f"one-{i}"}) for i, p in enumerate(passes[:4])]
    batch = client.post("/reg/batch", json=[p.record for p in passes[4:]], headers={"X-Request-ID": "a-batch"})
    assert batch.status_code == 200
    _flush(logged_app)
    ids = [answer.get_json()["body"]["pass_id"] for answer in answers]
    assert ids == [answer.headers["X-Pass-Id"] for answer in answers]
    labels = [{"pass_id": ids[0], "true_regno": passes[0].plate, "source": "manual_review"},
              {"request_id": "one-1", "true_regno": passes[1].plate, "labelled_at": "2026-12-01T08:00:00+03:00"},
              {"pass_id": ids[0], "true_regno": passes[0].plate},
              {"pass_id": "ffffffffffffffff", "true_regno": "А1"},
              {"pass_id": ids[2], "true_regno": "bad plate"},
              {"request_id": "a-batch", "true_regno": passes[4].plate},
              {"request_id": "never-sent", "true_regno": "А1"}]
    response = client.post("/reg/feedback", json={"labels": labels})
    assert response.status_code == 200
    body = response.get_json()["body"]
    results = body["results"]
    assert [result["index"] for result in results] == list(range(len(labels)))
    assert [result["status"] for result in results] == ["accepted"] * 2 + ["rejected"] * 5
    assert [result.get("error") for result in results[2:]] == ["duplicate", "unknown_pass", "malformed", "ambiguous",
                                                               "unknown_pass"]
    assert "true_regno" in results[4]["message"] and (body["accepted"], body["rejected"]) == (2, 5)
    for result, p, answer in zip(results[:2], passes, answers):
        assert result["label"] == (p.record["afts_regno_ai"] == p.plate)
        assert result["pick_correct"] == (answer.get_json()["body"]["regno"] == p.plate)
    again = client.post("/reg/feedback", json={"pass_id": ids[1], "true_regno": passes[1].plate})
    assert again.status_code == 409 and again.get_json()["status"] == "fail"  # labelled by its request id above
    samples = _samples(logged_app)
    assert samples[("regno_labels_total", (("result", "accepted"),))] == 2
    assert samples[("regno_labels_total", (("result", "duplicate"),))] == 2
    assert samples[("regno_quality_labelled_total", (("arm", "current"), ("model", "regno-sim-1")))] == 2

    state = logged_app.extensions["regno"]
    _flush(logged_app)
    state.shipper.ship_once()
    stored = rows(connect(tmp_path / "parquet"), "SELECT * FROM labels ORDER BY pass_id")
    assert sorted(row["pass_id"] for row in stored) == sorted(ids[:2])
    by_id = {row["pass_id"]: row for row in stored}
    assert by_id[ids[0]]["label_source"] == "manual_review" and by_id[ids[0]]["true_regno"] == passes[0].plate
    assert by_id[ids[1]]["labelled_at"].timestamp() == 1796101200.0  # 08:00 at +03:00 is 05:00 UTC
    assert by_id[ids[1]]["request_id"] == "one-1" and by_id[ids[1]]["model"] == "regno-sim-1"
    predictions = rows(connect(tmp_path / "parquet"), "SELECT count(*) AS n FROM predictions")[0]["n"]
    assert predictions == 6  # labels live in their own table, not among the predictions


def test_a_label_days_after_its_pass_still_joins(logged_app, tmp_path):
    """A pass answered three days ago is labelled today; one older than LABEL_WINDOW_DAYS is forgotten."""
    state = logged_app.extensions["regno"]
    client = ApiClient(logged_app.test_client())
    p = simulate(1, seed=3)[0]
    client.post(json=p.record)
    _flush(logged_app)
    pass_id = client.post(json=p.record).get_json()["body"]["pass_id"]
    # The log's rows of the pass as they would have been written three and ten days ago.
    row = rows(connect_after_ship(logged_app, tmp_path), "SELECT * FROM predictions LIMIT 1")[0]
    for days, new_id in ((3, pass_id), (10, "00000000000000aa")):
        old = [row["ts"].timestamp() - days * 86400, *[row[name] for name in PREDICTIONS.columns[1:]]]
        old[PREDICTIONS.columns.index("pass_id")] = new_id
        state.pass_index.add_lines(orjson.dumps(old, default=list) + b"\n")
    state.pass_index.remove_older_than(state.settings.label_window_days)
    late = client.post("/reg/feedback", json=[{"pass_id": pass_id, "true_regno": p.plate},
                                              {"pass_id": "00000000000000aa", "true_regno": p.plate}])
    assert [result["status"] for result in late.get_json()["body"]["results"]] == ["accepted", "rejected"]
    _flush(logged_app)
    state.shipper.ship_once()
    stored = rows(connect(tmp_path / "parquet"), "SELECT pass_ts, ts, day FROM labels")
    assert len(stored) == 1
    assert (stored[0]["ts"] - stored[0]["pass_ts"]).days == 3  # filed under the day the label came
    assert str(stored[0]["day"]) == time.strftime("%Y-%m-%d", time.gmtime())


def connect_after_ship(app, tmp_path):
    """The log's DuckDB view once what the worker holds is shipped."""
    _flush(app)
    app.extensions["regno"].shipper.ship_once()
    return connect(tmp_path / "parquet")


def test_feedback_needs_the_log_and_a_key(app, logged_app):
    """Without the prediction log the endpoint says so; without a key it refuses; bad bodies get 400."""
    response = ApiClient(app.test_client()).post("/reg/feedback", json=[])
    assert response.status_code == 404 and "PREDICTION_LOG_DIR" in response.get_json()["body"]
    client = ApiClient(logged_app.test_client())
    assert client.post("/reg/feedback", json=[], key=None).status_code == 401
    assert client.post("/reg/feedback", json="labels").status_code == 400
    assert client.post("/reg/feedback", json={"labels": 5}).status_code == 400
    single = client.post("/reg/feedback", json={"pass_id": "ffffffffffffffff", "true_regno": "А1"})
    assert single.status_code == 422 and "no pass" in single.get_json()["body"]


def _quality(metrics_text: str) -> dict[tuple[str, str, str], float]:
    """regno_quality_* counters from a /metrics page, by (measure, model, arm)."""
    found = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name.startswith("regno_quality_") and sample.name.endswith("_total"):
                measure = sample.name[len("regno_quality_"):-len("_total")]
                found[(measure, sample.labels["model"], sample.labels["arm"])] = sample.value
    return found


@pytest.mark.gunicorn
def test_canary_accuracy_per_model_is_exact_across_workers(models_dir, tmp_path):  # noqa: F811 - fixture
    """Labels for half of the passes answered by v1 and by its canary v2, sent to 2 workers: the metrics per model
    and arm equal the count made here from the answers and the true plates, and the stored labels agree."""
    write_pointer(models_dir, CANDIDATE, "v2")
    env = {"API_KEYS": API_KEY, "MODELS_DIR": str(models_dir), "MODEL_POLL_S": "0.2", "CANARY_SHARE": "0.5",
           "SHADOW_SHARE": "1", "PREDICTION_LOG_DIR": str(tmp_path / "log"), "PREDICTION_LOG_SEGMENT_S": "1"}
    passes = simulate(160, seed=2026)
    candidate = Scorer.load(models_dir / "v2" / "model.cbm")
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2) as server:
        time.sleep(1.0)  # each worker's watcher loads the candidate on its first look
        session = requests.Session()
        session.headers["x-api-key"] = API_KEY
        answers = [session.post(f"{server.base_url}/reg/", json=p.record, timeout=10).json()["body"] for p in passes]
        time.sleep(1.0)  # shadow scores land after the answers; the writers index every 50 ms
        labelled = list(range(0, len(passes), 2))
        expected: Counter = Counter()
        for position in labelled:
            p, answer = passes[position], answers[position]
            arm = "canary" if answer["model"] == "v2" else "current"
            expected["labelled", answer["model"], arm] += 1
            expected["pick_correct", answer["model"], arm] += answer["regno"] == p.plate
            expected["camera_correct", answer["model"], arm] += p.record["regno_recognize"] == p.plate
            expected["ai_correct", answer["model"], arm] += p.record["afts_regno_ai"] == p.plate
            expected["model_correct", answer["model"], arm] += (answer["positive"] >= 0.5) == (p.label == 1)
            if arm == "current":  # SHADOW_SHARE 1: v2 also scored every pass v1 answered
                record = parse_record(p.record)
                shadow = pick(record, candidate.score(record), 0.5)[0]
                expected["labelled", "v2", "shadow"] += 1
                expected["pick_correct", "v2", "shadow"] += shadow == p.plate
        labels = [{"pass_id": answers[position]["pass_id"], "true_regno": passes[position].plate}
                  for position in labelled]
        results = []
        for start in range(0, len(labels), 10):  # many requests, so both workers take labels
            results += session.post(f"{server.base_url}/reg/feedback", json=labels[start:start + 10],
                                    timeout=10).json()["body"]["results"]
        metrics = session.get(f"{server.base_url}/metrics", timeout=10).text
        log = server.output()
    assert {result["status"] for result in results} == {"accepted"}
    assert {answer["model"] for answer in answers} == {"v1", "v2"}
    quality = _quality(metrics)
    for key, count in expected.items():
        assert quality[key] == count, key
    for model, arm in {(model, arm) for _, model, arm in expected}:
        assert quality[("labelled", model, arm)] > 0
    assert "Traceback" not in log
    stored = _wait_for_labels(tmp_path / "log" / "parquet", len(labelled))
    by_arm = rows(stored, "SELECT model, arm, count(*) AS n, count(*) FILTER (WHERE pick_correct) AS right "
                          "FROM labels GROUP BY ALL")
    for row in by_arm:
        assert row["n"] == expected["labelled", row["model"], row["arm"]]
        assert row["right"] == expected["pick_correct", row["model"], row["arm"]]


def _wait_for_labels(root, count: int, seconds: float = 30.0):
    """The log's DuckDB connection once count labels are in its Parquet files."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection = connect(root)
            if rows(connection, "SELECT count(*) AS n FROM labels")[0]["n"] >= count:
                return connection
        except FileNotFoundError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} labels reached {root} in {seconds} s")


def test_replicas_sharing_a_redis_pass_index_take_each_others_labels(settings, tmp_path, redis_server):
    """Two replicas (own spools) with one Redis pass index: a pass answered by one is labelled through the other."""
    shared = replace(settings, pass_index_url=redis_url(redis_server), cache_prefix=f"t{time.monotonic_ns()}:")
    first = create_app(replace(shared, prediction_log_dir=tmp_path / "a"))
    second = create_app(replace(shared, prediction_log_dir=tmp_path / "b"))
    p = simulate(1, seed=5)[0]
    answer = ApiClient(first.test_client()).post(json=p.record, headers={"X-Request-ID": "on-a"})
    _flush(first)
    via_second = ApiClient(second.test_client())
    taken = via_second.post("/reg/feedback", json={"request_id": "on-a", "true_regno": p.plate})
    assert taken.status_code == 200, taken.get_json()
    result = taken.get_json()["body"]["results"][0]
    assert result["pass_id"] == answer.get_json()["body"]["pass_id"] and result["model"] == "regno-sim-1"
    again = ApiClient(first.test_client()).post("/reg/feedback",
                                                json={"pass_id": result["pass_id"], "true_regno": p.plate})
    assert again.status_code == 409
    index = second.extensions["regno"].pass_index
    assert index.client.ttl(f"{shared.cache_prefix}pass:{result['pass_id']}") > 6 * 86400  # LABEL_WINDOW_DAYS


def test_an_unreachable_pass_index_answers_try_again(settings, tmp_path):
    """With the index's Redis away, a label is refused as not_stored (503 alone), and nothing counts as accepted."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path, pass_index_url="redis://127.0.0.1:9/0"))
    client = ApiClient(app.test_client())
    single = client.post("/reg/feedback", json={"pass_id": "0123456789abcdef", "true_regno": "А1"})
    assert single.status_code == 503 and "send it again" in single.get_json()["body"]
    batch = client.post("/reg/feedback", json=[{"pass_id": "0123456789abcdef", "true_regno": "А1"}, {"x": 1}])
    assert [result["error"] for result in batch.get_json()["body"]["results"]] == ["not_stored", "malformed"]
    assert _samples(app)[("regno_labels_total", (("result", "accepted"),))] == 0


def test_a_full_spool_drops_rows_but_keeps_labels(settings, tmp_path):
    """Past PREDICTION_LOG_SPOOL_MAX_BYTES prediction rows are dropped and counted; an accepted label is kept."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path, prediction_log_spool_max_bytes=3000))
    client = ApiClient(app.test_client())
    passes = simulate(12, seed=21)
    first = client.post(json=passes[0].record).get_json()["body"]["pass_id"]
    _flush(app)
    for p in passes[1:]:
        client.post(json=p.record)
        _flush(app)
    assert _samples(app)[("regno_prediction_log_rows_total", (("outcome", "dropped_spool_full"),))] > 0
    assert client.post("/reg/feedback", json={"pass_id": first, "true_regno": passes[0].plate}).status_code == 200
    _flush(app)
    spooled = b"".join(path.read_bytes() for path in (tmp_path / "spool").glob("seg-*"))
    assert spooled.count(b'["label",') == 1 and first.encode() in spooled
