"""regno-report: a simulated day of traffic with labels gives one self-contained page whose numbers are exact."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from catboost import CatBoostClassifier

from loadtest.report_screenshot import (CHROMIUM, CHROMIUM_ARGS, flush_log, post_closed, publish_models, simulated_day,
                                       window_options)
from model import BUNDLED_MODEL
from model.engine import pick
from model.evaluation import roc_auc
from model.profile import METADATA_KEY
from model.records import parse_record
from model.registry import load_folder
from service import create_app
from service.report.data import anchor, top_shifts
from service.report.main import default_out, main, window_of
from service.report.references import NO_PROFILE, References, parse_model_option
from service.report.verdict import MIN_PASSES, Paired, mcnemar_p, percent, verdict
from tests.conftest import LABEL_KEY
from tests.test_model_swap import second_model  # noqa: F401 - fixture

#: What every page has: the summary, its verdicts and table, the candidates, the arms, the drift.
SECTIONS = ("summary", "verdicts", "models", "summary-table", "candidates", "arms", "drift", "glossary")
ARMS = (("v1", "current"), ("v2", "canary"), ("v2", "shadow"))
IMAGE = re.compile(r'<img src="data:image/png;base64,[A-Za-z0-9+/]+=*"')


class _Rows(HTMLParser):
    """The text of each table cell, by the id of its row, and every element id."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.ids: set[str] = set()
        self._row: str | None = None

    def handle_starttag(self, tag, attrs):
        """Note ids; open a row or a cell."""
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "tr":
            self._row = attributes.get("id")
            if self._row:
                self.rows[self._row] = []
        elif tag == "td" and self._row:
            self.rows[self._row].append("")
        elif tag == "br" and self._row and self.rows[self._row]:
            self.rows[self._row][-1] += " "

    def handle_endtag(self, tag):
        """Close a row."""
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        """Add text to the open cell."""
        if self._row and self.rows[self._row]:
            self.rows[self._row][-1] += data


def _parsed(html: str) -> _Rows:
    """The page's rows and ids, cell texts with single spaces and no thin spaces (thousands)."""
    parser = _Rows()
    parser.feed(html)
    parser.rows = {row: [" ".join(cell.replace("\u202f", "").split()) for cell in cells]
                   for row, cells in parser.rows.items()}
    return parser


def _no_profile_model(folder: Path) -> Path:
    """The bundled model without its training reference, as the team's model comes."""
    model = CatBoostClassifier().load_model(str(BUNDLED_MODEL))
    del model.get_metadata()[METADATA_KEY]
    path = folder / "no-profile.cbm"
    model.save_model(str(path))
    return path


@pytest.fixture(scope="module")
def day(settings, second_model, tmp_path_factory):  # noqa: F811 - fixture
    """A simulated day: v1 current, v2 candidate (30% canary, full shadow), 1500 passes, about 60% labelled.

    Module-scoped (it is slow), so it builds its own models folder as tests/test_model_swap.py's models_dir does
    (that fixture is per test).
    """
    folder = tmp_path_factory.mktemp("report-day")
    models_dir = publish_models(folder / "models", second_model)
    app = create_app(replace(settings, models_dir=models_dir, canary_share=0.3, shadow_share=1.0,
                             prediction_log_dir=folder / "log", log_level="WARNING"))
    started = datetime.now(timezone.utc)
    sent = simulated_day(app)
    ended = datetime.now(timezone.utc)
    return {"folder": folder, "models_dir": models_dir, "root": folder / "log" / "parquet", "sent": sent,
            "window": window_options(started, ended)}


@pytest.fixture(scope="module")
def report(day) -> str:
    """The page regno-report writes for the day: MODELS_DIR from the environment, v1's file named without a profile."""
    out = day["folder"] / "report.html"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELS_DIR", str(day["models_dir"]))
        status = main(["--dir", str(day["root"]), "-o", str(out), *day["window"],
                       "--model", f"v1={_no_profile_model(day['folder'])}"])
    assert status == 0
    return out.read_text(encoding="utf-8")


def _expected(sent, models_dir: Path) -> dict[tuple[str, str], Counter]:
    """Per (model, arm), counted here from the answers and the true plates: labelled, pick, camera, AI, model right."""
    candidate = load_folder(models_dir / "v2")
    expected: dict[tuple[str, str], Counter] = {arm: Counter() for arm in ARMS}
    scores: dict[tuple[str, str], tuple[list, list]] = {arm: ([], []) for arm in ARMS}
    for one in (one for one in sent if one.labelled):
        record, plate, answer = one.simulated.record, one.simulated.plate, one.answer
        label = record["afts_regno_ai"] == plate
        arm = ("v2", "canary") if answer["model"] == "v2" else ("v1", "current")
        judged = [(arm, answer["regno"], answer["positive"])]
        if arm[1] == "current":  # SHADOW_SHARE 1: v2 also scored every pass v1 answered
            parsed = parse_record(record)
            score = candidate.score(parsed)
            judged.append((("v2", "shadow"), pick(parsed, score, 0.5)[0], score.positive))
        for key, picked, positive in judged:
            expected[key].update(labelled=1, pick=picked == plate, camera=record["regno_recognize"] == plate,
                                 ai=label, model=(positive >= 0.5) == label)
            scores[key][0].append(int(label))
            scores[key][1].append(positive)
    for key, (labels, positives) in scores.items():
        expected[key]["auc"] = roc_auc(labels, positives)
    return expected


def test_the_page_has_every_section_plot_and_model(report, day):
    """Headings and ids of every section and arm, two plots per labelled arm plus the summary's, both models."""
    page = _parsed(report)
    assert set(SECTIONS) <= page.ids
    for model, arm in ARMS:
        assert {f"summary-{model}-{arm}", f"arm-{model}-{arm}", f"figure-calibration-{model}-{arm}",
                f"figure-scores-{model}-{arm}"} <= page.ids
    assert {"figure-accuracy", "drift-v1", "drift-v2", "candidate-v2-v1"} <= page.ids
    assert len(IMAGE.findall(report)) == 1 + 2 * len(ARMS) == report.count("<img")
    assert "<script" not in report and "http://" not in report and "https://" not in report
    assert re.search(r'<article id="drift-v1">.*?' + NO_PROFILE, report, re.S)
    drift_v2 = report[report.index('id="drift-v2"'):report.index('id="glossary"')]
    verdicts = re.findall(r'<td class="text [a-z-]+">(stable|moderate shift|major shift)</td>', drift_v2)
    assert len(verdicts) == 7  # four numeric inputs, three categorical ones
    assert all(feature in drift_v2 for feature in ("recognition_accuracy", "min_char_score", "camera_class"))


def test_the_numbers_are_exact_against_the_answers_and_true_plates(report, day):
    """Per model and arm: labelled passes, pick / camera / AI accuracy, model accuracy and AUC as counted here."""
    page = _parsed(report)
    expected = _expected(day["sent"], day["models_dir"])
    for (model, arm), counts in expected.items():
        cells = page.rows[f"summary-{model}-{arm}"]
        n = counts["labelled"]
        assert n > 50, (model, arm)
        assert cells[6] == str(n)
        for column, measure in ((7, "pick"), (8, "camera"), (9, "ai")):
            assert cells[column] == f"{percent(counts[measure] / n)} {counts[measure]} / {n}", (model, arm, measure)
        assert cells[10] == percent(counts["model"] / n)
        assert cells[11] == f"{counts['auc']:.3f}"
    current = [one for one in day["sent"] if one.answer["model"] == "v1"]
    assert page.rows["summary-v2-shadow"][3] == str(len(current))  # each v1 pass, shadowed


def test_the_verdict_names_both_models_on_the_same_passes(report, day):
    """The candidate's verdict: v2 against v1 on the labelled passes both scored, in words, with the paired test."""
    expected = _expected(day["sent"], day["models_dir"])[("v2", "shadow")]
    n = expected["labelled"]
    current = sum(one.answer["regno"] == one.simulated.plate for one in day["sent"]
                  if one.labelled and one.answer["model"] == "v1")
    words = (f"v2 picked the true plate on {percent(expected['pick'] / n)} of {n} labelled passes, against "
             f"{percent(current / n)} for v1 on the same passes:")
    verdicts = report[report.index('id="verdicts"'):report.index('id="models"')]
    assert words in verdicts.replace("&#39;", "'")
    assert "McNemar" in verdicts and ("bigger than noise" in verdicts or "within noise" in verdicts
                                      or "not enough labels to tell" in verdicts.lower())


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no {CHROMIUM}: `make test` installs it")
def test_the_page_opens_in_headless_chromium_without_errors(report, day):
    """No console or page error, no request leaving the file, every image decoded, the title heading first."""
    from playwright.sync_api import sync_playwright

    path = day["folder"] / "report.html"
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: request.url.startswith(("file:", "data:"))
                    or requests.append(request.url))
            page.goto(path.as_uri(), wait_until="load")
            widths = page.eval_on_selector_all("img", "images => images.map(image => image.naturalWidth)")
            heading = page.inner_text("h1")
        finally:
            browser.close()
    assert errors == [] and requests == []
    assert len(widths) == 1 + 2 * len(ARMS) and all(width > 0 for width in widths)
    assert heading == "regno-api model report"


def test_an_empty_folder_or_window_exits_2_with_one_line(day, tmp_path, capsys):
    """No Parquet file, or no row in the window: status 2 and one line on stderr."""
    assert main(["--dir", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert main(["--dir", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")]) == 2
    assert main(["--dir", str(day["root"]), "--day", "2001-01-01", "-o", str(tmp_path / "r.html")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("regno-report: ") for line in lines)
    assert "no prediction-log Parquet files" in lines[0] and "no prediction row between" in lines[2]
    assert not (tmp_path / "r.html").exists()


def test_one_model_without_labels_then_with_one_class_only(settings, tmp_path, capsys):
    """No candidate and no label: volume and one histogram; labels all of one kind: AUC is said to be undefined."""
    from training.simulate import simulate

    app = create_app(replace(settings, prediction_log_dir=tmp_path / "log", log_level="WARNING"))
    state, client, key = app.extensions["regno"], app.test_client(), settings.api_keys[0]
    passes = simulate(40, seed=3)
    answers = [post_closed(client, "/reg/", p.record, key)[1]["body"] for p in passes]
    post_closed(client, "/reg/", {"regno_recognize": "А1"}, key)  # refused by validation: counted, not scored
    flush_log(state)
    state.shipper.ship_once()
    root, out = tmp_path / "log" / "parquet", tmp_path / "report.html"
    assert main(["--dir", str(root), "-o", str(out), "--day", "today"]) == 0
    unlabelled = out.read_text(encoding="utf-8")
    assert "no labelled pass yet" in unlabelled and "No candidate model in this window" in unlabelled
    assert len(IMAGE.findall(unlabelled)) == 1 and "<b>1</b><span>rows refused by validation" in unlabelled
    right = [{"pass_id": answer["pass_id"], "true_regno": p.plate} for p, answer in zip(passes, answers)
             if p.record["afts_regno_ai"] == p.plate]
    assert post_closed(client, "/reg/feedback", right, LABEL_KEY)[0] == 200
    flush_log(state)
    state.shipper.ship_once()
    assert main(["--dir", str(root), "-o", str(out), "--day", "today"]) == 0
    cells = _parsed(out.read_text(encoding="utf-8")).rows["summary-regno-sim-1-current"]
    assert cells[6] == str(len(right)) and cells[9] == f"100.0% {len(right)} / {len(right)}"
    assert cells[11] == "undefined: one class"
    assert "AUC is undefined" in out.read_text(encoding="utf-8")
    capsys.readouterr()


def test_mcnemar_exact_p_values():
    """The exact two-sided binomial test on discordant passes."""
    assert mcnemar_p(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_p(3, 7) == pytest.approx(2 * (1 + 10 + 45 + 120) / 1024) == mcnemar_p(7, 3)
    assert mcnemar_p(5, 5) == 1.0 and mcnemar_p(0, 0) == 1.0
    assert 0 < mcnemar_p(400, 600) < 1e-9  # big counts stay exact integers until one division


def test_verdict_words():
    """Better or worse by points, then noise or not, and "not enough labels" below the minimum."""
    better = Paired("v1", "v2", 340, 301, 310, 21, 30)
    assert verdict(better).startswith("v2 picked the true plate on 91.2% of 340 labelled passes, against 88.5% for "
                                      "v1 on the same passes: better by 2.6 points.")
    assert "within noise" in verdict(better) and "p = 0.26" in verdict(better)
    clear = Paired("v1", "v2", 500, 400, 450, 10, 60)
    assert "bigger than noise" in verdict(clear) and "p < 0.001" in verdict(clear)
    few = Paired("v1", "v2", MIN_PASSES - 1, 20, 25, 1, 6)
    assert "worse" not in verdict(few) and "Not enough labels to tell: 29 labelled passes" in verdict(few)
    assert "Not enough labels to tell: the models differ on only 9" in verdict(Paired("a", "b", 300, 200, 201, 4, 5))
    assert "the same" in verdict(Paired("a", "b", 300, 200, 200, 10, 10))
    assert "no verdict" in verdict(Paired("v1", "v2", 0, 0, 0, 0, 0))


def test_window_options_and_file_name():
    """--day, --from/--to as days (the --to day included) or timestamps, and the default file name."""
    now = datetime(2026, 12, 3, 15, 0, tzinfo=timezone.utc)
    today = window_of(None, None, None, now)
    assert (today.start.isoformat(), today.end.isoformat()) == ("2026-12-03T00:00:00+00:00",
                                                                "2026-12-04T00:00:00+00:00")
    assert default_out(today) == Path("regno-report-2026-12-03-2026-12-03.html")
    assert window_of("yesterday", None, None, now).start.day == 2
    days = window_of(None, "2026-12-01", "2026-12-02", now)
    assert default_out(days) == Path("regno-report-2026-12-01-2026-12-02.html")
    times = window_of(None, "2026-12-03T08:00:00+03:00", "2026-12-03T12:30:00", now)
    assert (times.start.hour, times.end.hour) == (5, 12)
    assert default_out(times) == Path("regno-report-2026-12-03T050000Z-2026-12-03T123000Z.html")
    assert window_of(None, "2026-12-03T10:00:00", None, now).end == now
    assert window_of(None, None, "2026-12-02T10:00:00Z", now).start.isoformat() == "2026-12-02T00:00:00+00:00"
    assert window_of(None, None, "2026-12-02", now).start.isoformat() == "2026-12-02T00:00:00+00:00"
    with pytest.raises(ValueError, match="empty"):
        window_of(None, "2026-12-03", "2026-12-02", now)


def test_model_references_and_small_helpers(tmp_path):
    """--model VERSION=PATH, a version with no file, a model without a profile; anchors and top shifts."""
    assert parse_model_option("v2=/m/v2.cbm") == ("v2", Path("/m/v2.cbm"))
    with pytest.raises(ValueError):
        parse_model_option("v2")
    references = References({"team": _no_profile_model(tmp_path)}, None, BUNDLED_MODEL)
    assert references.get("team").problem == NO_PROFILE and references.get("team").profile is None
    assert "no model file found for v9" in references.get("v9").problem
    bundled = references.get("regno-sim-1")  # MODEL_PATH, found by the version in its metadata
    assert bundled.path == BUNDLED_MODEL and bundled.profile is not None and bundled.problem is None
    assert anchor("regno-sim-1", "shadow") == "regno-sim-1-shadow" and anchor("v1/x y", "a") == "v1_x_y-a"
    shares = {"a": {"reference": 0.5, "observed": 0.2}, "b": {"reference": 0.3, "observed": 0.35},
              "c": {"reference": 0.2, "observed": 0.45}}
    assert [row["value"] for row in top_shifts(shares, 2)] == ["a", "c"]


def test_the_template_ships_in_the_wheel():
    """setup.cfg's package_data takes the report's template, and the console script is declared."""
    setup = (Path(__file__).resolve().parents[1] / "setup.cfg").read_text(encoding="utf-8")
    assert re.search(r"^service\.report = templates/\*\.j2$", setup, re.M)
    assert "regno-report = service.report.main:main" in setup


def test_logs_written_before_the_key_columns_still_read_and_report(settings, tmp_path):
    """Parquet files from before key_name, label_id, corrects and scored_by read as null there (regno-log's views),
    beside newer files; the report takes a correction of such a label, and the corrected truth."""
    import pyarrow.parquet as pq

    from service.predictions.query import connect, rows
    from training.simulate import simulate

    app = create_app(replace(settings, prediction_log_dir=tmp_path / "log", log_level="WARNING"))
    state, client = app.extensions["regno"], app.test_client()
    passes = simulate(12, seed=8)
    answers = [post_closed(client, "/reg/", p.record, settings.api_keys[0])[1]["body"] for p in passes]
    flush_log(state)
    wrong = [{"pass_id": answer["pass_id"], "true_regno": "Ж000ЖЖ00"} for answer in answers]
    assert post_closed(client, "/reg/feedback", wrong, LABEL_KEY)[0] == 200
    flush_log(state)
    state.shipper.ship_once()
    root = tmp_path / "log" / "parquet"
    added = {"key_name", "label_id", "corrects", "scored_by"}
    for path in root.rglob("*.parquet"):  # as an older version wrote them
        table = pq.read_table(path)
        pq.write_table(table.drop_columns([name for name in table.column_names if name in added]), path)
    old = rows(connect(root), "SELECT key_name, label_id, corrects, scored_by FROM labels")
    assert len(old) == 12 and all(value is None for row in old for value in row.values())
    assert rows(connect(root), "SELECT count(*) AS n FROM predictions WHERE key_name IS NULL")[0]["n"] == 12
    right = [{"pass_id": answer["pass_id"], "true_regno": answer["regno"], "correction": True} for answer in answers]
    assert post_closed(client, "/reg/feedback", right, LABEL_KEY)[0] == 200
    flush_log(state)
    state.shipper.ship_once()
    mixed = rows(connect(root), "SELECT count(*) AS n, count(corrects) AS corrections FROM labels")[0]
    assert mixed == {"n": 24, "corrections": 12}
    out = tmp_path / "report.html"
    assert main(["--dir", str(root), "-o", str(out), "--day", "today"]) == 0
    cells = _parsed(out.read_text(encoding="utf-8")).rows["summary-regno-sim-1-current"]
    assert (cells[6], cells[7]) == ("12", "100.0% 12 / 12")  # each pass once; every pick right, as corrected
