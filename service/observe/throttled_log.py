"""A log line that is written at most once per interval, counting what it held back."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable


class ThrottledLog:
    """Warns at most once every `interval_s`, saying how many warnings it suppressed since the last."""

    def __init__(self, logger: logging.Logger, interval_s: float, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> bool:
        """Log message as a warning unless one was logged within the interval; True if it was written."""
        with self._lock:
            now = self._clock()
            if now - self._last < self.interval_s:
                self._suppressed += 1
                return False
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        suffix = f" ({suppressed} similar suppressed)" if suppressed else ""
        self.logger.warning(message + suffix, *args)
        return True
