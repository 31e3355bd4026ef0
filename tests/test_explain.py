"""POST /reg/explain: exact SHAP contributions, the same answer and model as /reg/, and nothing left on /reg/'s path."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import numpy as np
import orjson
import pytest

from config import DEVELOPMENT_KEY, Settings
from loadtest.servers import ROOT
from model import BUNDLED_MODEL
from model.explain import explain, json_safe, ranked
from model.records import canonical_bytes, parse_record
from model.routing import pass_digest, pass_key
from model.scorer import PROBE_RECORD
from service import create_app
from tests.conftest import PASS_ID_SECRET, ApiClient, readme_curl
from tests.test_metrics import _samples
from tests.test_model_swap import models_dir, second_model, with_candidate  # noqa: F401 - fixtures
from tests.test_parity import team_scorer  # noqa: F401 - fixture

#: Keys of the /reg/ answer, which explain's answer starts with.
ANSWER_KEYS = ("positive", "negative", "regno", "source", "model", "threshold", "pass_id")
#: How far apart float sums in different orders may land.
ROUNDING = 1e-9
#: The scoring metrics: /reg/ moves them, explain must not.
SCORING_SAMPLES = ("regno_cache_lookups_total", "regno_validation_failures_total", "regno_inference_seconds_count",
                   "regno_features_seconds_count", "regno_picks_total", "regno_positive_score_count")


def _sigmoid(raw: float) -> float:
    """The probability of log-odds raw."""
    return 1.0 / (1.0 + math.exp(-raw))


def _explain(client: ApiClient, record: dict, query: str = "", **kwargs):
    """POST a record to /reg/explain with a query string."""
    return client.post(f"/reg/explain{query}", json=record, **kwargs)


def _check_adds_up(body: dict) -> None:
    """expected_value + every contribution is raw_score, sigmoid(raw_score) is positive, and the listing is sorted."""
    contributions = [item["contribution"] for item in body["contributions"]]
    assert body["expected_value"] + math.fsum(contributions) + body["other"] == pytest.approx(
        body["raw_score"], abs=ROUNDING)
    assert _sigmoid(body["raw_score"]) == pytest.approx(body["positive"], abs=1e-12)
    assert body["positive"] + body["negative"] == pytest.approx(1.0)
    magnitudes = [abs(value) for value in contributions]
    assert magnitudes == sorted(magnitudes, reverse=True)


def _scoring_samples(app) -> dict:
    """The scoring metrics' samples, by name and labels."""
    return {key: value for key, value in _samples(app).items() if key[0].startswith(SCORING_SAMPLES)}


@pytest.fixture
def fresh(settings):
    """A new app, so its cache and counts start empty."""
    app = create_app(settings)
    return app, ApiClient(app.test_client())


def test_contributions_add_up_for_the_bundled_model(client, app, record, simulated_records):
    """Every feature listed with ?top=all: they and the base value make the raw score, whose sigmoid is positive."""
    names = app.extensions["regno"].scorer.feature_names
    for sent in [record, PROBE_RECORD, *simulated_records]:
        response = _explain(client, sent, "?top=all")
        assert response.status_code == 200 and response.mimetype == "application/json"
        envelope = orjson.loads(response.data)
        assert envelope["status"] == "ok"
        body = envelope["body"]
        assert list(body) == [*ANSWER_KEYS, "raw_score", "expected_value", "contributions", "other", "features"]
        assert body["features"] == len(names) == len(body["contributions"])
        assert sorted(item["feature"] for item in body["contributions"]) == sorted(names)
        assert body["other"] == 0.0
        _check_adds_up(body)
    values = {item["feature"]: item["value"] for item in body["contributions"]}
    assert values["foreign_sym"] is None  # NaN in the vector, null in JSON


def test_contributions_add_up_for_the_team_model_on_their_sample(settings, team_model, team_sample, team_scorer):
    """The team's model, every row of their sample (CSV strings): exact sums, and the scores /reg/ gives."""
    client = ApiClient(create_app(replace(settings, model_path=team_model)).test_client())
    for index, row in enumerate(team_sample):
        response = _explain(client, row, "?top=all")
        assert response.status_code == 200, f"row {index}: {response.data!r}"
        body = response.get_json()["body"]
        _check_adds_up(body)
        answer = client.post(json=row).get_json()["body"]
        assert {key: body[key] for key in ANSWER_KEYS} == answer, f"row {index}"
        direct = explain(team_scorer, parse_record(row))
        assert direct.score == team_scorer.score(parse_record(row)), f"row {index}"
        shap = [item.contribution for item in direct.contributions]
        assert direct.expected_value + math.fsum(shap) == pytest.approx(direct.raw_score, abs=ROUNDING), f"row {index}"


def test_answer_is_the_answer_reg_gives(client, record, simulated_records):
    """positive, negative, regno, source, model and pass_id are exactly /reg/'s for the same record."""
    for sent in [record, *simulated_records]:
        body = _explain(client, sent).get_json()["body"]
        assert {key: body[key] for key in ANSWER_KEYS} == client.post(json=sent).get_json()["body"]
        assert body["pass_id"] == pass_digest(canonical_bytes(parse_record(sent)), pass_key(PASS_ID_SECRET)).hex()


def test_threshold_decides_the_pick_as_on_reg(settings, record):
    """The pick follows PICK_THRESHOLD, as /reg/'s does."""
    for threshold, source in ((0.0, "afts_regno_ai"), (1.0, "regno_recognize")):
        client = ApiClient(create_app(replace(settings, pick_threshold=threshold)).test_client())
        body = _explain(client, record).get_json()["body"]
        assert (body["source"], body["regno"]) == (source, record[source])


def test_top_default_three_and_all(client, record):
    """Ten by default, ?top=3 the three largest, ?top=all every feature; other holds the rest's sum."""
    every = _explain(client, record, "?top=all").get_json()["body"]
    default = _explain(client, record).get_json()["body"]
    three = _explain(client, record, "?top=3").get_json()["body"]
    assert (len(default["contributions"]), len(three["contributions"])) == (10, 3)
    assert default["contributions"] == every["contributions"][:10]
    assert three["contributions"] == every["contributions"][:3]
    rest = math.fsum(item["contribution"] for item in every["contributions"][3:])
    assert three["other"] == pytest.approx(rest, abs=ROUNDING)
    for body in (default, three):
        _check_adds_up(body)
        assert {key: body[key] for key in ANSWER_KEYS} == {key: every[key] for key in ANSWER_KEYS}
    assert len(_explain(client, record, f"?top={every['features']}").get_json()["body"]["contributions"]) == 41


@pytest.mark.parametrize("top", ["0", "42", "-1", "abc", "", "3.5", "ALL", "\u0663", "1e1", " 3"])
def test_bad_top_is_400_in_the_envelope(client, record, top):
    """A top that is not 1..features or "all" is refused, saying what it accepts."""
    response = client.post("/reg/explain", json=record, query_string={"top": top})
    assert response.status_code == 400
    envelope = orjson.loads(response.data)
    assert envelope["status"] == "fail" and "top must be" in envelope["body"]


@pytest.mark.parametrize("key", [None, "", "wrong"])
def test_no_key_or_a_wrong_one_is_401(client, record, key):
    """explain needs a key, like /reg/."""
    response = _explain(client, record, key=key)
    assert response.status_code == 401
    envelope = orjson.loads(response.data)
    assert envelope["status"] == "fail" and "x-api-key" in envelope["body"]


def test_bad_bodies_get_the_reg_failures(client, record):
    """A bad field is a 400 naming it; a body that is no object a 400; another content type a 415."""
    for field, value in (("direction", 7), ("time_check", "noon"), ("afts_regno_ai", "")):
        response = _explain(client, dict(record, **{field: value}))
        assert response.status_code == 400
        assert response.get_json() == client.post(json=dict(record, **{field: value})).get_json()
        assert response.get_json()["body"].startswith(f"{field}: ")
    missing = {key: value for key, value in record.items() if key != "camera_class"}
    assert _explain(client, missing).get_json()["body"].startswith("camera_class: ")
    assert client.post("/reg/explain", json=[record]).status_code == 400
    assert client.post("/reg/explain", data=b"{", content_type="application/json").status_code == 400
    assert client.post("/reg/explain", json=record, content_type="text/plain").status_code == 415
    double = client.post("/reg/explain", data=orjson.dumps(orjson.dumps(record).decode()))
    assert double.get_json() == _explain(client, record).get_json()  # old clients' double encoding, as on /reg/


def test_canary_explains_with_the_model_reg_names(with_candidate):
    """With a candidate at a 30% canary share, each pass is explained by the model /reg/ answers it with."""
    from training.simulate import simulate_records

    client = ApiClient(with_candidate.test_client())
    models = set()
    for sent in simulate_records(40, seed=31):
        body = _explain(client, sent, "?top=all").get_json()["body"]
        answer = client.post(json=sent).get_json()["body"]
        assert {key: body[key] for key in ANSWER_KEYS} == answer
        _check_adds_up(body)
        models.add(body["model"])
    assert models == {"v1", "v2"}  # both arms were explained, each by its own model


def test_explain_leaves_nothing_in_the_cache_or_the_scoring_metrics(fresh, record):
    """Explaining a pass neither fills /reg/'s cache nor counts as scoring; /reg/ still misses first."""
    app, client = fresh
    before = _scoring_samples(app)
    for query in ("", "?top=all", "?top=3"):
        first, again = _explain(client, record, query), _explain(client, record, query)
        assert first.status_code == again.status_code == 200
        assert "X-Cache" not in first.headers and "X-Pass-Id" not in first.headers
    assert _explain(client, dict(record, direction=7)).status_code == 400
    assert _scoring_samples(app) == before
    assert client.post(json=dict(record, direction=7)).status_code == 400
    assert _samples(app)[("regno_validation_failures_total", (("field", "direction"),))] == 1  # /reg/'s is counted
    assert client.post(json=record).headers["X-Cache"] == "miss"
    assert client.post(json=record).headers["X-Cache"] == "hit-l1"
    assert _explain(client, record).status_code == 200  # answered by the model, not from /reg/'s cache


def test_explain_writes_no_prediction_log_row(settings, tmp_path, record, monkeypatch):
    """Neither a good nor a bad record sent to explain reaches the prediction log."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path))
    rows = []
    monkeypatch.setattr(app.extensions["regno"].prediction_log, "log", rows.append)
    client = ApiClient(app.test_client())
    assert _explain(client, record).status_code == 200
    assert _explain(client, dict(record, direction=7)).status_code == 400
    assert rows == []
    assert client.post(json=record).status_code == 200
    assert len(rows) == 1  # /reg/ does log, through the same attribute


def test_explain_function_checks_top_and_is_deterministic(record):
    """The pure function: top outside 1..features is a ValueError; the same record explains the same way twice."""
    from model.scorer import Scorer

    scorer = Scorer.load(BUNDLED_MODEL)
    parsed = parse_record(record)
    for top in (0, 42, -3):
        with pytest.raises(ValueError, match="top must be between 1 and 41"):
            explain(scorer, parsed, top)
    assert explain(scorer, parsed, 5) == explain(scorer, parsed, 5)
    assert len(explain(scorer, parsed).contributions) == 41


def test_helpers():
    """json_safe makes NaN and infinities null and numpy scalars plain; ranked keeps ties in feature order."""
    assert [json_safe(value) for value in (float("nan"), float("inf"), np.float64(0.5), np.int64(3), "А 1", 2)] == [
        None, None, 0.5, 3, "А 1", 2]
    assert type(json_safe(np.float64(0.5))) is float
    assert ranked([0.1, -0.3, 0.0, 0.3, -0.1]) == [1, 3, 0, 4, 2]


def test_the_readme_example_is_what_the_bundled_model_answers():
    """The README's explain answer is the one `make run` (development mode: its documented key and pass-id secret)
    gives with the bundled model for the README's curl record, to the digit."""
    record, _ = readme_curl()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"^```json\n(\{\"body\":\{[^\n]*\"raw_score\".*?)\n```", text, re.M | re.S)
    assert shown, "the README lost its explain answer"
    client = ApiClient(create_app(Settings(env="development", model_path=BUNDLED_MODEL)).test_client())
    assert _explain(client, record, "?top=3", key=DEVELOPMENT_KEY).get_json() == json.loads(shown.group(1))
