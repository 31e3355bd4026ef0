"""The syncer: what a model source's pointers name, copied into MODELS_DIR and verified before a pointer moves.

One per host or pod (regno-sync), never one per worker. Every MODEL_SYNC_S it reads the source's
`current` and `candidate` (a 304 or the registry's alias: cheap). A version it does not hold yet is
fetched into a staging folder of MODELS_DIR, verified there (model/lifecycle/verify.py), and renamed into place;
only then does the local pointer move, and each worker's watcher swaps to it as it always did. A
version that fails a check is refused once, with its reason, and never fetched again by this process;
the last good model keeps serving. An unreachable source is a failure: counted, and retried next time.

What it did is written to MODELS_DIR/.sync-status.json after every pass, which the workers read for
/health and /metrics (the syncer may run in another container, which shares only the volume).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from model import SYNC_STATUS_FILE
from model.registry import CANDIDATE, CURRENT, METADATA_FILE, read_pointer, write_pointer
from model.sources import ModelSource, SourceError, wanted
from model.lifecycle.verify import Refused, fetch_verified

#: Refusals the status file keeps, newest last.
KEPT_REFUSALS = 10

log = logging.getLogger("regno")


def read_status(models_dir: Path) -> dict | None:
    """The status the syncer last wrote into models_dir; None when no syncer ever ran there."""
    try:
        return json.loads((models_dir / SYNC_STATUS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


class ModelSyncer:
    """Keeps MODELS_DIR's pointers at what the source's pointers name, through verified copies."""

    def __init__(self, source: ModelSource, models_dir: Path, on_refusal: Callable[[Refused, str, str], None]
                 | None = None):
        self.source, self.models_dir, self.on_refusal = source, models_dir, on_refusal
        self._refused: dict[str, str] = {}  # version -> reason: never fetched again by this process
        self._reported: set[tuple[str, str | None]] = set()  # (pointer, version) refusals already counted
        previous = read_status(models_dir) or {}
        self.status = {
            "source": source.label,
            "kind": source.kind,
            "last_attempt": None,
            "last_success": previous.get("last_success") if previous.get("source") == source.label else None,
            "source_versions": {CURRENT: None, CANDIDATE: None},
            "failures": {"source": 0, "local": 0, **previous.get("failures", {})},
            "refusals": {**previous.get("refusals", {})},
            "last_error": None,
            "refused": previous.get("refused", []),
            "checked_without_checksum": previous.get("checked_without_checksum", []),
        }

    def has_current(self) -> bool:
        """True when MODELS_DIR's `current` names a verified folder (one the syncer or a publisher made whole)."""
        name = read_pointer(self.models_dir, CURRENT).name
        return name is not None and (self.models_dir / name / METADATA_FILE).is_file()

    def sync_once(self) -> bool:
        """One look at the source and whatever follows from it; True when the source answered."""
        self.status["last_attempt"] = time.time()
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            self.status["source_versions"] = named = wanted(self.source)
            for which, version in named.items():
                self._follow(which, version)
        except SourceError as error:
            return self._failed("source", str(error))
        except OSError as error:  # MODELS_DIR full or read-only: the source is fine, this host is not
            return self._failed("local", f"{self.models_dir}: {error}")
        self.status["last_success"], self.status["last_error"] = time.time(), None
        self._save()
        return True

    def _follow(self, which: str, version: str | None) -> None:
        """Make the local pointer name version, once it is here and verified."""
        local = read_pointer(self.models_dir, which).name
        if version is None:
            if which == CANDIDATE:
                if local is not None:
                    write_pointer(self.models_dir, CANDIDATE, None)
                    log.info("model source %s names no candidate: the candidate %s is withdrawn", self.source.label,
                             local)
            elif local is not None:  # a current that vanished at the source (its version deleted) is not followed
                self._refuse(which, None, Refused("missing", f"the source names no {which} model"))
            return
        self._reported.discard((which, None))  # a pointer that comes back may vanish again, and is counted again
        if version == local:
            return
        if not (self.models_dir / version / METADATA_FILE).is_file():
            if version in self._refused:
                return
            try:
                self._fetch(version)
            except Refused as refusal:
                self._refused[version] = refusal.reason
                self._refuse(which, version, refusal)
                return
        write_pointer(self.models_dir, which, version)
        log.info("model source %s: %s is now %s (was %s)", self.source.label, which, version, local or "none")

    def _fetch(self, version: str) -> None:
        """Fetch version into a staging folder, verify it, and rename it into place; Refused if it fails."""
        staging = self.models_dir / f".incoming-{version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            verified = fetch_verified(self.source, version, staging).verified
            target = self.models_dir / version
            shutil.rmtree(target, ignore_errors=True)  # a leftover without metadata is not a model
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not verified.checksum_recorded:
            unchecked = [*self.status["checked_without_checksum"], version]
            self.status["checked_without_checksum"] = unchecked[-KEPT_REFUSALS:]
            log.warning("model source %s: %s has no recorded sha256 (logged by another tool); it was verified "
                        "without one: it loads, its features fit the contract, the probe scores %.6f",
                        self.source.label, version, verified.probe_positive)
        else:
            log.info("model source %s: %s verified (sha256 %s, probe %.6f)", self.source.label, version,
                     verified.sha256[:12], verified.probe_positive)

    def _refuse(self, which: str, version: str | None, refusal: Refused) -> None:
        """Count, log and report a refusal once per pointer and version; the last good model keeps serving."""
        if (which, version) in self._reported:
            return
        self._reported.add((which, version))
        refusals = self.status["refusals"]
        refusals[refusal.reason] = refusals.get(refusal.reason, 0) + 1
        entry = {"pointer": which, "version": version, "reason": refusal.reason, "error": str(refusal),
                 "at": round(time.time(), 3)}
        self.status["refused"] = [*self.status["refused"], entry][-KEPT_REFUSALS:]
        log.error("model source %s: %s %s refused (%s): %s; %s keeps serving", self.source.label, which, version,
                  refusal.reason, refusal, read_pointer(self.models_dir, CURRENT).name)
        if self.on_refusal is not None:
            self.on_refusal(refusal, which, version or "none")

    def _failed(self, reason: str, message: str) -> bool:
        """Count a pass that could not finish; the local models stay as they are."""
        self.status["failures"][reason] = self.status["failures"].get(reason, 0) + 1
        self.status["last_error"] = message
        log.warning("model source %s: sync failed (%s), serving what MODELS_DIR holds: %s", self.source.label,
                    reason, message)
        self._save()
        return False

    def _save(self) -> None:
        """Write the status file atomically (readers see the old one or the new one)."""
        try:
            temporary = self.models_dir / f".{SYNC_STATUS_FILE}.{os.getpid()}.tmp"
            temporary.write_text(json.dumps(self.status, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.models_dir / SYNC_STATUS_FILE)
        except OSError as error:
            log.warning("model source: cannot write %s: %s", self.models_dir / SYNC_STATUS_FILE, error)

    def run(self, every_s: float, stop: threading.Event) -> None:
        """sync_once every every_s seconds until stop is set."""
        while not stop.is_set():
            try:
                self.sync_once()
            except Exception:  # noqa: BLE001 - the syncer must outlive a surprise; it is logged
                log.exception("model syncer failed; it keeps syncing")
            stop.wait(every_s)
