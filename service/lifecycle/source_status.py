"""What the model syncer last did, as each worker tells /health and /metrics.

The syncer (regno-sync, maybe in another container) writes MODELS_DIR/.sync-status.json after every
pass; each worker's watcher re-reads it when it changes (a stat per poll otherwise) and mirrors it into
its gauges, so /metrics carries the syncer's numbers without a port or process of its own.
"""

from __future__ import annotations

import time
from pathlib import Path

from model import SYNC_STATUS_FILE
from model.lifecycle.sync import read_status


class SourceStatus:
    """The syncer's last status in one worker: re-read when the file changes."""

    def __init__(self, models_dir: Path, metrics=None):
        self.path, self.models_dir, self.metrics = models_dir / SYNC_STATUS_FILE, models_dir, metrics
        self._mtime_ns: int | None = None
        self.status: dict | None = None

    def refresh(self) -> bool:
        """Read the status file if it changed since the last look; True when it did."""
        try:
            mtime_ns = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime_ns == self._mtime_ns:
            return False
        status = read_status(self.models_dir)
        if status is None:  # written between stat and read, or torn by a foreign writer: next poll
            return False
        self._mtime_ns = mtime_ns
        if self.metrics is not None:
            self.metrics.source_synced(status, self.status)
        self.status = status
        return True

    def summary(self) -> dict | None:
        """The part of the status /health shows; None when no syncer writes into MODELS_DIR."""
        status = self.status
        if status is None:
            return None
        reachable = status.get("last_error") is None
        last_success = status.get("last_success")
        return {
            "source": status.get("source"),
            "kind": status.get("kind"),
            # With the source away the workers keep the last verified model they hold, and say so.
            "state": "in sync" if reachable else "source unreachable: serving the cached model",
            "source_versions": status.get("source_versions"),
            "last_success": last_success,
            "seconds_since_success": None if last_success is None else round(time.time() - last_success, 3),
            "last_error": status.get("last_error"),
            "last_refused": (status.get("refused") or [None])[-1],
        }
