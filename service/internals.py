"""Every shortcut the service takes into a library's private parts, in one place.

Each is checked against the library's public route (tests/test_internals.py and the test named beside it)
on the versions noted; on an upgrade, this module and model/scorer.py's direct CatBoost route are the
only two to audit. The rest of the service uses public APIs only.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, TypeVar

from flask import Flask
from prometheus_client.mmap_dict import MmapedDict
from werkzeug.local import LocalProxy

T = TypeVar("T")


class ServiceFlask(Flask):
    """Flask for the service; routing, hooks and handlers behave exactly as in Flask.

    Checked on Flask 3.1.3 (tests/test_internals.py compares with Flask.ensure_sync).
    """

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """func itself when its code is not a coroutine's; Flask's own wrapping otherwise.

        Flask asks inspect.iscoroutinefunction about every hook and view on every request: six calls
        per scoring request, about 3 µs of a cache hit's 80 µs in process. Reading the code flags
        answers the same question for plain functions and bound methods; anything else (partials,
        callable objects, async views) still goes through Flask.
        """
        code = getattr(func, "__code__", None)
        if code is not None and not code.co_flags & inspect.CO_COROUTINE:
            return func
        return super().ensure_sync(func)


def unproxied(value: T) -> T:
    """The object behind one of Flask's context proxies (request, g), or value itself when it is none.

    Every attribute read through a proxy costs a context lookup; hooks that run on every request read
    several, so they look the object up once. werkzeug 3.1.9's LocalProxy._get_current_object
    (tests/test_internals.py checks it returns what the proxy stands for).
    """
    return value._get_current_object() if isinstance(value, LocalProxy) else value


def add_metric_file(source: Path, archive: Path) -> None:
    """Add every value of one prometheus_client multiprocess file into another (created when absent).

    prometheus_client 0.26.0 has no public way to merge these files; MmapedDict is its own reader and
    writer of them. tests/test_metrics_files.py checks a scrape (MultiProcessCollector) shows the same
    totals before and after.
    """
    merged = MmapedDict(str(archive))
    try:
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(source)):
            total, _ = merged.read_value(key)
            merged.write_value(key, total + value, timestamp)
    finally:
        merged.close()
