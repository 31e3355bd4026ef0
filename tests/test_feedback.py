"""Ground truth: POST /reg/feedback matches labels to logged passes, stores them, and the quality metrics count them."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from config import key_name
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
from tests.conftest import API_KEY, KEYS_ENV, LABEL_KEY, LABEL_KEY_NAME, ApiClient, redis_url
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
                       ({"pass_id": "0123456789abcdef", "true_regno": "А1", "correction": "yes"}, "correction"),
                       ({"pass_id": "0123456789abcdef", "true_regno": "А\u202e1"}, "true_regno"),
                       ([], "label")]:
        with pytest.raises(RecordError) as caught:
            parse_label(raw)
        assert caught.value.field == field, raw


def test_the_verdicts_of_a_label():
    """A label judges the answering model and, when shadow scoring ran, the candidate, each by its own pick."""
    facts = _facts(shadow_model="v2", shadow_positive=0.3, shadow_source="regno_recognize")
    answered, shadow = judge(facts, "А123ВС77", lambda model: 0.5)
    assert (answered.model, answered.arm, answered.ai_correct, answered.pick_correct, answered.camera_correct,
            answered.model_correct) == ("v1", "current", True, True, False, True)
    assert (shadow.model, shadow.arm, shadow.pick_correct, shadow.model_correct) == ("v2", "shadow", False, False)
    assert answered.log_loss == pytest.approx(-__import__("math").log(0.8))
    both_wrong = judge(facts, "Х999ХХ99", lambda model: 0.5)[0]
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
    # Found a minute ago, written at +03:00: after its pass, within LABEL_CLOCK_SKEW_S.
    found_at = datetime.now(timezone(timedelta(hours=3))).replace(microsecond=0) - timedelta(minutes=1)
    labels = [{"pass_id": ids[0], "true_regno": passes[0].plate, "source": "manual_review"},
              {"request_id": "one-1", "true_regno": passes[1].plate, "labelled_at": found_at.isoformat()},
              {"pass_id": ids[0], "true_regno": passes[0].plate},
              {"pass_id": "ffffffffffffffff", "true_regno": "А1"},
              {"pass_id": ids[2], "true_regno": "bad plate"},
              {"request_id": "a-batch", "true_regno": passes[4].plate},
              {"request_id": "never-sent", "true_regno": "А1"}]
    response = client.label({"labels": labels})
    assert response.status_code == 200
    body = response.get_json()["body"]
    results = body["results"]
    assert [result["index"] for result in results] == list(range(len(labels)))
    assert [result["status"] for result in results] == ["accepted"] * 2 + ["rejected"] * 5
    assert [result.get("error") for result in results[2:]] == ["duplicate", "unknown_pass", "malformed", "ambiguous",
                                                               "unknown_pass"]
    assert "true_regno" in results[4]["message"] and (body["accepted"], body["rejected"]) == (2, 5)
    # An answer says a label was taken, not what it said of the plates: no oracle for guessed plates.
    assert {key for result in results[:2] for key in result} == {"index", "status", "pass_id", "model", "arm",
                                                                 "label_id"}
    again = client.label({"pass_id": ids[1], "true_regno": passes[1].plate})
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
    assert by_id[ids[1]]["labelled_at"].timestamp() == found_at.timestamp()  # the offset is honoured
    assert by_id[ids[1]]["request_id"] == "one-1" and by_id[ids[1]]["model"] == "regno-sim-1"
    for position, (p, answer) in enumerate(zip(passes[:2], answers)):
        row = by_id[ids[position]]
        assert row["label"] == (p.record["afts_regno_ai"] == p.plate)
        assert row["pick_correct"] == (answer.get_json()["body"]["regno"] == p.plate)
        assert row["label_id"] == results[position]["label_id"] and row["corrects"] is None
        assert (row["key_name"], row["scored_by"]) == (LABEL_KEY_NAME, key_name(API_KEY))
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
    late = client.label([{"pass_id": pass_id, "true_regno": p.plate},
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
    response = ApiClient(app.test_client()).label([])
    assert response.status_code == 404 and "PREDICTION_LOG_DIR" in response.get_json()["body"]
    client = ApiClient(logged_app.test_client())
    assert client.label([], key=None).status_code == 401
    assert client.label("labels").status_code == 400
    assert client.label({"labels": 5}).status_code == 400
    single = client.label({"pass_id": "ffffffffffffffff", "true_regno": "А1"})
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
    env = {**KEYS_ENV, "MODELS_DIR": str(models_dir), "MODEL_POLL_S": "0.2", "CANARY_SHARE": "0.5",
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
                                    headers={"x-api-key": LABEL_KEY}, timeout=10).json()["body"]["results"]
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
    taken = via_second.label({"request_id": "on-a", "true_regno": p.plate})
    assert taken.status_code == 200, taken.get_json()
    result = taken.get_json()["body"]["results"][0]
    assert result["pass_id"] == answer.get_json()["body"]["pass_id"] and result["model"] == "regno-sim-1"
    again = ApiClient(first.test_client()).label({"pass_id": result["pass_id"], "true_regno": p.plate})
    assert again.status_code == 409
    index = second.extensions["regno"].pass_index
    assert index.client.ttl(f"{shared.cache_prefix}pass:{result['pass_id']}") > 6 * 86400  # LABEL_WINDOW_DAYS


def test_an_unreachable_pass_index_answers_try_again(settings, tmp_path):
    """With the index's Redis away, a label is refused as not_stored (503 alone), and nothing counts as accepted."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path, pass_index_url="redis://127.0.0.1:9/0"))
    client = ApiClient(app.test_client())
    single = client.label({"pass_id": "0123456789abcdef", "true_regno": "А1"})
    assert single.status_code == 503 and "send it again" in single.get_json()["body"]
    batch = client.label([{"pass_id": "0123456789abcdef", "true_regno": "А1"}, {"x": 1}])
    assert [result["error"] for result in batch.get_json()["body"]["results"]] == ["not_stored", "malformed"]
    assert _samples(app)[("regno_labels_total", (("result", "accepted"),))] == 0


def test_a_full_spool_drops_rows_but_keeps_labels(settings, tmp_path):
    """Past PREDICTION_LOG_SPOOL_MAX_BYTES prediction rows are dropped and counted; an accepted label is kept."""
    from service.predictions.rows import batch_bytes
    from service.predictions.spool import journal_bytes

    # The smallest cap log_setup allows, a whole journal: one row kept for /reg/, and batches of one record of 1 kB.
    small = replace(settings, prediction_log_dir=tmp_path, prediction_log_queue_size=1, batch_request_max_records=1,
                    batch_request_max_bytes=1024)
    app = create_app(replace(small, prediction_log_spool_max_bytes=journal_bytes(1, batch_bytes(1, 1024))))
    client = ApiClient(app.test_client())
    passes = simulate(12, seed=21)
    first = client.post(json=passes[0].record).get_json()["body"]["pass_id"]
    _flush(app)
    for p in passes[1:]:
        client.post(json=p.record)
        _flush(app)
    assert _samples(app)[("regno_prediction_log_rows_total", (("outcome", "dropped_spool_full"),))] > 0
    assert client.label({"pass_id": first, "true_regno": passes[0].plate}).status_code == 200
    _flush(app)
    spooled = b"".join(path.read_bytes() for path in (tmp_path / "spool").glob("seg-*"))
    assert spooled.count(b'["label",') == 1 and first.encode() in spooled


def _pass(app, seed: int) -> tuple[dict, object]:
    """Score one simulated pass through app and index it: (its answer's body, the simulated pass)."""
    p = simulate(1, seed=seed)[0]
    body = ApiClient(app.test_client()).post(json=p.record).get_json()["body"]
    _flush(app)
    return body, p


def test_only_label_keys_label_and_label_keys_do_not_score(logged_app, record):
    """A scoring key gets 403 on POST /reg/feedback, in the envelope; a label key gets 403 on the scoring routes."""
    client = ApiClient(logged_app.test_client())
    answer, p = _pass(logged_app, seed=31)
    refused = client.post("/reg/feedback", json={"pass_id": answer["pass_id"], "true_regno": p.plate})
    assert refused.status_code == 403 and refused.get_json()["status"] == "fail"
    assert "label key" in refused.get_json()["body"]
    for path in ("/reg/", "/reg/batch", "/reg/explain"):
        scored = client.post(path, json=[record] if path.endswith("batch") else record, key=LABEL_KEY)
        assert scored.status_code == 403 and "label key" in scored.get_json()["body"], path
    assert client.label({"pass_id": answer["pass_id"], "true_regno": p.plate}, key="not-a-key").status_code == 401
    assert client.label({"pass_id": answer["pass_id"], "true_regno": p.plate}).status_code == 200


class _Lines(logging.Handler):
    """The service logger's lines, kept for a test."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_without_a_label_key_start_up_says_so_and_labels_get_403(settings, tmp_path):
    """No LABEL_API_KEYS: one start-up line says POST /reg/feedback refuses labels, and it does, with 403."""
    lines = _Lines()
    logger = logging.getLogger("regno")
    logger.addHandler(lines)
    try:
        app = create_app(replace(settings, label_api_keys=(), prediction_log_dir=tmp_path))
        create_app(replace(settings, prediction_log_dir=tmp_path / "with-keys"))
    finally:
        logger.removeHandler(lines)
    said = [line for line in lines.lines if "LABEL_API_KEYS" in line]
    assert len(said) == 1 and "403" in said[0]  # and nothing when a label key is set
    answer, p = _pass(app, seed=32)
    client = ApiClient(app.test_client())
    refused = client.label({"pass_id": answer["pass_id"], "true_regno": p.plate}, key=API_KEY)
    assert refused.status_code == 403 and "no label key is configured" in refused.get_json()["body"]
    assert client.label({"pass_id": answer["pass_id"], "true_regno": p.plate}).status_code == 401  # not a key here


def test_labelled_at_is_neither_in_the_future_nor_before_its_pass(logged_app):
    """labelled_at past LABEL_CLOCK_SKEW_S (300 s) ahead of now, or before the pass was answered, gets 400 naming it."""
    client = ApiClient(logged_app.test_client())
    answer, p = _pass(logged_app, seed=33)
    now = datetime.now(timezone.utc)
    for moment, refused in ((now + timedelta(hours=1), "in the future"), ("9999-12-31 23:59:59", "in the future"),
                            (now - timedelta(days=1), "before its pass")):
        text = moment if isinstance(moment, str) else moment.strftime("%Y-%m-%d %H:%M:%S")
        response = client.label({"pass_id": answer["pass_id"], "true_regno": p.plate, "labelled_at": text})
        assert response.status_code == 400, text
        assert response.get_json()["body"].startswith("labelled_at: ") and refused in response.get_json()["body"]
    within_skew = (now + timedelta(seconds=60)).strftime("%Y-%m-%d %H:%M:%S")
    taken = client.label({"pass_id": answer["pass_id"], "true_regno": p.plate, "labelled_at": within_skew})
    assert taken.status_code == 200


@pytest.mark.parametrize("plate", ["А123\u202eВС77", "А123\u2066ВС77", "\u200fА123ВС77", "А123\u200bВС77",
                                   "А123\x85ВС77", "А123\x9bВС77", "А123ВС\U000e004177"])
def test_plates_in_labels_refuse_control_and_format_characters(logged_app, plate):
    """A true plate with a bidi override, an isolate, a mark, a zero-width or a control character: 400 naming it."""
    answer, _ = _pass(logged_app, seed=34)
    response = ApiClient(logged_app.test_client()).label({"pass_id": answer["pass_id"], "true_regno": plate})
    assert response.status_code == 400 and response.get_json()["body"].startswith("true_regno: must not contain")


def _net(samples: dict, measure: str, model: str = "regno-sim-1", arm: str = "current") -> float:
    """A quality counter less what corrections retracted from it, as the recording rules compute it."""
    counted = samples[(f"regno_quality_{measure}_total", (("arm", arm), ("model", model)))]
    return counted - samples[("regno_quality_retracted_total", (("arm", arm), ("measure", measure), ("model", model)))]


def _check_a_correction(app) -> tuple[dict, dict, dict]:
    """Label a pass wrongly, refuse a second label, correct it, refuse a correction of an unlabelled pass."""
    client = ApiClient(app.test_client())
    answer, p = _pass(app, seed=35)
    unlabelled, _ = _pass(app, seed=36)
    first = client.label({"pass_id": answer["pass_id"], "true_regno": "Ж000ЖЖ00"})
    assert first.status_code == 200
    second = client.label({"pass_id": answer["pass_id"], "true_regno": answer["regno"]})
    assert second.status_code == 409 and '"correction": true' in second.get_json()["body"]
    corrected = client.label({"pass_id": answer["pass_id"], "true_regno": answer["regno"], "correction": True})
    assert corrected.status_code == 200, corrected.get_json()
    nothing = client.label({"pass_id": unlabelled["pass_id"], "true_regno": answer["regno"], "correction": True})
    assert nothing.status_code == 409 and "no label to correct" in nothing.get_json()["body"]
    first_result, result = first.get_json()["body"]["results"][0], corrected.get_json()["body"]["results"][0]
    assert result["corrects"] == first_result["label_id"] != result["label_id"]
    samples = _samples(app)
    # The pass counts once, with its final label's verdict: its pick (wrong by the first label) was right.
    assert (_net(samples, "labelled"), _net(samples, "pick_correct")) == (1, 1)
    assert _net(samples, "ai_correct") == (p.record["afts_regno_ai"] == answer["regno"])
    for result_name, count in (("accepted", 1), ("corrected", 1), ("duplicate", 1), ("uncorrectable", 1)):
        assert samples[("regno_labels_total", (("result", result_name),))] == count, result_name
    return answer, first_result, result


def test_a_correction_replaces_the_verdict_and_keeps_both_rows(logged_app, tmp_path):
    """A correction (SQLite index) is counted once in the metrics; both label rows stay, the second names the first."""
    answer, first, second = _check_a_correction(logged_app)
    stored = rows(connect_after_ship(logged_app, tmp_path),
                  "SELECT true_regno, pick_correct, label_id, corrects, key_name FROM labels ORDER BY ts")
    assert [(row["true_regno"], row["pick_correct"]) for row in stored] == [("Ж000ЖЖ00", False),
                                                                          (answer["regno"], True)]
    assert [(row["label_id"], row["corrects"]) for row in stored] == [(first["label_id"], None),
                                                                      (second["label_id"], first["label_id"])]
    assert {row["key_name"] for row in stored} == {LABEL_KEY_NAME}


def test_a_correction_through_a_redis_pass_index(settings, tmp_path, redis_server):
    """The same with the replicas' Redis index: the mark is swapped at once and keeps its expiry."""
    shared = replace(settings, pass_index_url=redis_url(redis_server), cache_prefix=f"c{time.monotonic_ns()}:",
                     prediction_log_dir=tmp_path)
    app = create_app(shared)
    answer, _, _ = _check_a_correction(app)
    client = app.extensions["regno"].pass_index.client
    assert 6 * 86400 < client.ttl(f"{shared.cache_prefix}labelled:{answer['pass_id']}") <= 7 * 86400


def test_an_index_file_from_before_marks_and_key_names_is_upgraded(settings, tmp_path):
    """A passes.sqlite an older version made gains its new columns when opened: its passes are still found and
    labelled, and a pass it marked labelled (with no mark to take back) is refused a correction, 409."""
    old = sqlite3.connect(tmp_path / "passes.sqlite")
    old.executescript("""
        CREATE TABLE passes (pass_id TEXT PRIMARY KEY, request_id TEXT, ts REAL, model TEXT, arm TEXT, positive REAL,
            ai TEXT, camera TEXT, regno TEXT, source TEXT, shadow_model TEXT, shadow_positive REAL,
            shadow_source TEXT) WITHOUT ROWID;
        CREATE TABLE labelled (pass_id TEXT PRIMARY KEY, ts REAL) WITHOUT ROWID;""")
    now = time.time()
    for pass_id in ("00000000000000a1", "00000000000000a2"):
        old.execute("INSERT INTO passes VALUES (?, 'r', ?, 'regno-sim-1', 'current', 0.8, 'А123ВС77', 'А123ВС78', "
                    "'А123ВС77', 'afts_regno_ai', NULL, NULL, NULL)", (pass_id, now))
    old.execute("INSERT INTO labelled VALUES ('00000000000000a1', ?)", (now,))
    old.commit()
    old.close()
    client = ApiClient(create_app(replace(settings, prediction_log_dir=tmp_path)).test_client())
    refused = client.label({"pass_id": "00000000000000a1", "true_regno": "А123ВС77", "correction": True})
    assert refused.status_code == 409 and "older version" in refused.get_json()["body"]
    assert client.label({"pass_id": "00000000000000a1", "true_regno": "А123ВС77"}).status_code == 409
    taken = client.label({"pass_id": "00000000000000a2", "true_regno": "А123ВС78"})
    assert taken.status_code == 200, taken.get_json()
    corrected = client.label({"pass_id": "00000000000000a2", "true_regno": "А123ВС77", "correction": True})
    assert corrected.status_code == 200 and corrected.get_json()["body"]["results"][0]["corrects"]


def test_a_label_sent_right_after_its_answer_is_never_unknown(tmp_path):
    """Each of 20 passes labelled the moment its answer arrives (by pass id, then one by request id), well inside
    the 50 ms before the log's writer indexes it, across 3 workers: every label is accepted, none unknown."""
    env = {**KEYS_ENV, "PREDICTION_LOG_DIR": str(tmp_path / "log")}
    passes = simulate(21, seed=27)
    with gunicorn(env, tmp_path / "gunicorn.log", workers=3) as server:
        scoring, labelling = requests.Session(), requests.Session()
        scoring.headers["x-api-key"], labelling.headers["x-api-key"] = API_KEY, LABEL_KEY
        results = []
        for number, p in enumerate(passes):
            request_id = f"right-after-{number}"
            answer = scoring.post(f"{server.base_url}/reg/", json=p.record, timeout=10,
                                  headers={"X-Request-ID": request_id}).json()["body"]
            named = {"request_id": request_id} if number == 20 else {"pass_id": answer["pass_id"]}
            results.append(labelling.post(f"{server.base_url}/reg/feedback", json={**named, "true_regno": p.plate},
                                          timeout=10))
    refused = [response.text for response in results if response.status_code != 200]
    assert not refused, refused
    assert {response.json()["body"]["results"][0]["status"] for response in results} == {"accepted"}
