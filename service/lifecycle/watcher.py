"""Model swaps without a restart: each worker watches the models directory's `current` and `candidate` pointers.

Why a pointer file, not a signal or an admin endpoint: every worker of every replica sees the same file
(a shared volume, or a ConfigMap in Kubernetes), no extra secret is needed, writing it is atomic
(model.registry.write_pointer), and rolling back is writing the previous version into it. A signal
reaches only one machine's master, which would restart its workers; an endpoint reaches one worker.

The new model is loaded and probed in the watcher's thread; requests keep using the old one until the
slot is replaced in one assignment, so none fails or waits on the load. A model that cannot be loaded
is refused: the old one keeps serving, and the refusal is logged, counted and shown in /health.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from model.registry import CANDIDATE, CURRENT, Pointer, load_pointed, read_pointer
from model.routing import ModelSlot, Routing
from service.observe import sentry
from service.state import ServiceState

log = logging.getLogger("regno")


class ModelWatcher:
    """Swaps a worker's current and candidate models when their pointers change; one per worker process."""

    def __init__(self, state: ServiceState, models_dir: Path, poll_s: float, seen_current: Pointer):
        self.state, self.models_dir, self.poll_s = state, models_dir, poll_s
        self._seen = {CURRENT: seen_current, CANDIDATE: Pointer(None, None)}
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Look at both pointers once; swap to what changed. True when the routing changed.

        Also re-reads the model syncer's status when it changed, for /health and /metrics.
        """
        if self.state.source_status is not None:
            self.state.source_status.refresh()
        routing = self.state.routing
        current, candidate = routing.current, routing.candidate
        changed = False
        pointer = read_pointer(self.models_dir, CURRENT)
        if pointer != self._seen[CURRENT]:
            self._seen[CURRENT] = pointer  # a refused pointer is not retried until it changes again
            loaded = self._load(CURRENT, pointer)
            if loaded is not None:
                current, changed = loaded, True
        pointer = read_pointer(self.models_dir, CANDIDATE)
        if pointer != self._seen[CANDIDATE]:
            self._seen[CANDIDATE] = pointer
            if pointer.name is None:
                candidate, changed = None, changed or candidate is not None
            else:
                loaded = self._load(CANDIDATE, pointer)
                if loaded is not None:
                    candidate, changed = loaded, True
        if changed:
            self.state.routing = Routing(current, candidate, self.state.settings.canary_share)
            if current is not routing.current:
                sentry.tag_model(current.version)  # the release keeps the start's model; the tag follows
                if self.state.metrics is not None:
                    self.state.metrics.model_changed(routing.current.scorer, current.scorer)
            log.info("models: current %s (sha256 %s), candidate %s", current.scorer.version,
                     current.scorer.checksum[:12], candidate.scorer.version if candidate else "none")
        return changed

    def _load(self, which: str, pointer: Pointer) -> ModelSlot | None:
        """The slot of the folder a pointer names, loaded and probed here; None (and a refusal) if it fails."""
        try:
            scorer = load_pointed(self.models_dir, which, pointer)
            scorer.probe()  # in this thread, so the first request on the new model pays nothing
        except Exception as error:  # noqa: BLE001 - any failure is a refusal; the old model keeps serving
            self._refuse(which, pointer.name, error)
            return None
        return ModelSlot.of(scorer, self.state.settings.batch_max_size)

    def _refuse(self, which: str, name: str | None, error: Exception) -> None:
        """Keep the old model; say why in the log, the metrics and /health."""
        self.state.model_refusal = {"pointer": which, "version": name, "error": str(error),
                                    "at": round(time.time(), 3)}
        if self.state.metrics is not None:
            self.state.metrics.model_refusals.inc()
        log.warning("%s model %s refused, %s keeps serving: %s", which, name, self.state.routing.current.version, error)

    def start(self) -> None:
        """Check every poll_s seconds in a daemon thread of this process."""
        self._thread = threading.Thread(target=self._loop, name="model-watcher", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive a surprise; it is logged
                log.exception("model watcher failed; it keeps watching")
            time.sleep(self.poll_s)
