"""The time window a command names with --day, or --from and --to: regno-report's and regno-replay's one reading."""

from __future__ import annotations

import argparse
import re
from datetime import date, datetime, time, timedelta, timezone

from service.report.data import Window

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def add_window_options(parser: argparse.ArgumentParser, default_day: str | None = "today") -> None:
    """--day, --from and --to, as every command that reads a window of the log spells them."""
    after = f" (UTC; default {default_day})" if default_day else " (UTC)"
    parser.add_argument("--day", help=f"YYYY-MM-DD, today or yesterday{after}")
    parser.add_argument("--from", dest="start", help="start: YYYY-MM-DD or a full timestamp (UTC unless it says)")
    parser.add_argument("--to", dest="end", help="end: YYYY-MM-DD (that day included) or a full timestamp")


def parse_day(text: str, today: date) -> date:
    """A day: YYYY-MM-DD, today or yesterday."""
    return {"today": today, "yesterday": today - timedelta(days=1)}.get(text) or date.fromisoformat(text)


def parse_moment(text: str, end_of_day: bool) -> datetime:
    """A bound of the window in UTC: a day (its start, or the next day's start at the end) or a full timestamp."""
    if _DATE.match(text):
        start = datetime.combine(date.fromisoformat(text), time(), tzinfo=timezone.utc)
        return start + timedelta(days=1) if end_of_day else start
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def window_of(day: str | None, start: str | None, end: str | None, now: datetime) -> Window:
    """The window the options name: --day, or --from/--to (either may be left out), or today (UTC).

    ValueError, with words for the user, when they name none that can be read.
    """
    if day and (start or end):
        raise ValueError("--day goes alone, without --from or --to")
    if start is None and end is None:
        first = parse_day(day or "today", now.date())
        midnight = datetime.combine(first, time(), tzinfo=timezone.utc)
        return Window(midnight, midnight + timedelta(days=1))
    upper = parse_moment(end, end_of_day=True) if end else now
    # --to alone: from the start of the day it ends in.
    lower = (parse_moment(start, end_of_day=False) if start
             else datetime.combine((upper - timedelta(microseconds=1)).date(), time(), tzinfo=timezone.utc))
    if lower >= upper:
        raise ValueError(f"the window is empty: --from {start} is not before --to {end or 'now'}")
    return Window(lower, upper)
