"""A circuit breaker that stops calling a failing dependency and probes it again after a cool-down."""

from __future__ import annotations

import threading
import time
from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    """Closed until `failures` calls in a row fail; then open for `cooldown_s`; then one probe decides.

    The lock guards state changes only, never the guarded call itself: pybreaker holds its lock
    across the call, which would queue every request thread behind one slow Redis call.
    """

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str], None] | None = None):
        #: Called with the new state after every change of state, outside the lock.
        self.on_change = on_change
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failed_in_a_row = 0
        self._opened_at = 0.0
        #: How many times the breaker has opened, for logs and metrics.
        self.openings = 0

    @property
    def state(self) -> str:
        """closed, open or half-open (open turns half-open once the cool-down is over)."""
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """True if a call may go out now: always when closed, once per cool-down (the probe) when open."""
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state != OPEN or self._clock() - self._opened_at < self.cooldown_s:
                return False
            self._state = HALF_OPEN  # this caller is the probe; others wait for its outcome
        self._changed(HALF_OPEN)
        return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            changed = self._state != CLOSED
            self._state = CLOSED
            self._failed_in_a_row = 0
        if changed:
            self._changed(CLOSED)

    def record_failure(self) -> bool:
        """A call failed; returns True if this failure opened the breaker."""
        with self._lock:
            self._failed_in_a_row += 1
            opens = self._state == HALF_OPEN or (self._state == CLOSED and self._failed_in_a_row >= self.failures)
            if opens:
                self._state = OPEN
                self._opened_at = self._clock()
                self.openings += 1
        if opens:
            self._changed(OPEN)
        return opens

    def _changed(self, state: str) -> None:
        """Tell the listener, if any, about a new state."""
        if self.on_change is not None:
            self.on_change(state)
