"""The circuit breaker (service/cache/breaker.py), on a clock the test moves."""

from __future__ import annotations

from service.cache.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    """A clock that moves only when told."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_failures_in_a_row():
    """It stays closed until the configured number of failures in a row."""
    breaker = CircuitBreaker(failures=3, cooldown_s=5, clock=Clock())
    assert breaker.record_failure() is False
    breaker.record_success()  # a success resets the count
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state == OPEN
    assert not breaker.allow()
    assert breaker.openings == 1


def test_one_probe_after_cooldown_then_closes():
    """After the cool-down exactly one caller probes; its success closes the breaker."""
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now = 4.9
    assert not breaker.allow()
    clock.now = 5.0
    assert breaker.state == HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for its outcome
    breaker.record_success()
    assert breaker.state == CLOSED
    assert breaker.allow()


def test_failed_probe_reopens_for_another_cooldown():
    """A failed probe opens the breaker again, counted as a new opening."""
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown_s=5, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now = 6
    assert breaker.allow()
    assert breaker.record_failure() is True
    assert breaker.state == OPEN
    assert breaker.openings == 2
    clock.now = 10.9
    assert not breaker.allow()
    clock.now = 11
    assert breaker.allow()
