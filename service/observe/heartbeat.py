"""Liveness by a file's age: a long-running process touches its file as it works; its health check asks how old it is.

For processes with no port of their own (regno-log-sink, regno-sync), so no HTTP server is invented for a probe.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def beat(path: Path) -> None:
    """Mark path as touched now (made if missing); a failure to write is left to the health check to notice."""
    try:
        path.touch()
    except OSError:
        pass


def age_s(path: Path) -> float | None:
    """Seconds since path was last touched; None when it does not exist."""
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except FileNotFoundError:
        return None


def check(program: str, path: Path, max_age_s: float) -> int:
    """A health check's exit code: 0 when path was touched within max_age_s, else 1 with one line saying why."""
    age = age_s(path)
    if age is None:
        print(f"{program}: unhealthy: {path} does not exist yet", file=sys.stderr)
        return 1
    if age > max_age_s:
        print(f"{program}: unhealthy: {path} last touched {age:.0f} s ago (limit {max_age_s:.0f} s)", file=sys.stderr)
        return 1
    return 0
