"""A simulated day of traffic with labels, its regno-report, and a screenshot of the report's first page.

    python -m loadtest.report_screenshot docs/report.png

The day: the bundled model v1 answers, a small second model v2 is the candidate (30% canary, shadow-scoring
every pass v1 answers), about 1500 simulated passes go to POST /reg/ (some sent twice, so the cache answers
them), then about 60% of them get their true plate through POST /reg/feedback, and the log is shipped to
Parquet. tests/test_report.py drives the same day (simulated_day), so the picture shows what the tests check.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import orjson

from config import named_keys
from loadtest.servers import ROOT
from training.simulate import Pass, simulate

#: The system Chromium and the flags it needs in a container with no network (Playwright's own is never fetched).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
#: The first page as the docs show it.
VIEWPORT = {"width": 1280, "height": 1600}
PASSES = 1500
SEED = 20261203
#: Every RESEND_EVERY-th pass is sent a second time (a cache hit); LABELLED_SHARE of passes get their true plate.
RESEND_EVERY = 8
LABELLED_SHARE = 0.6
LABELS_PER_REQUEST = 200
API_KEY = "report-key"
#: The day's label key and pass-id secret (production settings with the log need both to label).
LABEL_KEY, PASS_ID_SECRET = "report-label-key", "report-pass-id-secret"


@dataclass(frozen=True)
class Sent:
    """One simulated pass, the service's first answer to it, and whether its true plate was sent back."""

    simulated: Pass
    answer: dict
    labelled: bool


def train_second_model(path: Path) -> Path:
    """A small model of its own (version tiny-2), trained by the project's script, so its answers differ from v1's."""
    subprocess.run([sys.executable, "-m", "training.train", "--rows", "400", "--iterations", "10", "--version",
                    "tiny-2", "--out", str(path)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return path


def publish_models(models_dir: Path, second_model: Path) -> Path:
    """A models directory with the bundled model as v1 (current) and second_model as v2 (candidate)."""
    from model import BUNDLED_MODEL
    from model.registry import CANDIDATE, CURRENT, publish, write_pointer

    publish(BUNDLED_MODEL, models_dir, "v1")
    publish(second_model, models_dir, "v2")
    write_pointer(models_dir, CURRENT, "v1")
    write_pointer(models_dir, CANDIDATE, "v2")
    return models_dir


def post_closed(client, path: str, body, key: str):
    """POST a JSON body with the API key; the response is closed, as a server closes it after sending."""
    response = client.post(path, data=orjson.dumps(body), headers={"x-api-key": key},
                           content_type="application/json")
    try:
        return response.status_code, response.get_json()
    finally:
        response.close()  # runs the close callbacks: shadow scoring, and so the pass's log row


def flush_log(state) -> None:
    """Have the log's writer write, index and seal what the worker holds now, so the shipper takes all of it."""
    if not state.prediction_log.flush():
        raise RuntimeError("the prediction log did not flush within its timeout")


def simulated_day(app, passes: int = PASSES, seed: int = SEED) -> list[Sent]:
    """Drive a day of traffic and labels through app's test client, then ship its log to Parquet.

    The app must have the prediction log on and may have a candidate; its watcher is asked to load it first.
    """
    state = app.extensions["regno"]
    if state.watcher is not None:
        state.watcher.check()  # what each worker's watcher does on its first look: the candidate loads
    key = named_keys(state.settings.effective_api_keys(), "API_KEYS")[0][1]
    label_key = named_keys(state.settings.effective_label_api_keys(), "LABEL_API_KEYS")[0][1]
    client, rng = app.test_client(), random.Random(seed)
    sent = []
    for position, simulated in enumerate(simulate(passes, seed)):
        status, answer = post_closed(client, "/reg/", simulated.record, key)
        if status != 200:
            raise RuntimeError(f"POST /reg/ answered {status}: {answer}")
        if position % RESEND_EVERY == 0:
            post_closed(client, "/reg/", simulated.record, key)
        sent.append(Sent(simulated, answer["body"], rng.random() < LABELLED_SHARE))
    flush_log(state)  # the passes reach the pass index, which labels are matched against
    labels = [{"pass_id": one.answer["pass_id"], "true_regno": one.simulated.plate} for one in sent if one.labelled]
    for start in range(0, len(labels), LABELS_PER_REQUEST):
        chunk = {"labels": labels[start:start + LABELS_PER_REQUEST]}
        status, answer = post_closed(client, "/reg/feedback", chunk, label_key)
        refused = [result for result in answer["body"]["results"] if result["status"] != "accepted"]
        if status != 200 or refused:
            raise RuntimeError(f"POST /reg/feedback refused labels: {refused or answer}")
    flush_log(state)
    state.shipper.ship_once()
    _check_shipped(state.settings.prediction_log_parquet, len(sent) + len(sent[::RESEND_EVERY]), len(labels))
    return sent


def _check_shipped(root: Path, predictions: int, labels: int) -> None:
    """Fail loudly when the Parquet files lack a row the day sent: every later count would be off."""
    from service.predictions.query import connect, rows

    connection = connect(root)
    found = {table: rows(connection, f"SELECT count(*) AS n FROM {table}")[0]["n"]
             for table in ("predictions", "labels")}
    if found != {"predictions": predictions, "labels": labels}:
        raise RuntimeError(f"shipped {found}, expected {predictions} predictions and {labels} labels")


def build_day(folder: Path, second_model: Path | None = None) -> tuple[Path, Path, datetime, datetime]:
    """Models, app and a simulated day under folder: (models dir, Parquet root, first and last moment)."""
    from config import Settings
    from service import create_app

    models_dir = publish_models(folder / "models", second_model or train_second_model(folder / "tiny2.cbm"))
    settings = Settings(env="production", api_keys=(API_KEY,), label_api_keys=(LABEL_KEY,),
                        pass_id_secret=PASS_ID_SECRET, log_level="WARNING")
    app = create_app(replace(settings, models_dir=models_dir, canary_share=0.3, shadow_share=1.0,
                             prediction_log_dir=folder / "log"))
    started = datetime.now(timezone.utc)
    simulated_day(app)
    return models_dir, folder / "log" / "parquet", started, datetime.now(timezone.utc)


def window_options(started: datetime, ended: datetime) -> list[str]:
    """--from/--to around a run of traffic, a second wider on each side (so a run across midnight is whole)."""
    return ["--from", (started - timedelta(seconds=1)).isoformat(), "--to", (ended + timedelta(seconds=1)).isoformat()]


def screenshot(html: Path, out: Path) -> list[str]:
    """Save the first page of an HTML file as PNG, in headless Chromium; the console and page errors seen."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()
    return errors


def _smaller_png(path: Path) -> None:
    """Rewrite a screenshot with a 256-colour palette: a page of flat colours stays sharp at a third of the size."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the day, write its report beside OUT (OUT with .html) and save the screenshot as OUT."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.report_screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the PNG to write, e.g. docs/report.png")
    args = parser.parse_args(argv)
    from service.report.main import main as report

    with tempfile.TemporaryDirectory(prefix="regno-report-") as temporary:
        folder = Path(temporary)
        models_dir, root, started, ended = build_day(folder)
        html = folder / "report.html"
        options = ["--dir", str(root), "-o", str(html), *window_options(started, ended)]
        options += [f"--model={version}={models_dir / version / 'model.cbm'}" for version in ("v1", "v2")]
        if report(options) != 0:
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        errors = screenshot(html, args.out)
    if errors:
        print("report_screenshot: the page had errors:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    _smaller_png(args.out)
    print(f"{args.out}: {args.out.stat().st_size // 1024} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
