"""The report as one self-contained HTML page: Jinja2's templates/report.html.j2, figures inlined as data URIs.

Nothing on the page is fetched: styles are inline, each PNG is a base64 data URI, and there is no script, so the
file opens the same anywhere, offline, and can be mailed or attached to a ticket.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

from jinja2 import Environment, PackageLoader, StrictUndefined

from service.replay.verdict import points
from service.report import plots
from service.report.data import Arm, Replay, Report, anchor
from service.report.verdict import p_words, percent

TEMPLATE = "report.html.j2"


def data_uri(png: bytes) -> str:
    """A PNG as a data URI an <img src> takes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def count(value: int | None) -> str:
    """A count with thin spaces between thousands ("12 345"), or an en dash."""
    return "–" if value is None else f"{value:,}".replace(",", "\u202f")


def number(value: float | None, digits: int = 3) -> str:
    """A number to a few decimals, or an en dash."""
    return "–" if value is None else f"{value:.{digits}f}"


def window_words(start: datetime, end: datetime) -> str:
    """The window in words: a UTC day, a run of days, or two times."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    midnight = {"hour": 0, "minute": 0, "second": 0, "microsecond": 0}
    if start == start.replace(**midnight) and end == end.replace(**midnight):
        last = (end - timedelta(days=1)).date()
        if last == start.date():
            return f"{start.date().isoformat()} (UTC day)"
        return f"{start.date().isoformat()} to {last.isoformat()} (UTC days)"
    return f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC"


def arm_name(arm: Arm) -> str:
    """How a model and arm are named on the page, e.g. "v2 (canary)"."""
    return f"{arm.model} ({arm.arm})"


def replay_figures(replay: Replay) -> dict[str, str]:
    """A replay's figures by id: "replay-shift-<version>", and "replay-threshold-<version>" when it searched."""
    found = {}
    histogram = replay.summary["score_shift"]["histogram"]
    shifted = sum(histogram["counts"])
    if shifted:
        found[f"replay-shift-{replay.id}"] = data_uri(plots.shift_histogram(
            histogram["edges"], histogram["counts"], f"Score shift: {replay.version}, {shifted} passes"))
    search = replay.threshold_search
    if search:
        found[f"replay-threshold-{replay.id}"] = data_uri(plots.threshold_curve(
            search["curve"], search["best"], search["interval95"], search["current"],
            f"Threshold: {replay.version}, {search['labelled']} labelled passes of its replay"))
    return found


def figures(report: Report) -> dict[str, str]:
    """Every figure of the page as a data URI, by id: "accuracy", then "calibration-<arm>" and "scores-<arm>",
    then each replay's (replay_figures)."""
    found = {}
    judged = [arm for arm in report.arms if arm.quality is not None]
    if judged:
        found["accuracy"] = data_uri(plots.accuracy_bars(
            [arm_name(arm) for arm in judged], [arm.quality.pick_accuracy for arm in judged],
            [arm.quality.camera_accuracy for arm in judged], [arm.quality.ai_accuracy for arm in judged]))
    for arm in report.arms:
        if arm.quality is not None:
            found[f"calibration-{arm.id}"] = data_uri(plots.calibration_plot(
                arm.quality.calibration, f"Calibration: {arm_name(arm)}, {arm.quality.labelled} labelled passes"))
            scores, labels = arm.quality.positives, arm.quality.labels
            title = f"Scores: {arm_name(arm)}, labelled passes"
        else:
            scores, labels, title = arm.positives, None, f"Scores: {arm_name(arm)}, all passes (no label yet)"
        found[f"scores-{arm.id}"] = data_uri(plots.score_histogram(scores, labels, report.threshold, title))
    for replay in report.replays:
        found.update(replay_figures(replay))
    return found


def _environment() -> Environment:
    """The Jinja2 environment of the package's templates, escaping everything, failing on unknown names."""
    environment = Environment(loader=PackageLoader("service.report", "templates"), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(percent=percent, count=count, number=number, p_words=p_words, anchor=anchor,
                               points=points)
    return environment


def render(report: Report, source: str, generated: datetime | None = None) -> str:
    """The page of a report; source says where the log was read from."""
    generated = generated or datetime.now(timezone.utc)
    return _environment().get_template(TEMPLATE).render(
        report=report, source=source, window=window_words(report.window.start, report.window.end),
        generated=f"{generated.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC", figures=figures(report),
        arm_name=arm_name)
