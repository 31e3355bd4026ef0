"""The shipper: sealed segments to the sink, oldest first, deleted only once the sink has confirmed them.

Only one shipper per spool works at a time: the one holding the flock on the spool's `.shipper.lock`.
Under gunicorn that is a process of its own at low priority (ship_main.py); each worker also runs a
shipper thread that stands by and takes the lock only when the spool's oldest segment has waited over
STANDBY_S, so a dead shipper is replaced. Without gunicorn (one process) the thread ships itself. The
working shipper also seals what dead writers left (journals and open segments nobody holds the flock of),
so the rows of a killed worker, or of a crashed host at its next start, are shipped too.
It reports the spool's state (bytes, segments waiting, the oldest unshipped age) and applies retention.

Recovering a dead writer's journal (journal.py) ships each of its rows exactly once:
- no commit in it: its rows [start, end) are in no segment, and all of them become a segment of their own;
- a commit (the writer died between recording which segment it was appending to and releasing the rows):
  the committed segment, open or sealed, tells how far the append got. At least its after-size: the rows up
  to the commit's end are in it, only [commit end, end) is recovered. Its before-size: none are, all of
  [start, end) is recovered. In between (a kill cut the write short): the segment is cut back to its
  before-size, fsynced, and all of [start, end) is recovered. No such segment (it cannot have been shipped,
  see below; someone removed it): all of [start, end) is recovered, rather than lose any.
- a journal written before the host last started (a crash): its pages may never have reached the disk, and
  what it seems to hold may be rows of an earlier turn that are in segments already; none of it is
  recovered (the rows not yet in a segment when a host crashes are lost, as the README says), and the
  segments stay as they are (the sink skips a torn last line).
The recovered segment is named after the journal and written whole (a temporary file, fsynced, renamed)
before the journal is deleted, so a shipper that dies midway recovers the same rows again into the same
file. A dead writer's open segment is sealed (made shippable) only once no journal of its writer names it
in a commit: a writer that died after this round's recovery is recovered in the next one, before its
segment can ship.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

from service.observe.throttled_log import ThrottledLog
from service.predictions.journal import SUFFIX as JOURNAL, Leftover, committed_segment, read_leftover
from service.predictions.locks import owner_is_gone
from service.predictions.parquet_store import RETENTION_EVERY_S
from service.predictions.sinks import Sink
from service.predictions.spool import (OPEN, SEALED, fsync_folder, sealed_files, segment_name, segment_started,
                                       spool_files, total_bytes)

log = logging.getLogger("regno")

LOCK_FILE = ".shipper.lock"
#: Seconds between two looks at the spool.
POLL_S = 0.5
#: Longest wait between two tries while the sink fails.
MAX_BACKOFF_S = 5.0
#: Seconds the oldest sealed segment may wait before a standing-by shipper takes over.
STANDBY_S = 30.0


class ShipObserver(Protocol):
    """What hears of shipping (service/observe/metrics.py's ServiceMetrics)."""

    def log_shipped(self, rows: int) -> None:
        """rows reached the sink."""

    def log_ship_failed(self) -> None:
        """A segment could not be shipped; it stays in the spool."""

    def log_spool(self, spool_bytes: int, waiting: int, oldest_s: float) -> None:
        """The spool holds spool_bytes in segments, waiting of them sealed, the oldest row oldest_s old."""


class Shipper:
    """Ships one spool's sealed segments to a sink, from whichever process holds the spool's lock."""

    def __init__(self, spool: Path, sink: Sink, observer: ShipObserver | None = None,
                 retention: Callable[[], list[str]] | None = None):
        self.spool, self.sink, self.observer, self.retention = spool, sink, observer, retention
        self._lock_fd: int | None = None
        self._lock_pid: int | None = None
        self._complaints = ThrottledLog(log, 10.0)
        self._retained_at = -RETENTION_EVERY_S
        self._next_try = 0.0
        self._backoff = POLL_S

    def start(self, standby: bool = False) -> None:
        """Ship from a daemon thread of this process; standing by, only once the spool waits over STANDBY_S."""
        threading.Thread(target=self._run, args=(standby,), name="prediction-log-shipper", daemon=True).start()

    def step(self) -> None:
        """One round: take the lock if free, ship, apply retention; a failing sink is retried with backoff."""
        if time.monotonic() < self._next_try or not self.holds_lock():
            return
        try:
            self.ship_once()
            self._retain()
            self._backoff = POLL_S
        except Exception as error:  # noqa: BLE001 - the sink is down or refused: keep the spool, try again
            if self.observer is not None:
                self.observer.log_ship_failed()
            self._complaints.warning("prediction log: shipping failed, segments stay in the spool: %s: %s",
                                     type(error).__name__, error)
            self._backoff = min(MAX_BACKOFF_S, self._backoff * 2)
            self._next_try = time.monotonic() + self._backoff

    def stalled(self) -> bool:
        """True when the spool's oldest sealed segment has waited over STANDBY_S (its shipper is gone)."""
        sealed = sealed_files(self.spool)
        return bool(sealed) and time.time() - sealed[0].stat().st_mtime > STANDBY_S

    def holds_lock(self) -> bool:
        """Take the spool's shipping lock if free; True while this process holds it."""
        if self._lock_pid == os.getpid():
            return True
        descriptor = os.open(self.spool / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._lock_fd, self._lock_pid = descriptor, os.getpid()
        return True

    def ship_once(self) -> int:
        """Seal dead writers' segments, ship every sealed one, report; the rows shipped (raises if the sink fails)."""
        self.seal_abandoned()
        shipped = 0
        try:
            for path in sealed_files(self.spool):
                lines = path.read_bytes().splitlines(keepends=True)
                self.sink.ship(path.stem, lines)
                path.unlink()  # only now: the sink has the rows
                shipped += len(lines)
                if self.observer is not None:
                    self.observer.log_shipped(len(lines))
        finally:
            self.report()
        return shipped

    def seal_abandoned(self) -> list[Path]:
        """Seal what dead writers left (open segments and journals whose flock is free); the segments sealed."""
        sealed = self.recover_journals()
        for path in [path for path in spool_files(self.spool) if path.suffix == OPEN]:
            # Not while its writer lives, nor once that writer sealed it itself; and, its writer gone (so its journal
            # no longer changes), not while that journal still needs it to know which rows it holds.
            if owner_is_gone(path) and not self.awaits_journal(path):
                os.rename(path, path.with_suffix(SEALED))
                sealed.append(path.with_suffix(SEALED))
        if sealed:
            fsync_folder(self.spool)
            log.warning("prediction log: sealed %d segment(s) a stopped writer left open", len(sealed))
        return sealed

    def recover_journals(self) -> list[Path]:
        """Turn the rows left in dead workers' journals into sealed segments, then delete the journals."""
        sealed = []
        for path in sorted(self.spool.glob(f"journal-*{JOURNAL}")):
            leftover = read_leftover(path)
            if leftover is None:
                continue  # its worker lives
            _, started_ms, pid = path.stem.split("-")
            data = self.unwritten(path, pid, leftover)
            if data:
                # Named after the journal: recovering the same journal twice writes the same segment.
                segment = self.spool / f"seg-{started_ms}-{pid}-journal{SEALED}"
                temporary = self.spool / f"new-{segment.name}"
                with open(temporary, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.rename(temporary, segment)
                sealed.append(segment)
            path.unlink()
        return sealed

    def unwritten(self, journal: Path, pid: str, leftover: Leftover) -> bytes:
        """The rows of a dead writer's journal (its writer's pid from its name) that no segment holds (see the module's
        docstring)."""
        if leftover.rebooted:
            if leftover.rows:
                log.warning("prediction log: %s is from before the host restarted; its rows are not recovered",
                            journal.name)
            return b""
        commit = leftover.commit
        if commit is None:
            return leftover.rows
        name = segment_name(commit.segment_ms, pid, commit.sequence)
        segment = next((path for path in (self.spool / f"{name}{OPEN}", self.spool / f"{name}{SEALED}")
                        if path.exists()), None)
        if segment is None:
            log.warning("prediction log: %s names segment %s, which is gone; all its rows are recovered",
                        journal.name, name)
            return leftover.rows
        size = segment.stat().st_size
        if size >= commit.after:
            return leftover.rows[leftover.committed:]
        if size > commit.before:
            with open(segment, "r+b") as stream:  # the cut-short write's rows come back whole from the journal
                stream.truncate(commit.before)
                os.fsync(stream.fileno())
        return leftover.rows

    def awaits_journal(self, segment: Path) -> bool:
        """True when a journal of the open segment's writer names it in a commit: that journal is recovered first."""
        _, started_ms, pid, sequence = segment.stem.split("-")
        return any(committed_segment(journal) == (int(started_ms), int(sequence))
                   for journal in self.spool.glob(f"journal-*-{pid}{JOURNAL}"))

    def report(self) -> None:
        """Tell the observer the spool's size, sealed segments waiting and the oldest unshipped row's age."""
        if self.observer is None:
            return
        files = spool_files(self.spool)
        oldest = max(0.0, time.time() - segment_started(files[0])) if files else 0.0
        self.observer.log_spool(total_bytes(files), sum(path.suffix == SEALED for path in files), oldest)

    def _run(self, standby: bool) -> None:
        while True:
            try:
                if not standby or self._lock_pid == os.getpid() or self.stalled():
                    self.step()
            except Exception:  # noqa: BLE001 - the thread must outlive a surprise (a file gone mid-scan); logged
                log.exception("prediction log shipper failed; it goes on")
            time.sleep(POLL_S)

    def _retain(self) -> None:
        """Apply retention once an hour."""
        if self.retention is None or time.monotonic() - self._retained_at < RETENTION_EVERY_S:
            return
        self._retained_at = time.monotonic()
        removed = self.retention()
        if removed:
            log.info("prediction log: retention removed %s", ", ".join(removed))
