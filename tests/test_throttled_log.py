"""The throttled log line (service/observe/throttled_log.py)."""

from __future__ import annotations

import logging

from service.observe.throttled_log import ThrottledLog


def test_one_line_per_interval_with_suppressed_count(caplog):
    """Within the interval lines are held back; the next one says how many were."""
    now = [0.0]
    throttled = ThrottledLog(logging.getLogger("test.throttle"), interval_s=5, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        assert throttled.warning("redis down: %s", "a")
        assert not throttled.warning("redis down: %s", "b")
        assert not throttled.warning("redis down: %s", "c")
        now[0] = 5.0
        assert throttled.warning("redis down: %s", "d")
    assert [record.getMessage() for record in caplog.records] == [
        "redis down: a", "redis down: d (2 similar suppressed)",
    ]
