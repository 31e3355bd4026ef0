"""The service's Flask class: Flask, with its per-call check for coroutine functions made cheaper."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from flask import Flask


class ServiceFlask(Flask):
    """Flask for the service; routing, hooks and handlers behave exactly as in Flask."""

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
