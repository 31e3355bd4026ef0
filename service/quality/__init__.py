"""Ground truth: labels of passes, matched to what the log says about them, and the quality they measure.

passes (the host's pass index, fed by the log's writers) and redis_passes (the same for many
replicas), labels (a label checked, and its verdict on
each model that scored the pass), feedback (taking a request's labels). The metrics live with the
others in service/observe/metrics.py; the report is service/report/.
"""

from __future__ import annotations

from config import Settings
from service.quality.passes import PassIndex, SqlitePassIndex


def pass_index(settings: Settings) -> PassIndex | None:
    """The pass index: in PASS_INDEX_URL's Redis, else beside the log's spool; None when the log is off."""
    if not settings.prediction_log_on:
        return None
    if settings.pass_index_url:
        from service.quality.redis_passes import RedisPassIndex

        return RedisPassIndex(settings.pass_index_url, settings.cache_prefix, settings.label_window_days)
    return SqlitePassIndex(settings.prediction_log_dir / "passes.sqlite")


__all__ = ["PassIndex", "pass_index"]
