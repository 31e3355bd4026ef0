"""Model swaps without a restart: each worker watches the models directory's `current` pointer.

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

from model.registry import CURRENT, Pointer, load_folder, read_pointer
from model.scorer import ModelLoadError
from service.state import ModelSlot, ServiceState

log = logging.getLogger("regno")


def load_current(models_dir: Path):
    """(scorer, pointer) of the model the `current` pointer names; raises ModelLoadError if it cannot be served."""
    pointer = read_pointer(models_dir, CURRENT)
    if pointer.name is None:
        raise ModelLoadError(f"{models_dir / CURRENT} is missing or empty: it must name the model folder to serve")
    return load_folder(models_dir / pointer.name), pointer


class ModelWatcher:
    """Swaps a worker's model when the `current` pointer changes; one per worker process."""

    def __init__(self, state: ServiceState, models_dir: Path, poll_s: float, seen: Pointer):
        self.state, self.models_dir, self.poll_s = state, models_dir, poll_s
        self._seen = seen
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Look at the pointer once; swap to what it names if it changed. True when the model was swapped."""
        pointer = read_pointer(self.models_dir, CURRENT)
        if pointer == self._seen:
            return False
        self._seen = pointer  # a refused pointer is not retried until it changes again
        try:
            if pointer.name is None:
                raise ValueError(f"{self.models_dir / CURRENT} is missing or empty")
            scorer = load_folder(self.models_dir / pointer.name)
            scorer.probe()  # in this thread, so the first request on the new model pays nothing
        except Exception as error:  # noqa: BLE001 - any failure is a refusal; the old model keeps serving
            self._refuse(pointer.name, error)
            return False
        old = self.state.model.scorer
        self.state.model = ModelSlot.of(scorer, self.state.settings.batch_max_size)
        if self.state.metrics is not None:
            self.state.metrics.model_changed(old, scorer)
        log.info("model swapped: %s (sha256 %s) -> %s (sha256 %s)", old.version, old.checksum[:12], scorer.version,
                 scorer.checksum[:12])
        return True

    def _refuse(self, name: str | None, error: Exception) -> None:
        """Keep the old model; say why in the log, the metrics and /health."""
        self.state.model_refusal = {"version": name, "error": str(error), "at": round(time.time(), 3)}
        if self.state.metrics is not None:
            self.state.metrics.model_refusals.inc()
        log.warning("model %s refused, %s keeps serving: %s", name, self.state.model.scorer.version, error)

    def start(self) -> None:
        """Check every poll_s seconds in a daemon thread of this process."""
        self._thread = threading.Thread(target=self._loop, name="model-watcher", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.poll_s)
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive a surprise; it is logged
                log.exception("model watcher failed; it keeps watching")
