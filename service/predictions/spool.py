"""The spool: a bounded queue the request threads put rows on, and a writer thread that appends them to files.

/reg/'s request thread never waits: `log` samples, then puts the row in the worker's journal (journal.py: a
bounded queue in memory that a killed worker leaves behind), or drops and counts it when the journal is
full. A batch's rows (`log_batch`) and labels (`log_label`, from POST /reg/feedback) may wait for room, up
to PREDICTION_LOG_BATCH_WAIT_S for the whole request (counted in a metric); only then is a row dropped and
counted, or a label refused. They never take the last PREDICTION_LOG_QUEUE_SIZE rows' worth of the journal,
which stays free for /reg/; the journal holds that much plus the most the largest legal batch can take
(rows.batch_bytes), so such a batch fits whole beside /reg/'s rows and waits only when the writer lags.

Every WRITE_INTERVAL_S the writer thread takes what the journal holds (end), records in the journal a
commit (its open segment, the segment's size before and after the append, and end), appends the rows to
the segment with one write and fsyncs it, and only then releases them in the journal, clearing the commit.
So at any instant the journal tells which of its rows the segment already holds, and the shipper recovers
a dead writer's rows exactly once (shipper.py). A write that fails is cut back off the segment before the
error goes on: the rows stay in the journal for the next try. The writer seals its segment (renames it
from .open to .seg) once it is PREDICTION_LOG_SEGMENT_S old or PREDICTION_LOG_SEGMENT_BYTES big, between
two batches, when no commit is open. A row survives the worker from the moment it is in the journal, and
the host once its batch is fsynced. Waking on a timer rather than per row keeps the writer from taking
the interpreter from the request threads a thousand times a second. A writer holds an flock on its
journal and its open segment for as long as it lives, so the shipper can tell a live writer's files
from a dead one's. When the spool holds PREDICTION_LOG_SPOOL_MAX_BYTES of unshipped segments, rows are
dropped and counted (the cap is at least a whole journal, log_setup checks, so only a sink away for
long drops rows); labels (rows.LABELS) travel the same way but are never sampled, and never dropped
once their sender was told they were taken.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Protocol

import orjson

from service.observe.throttled_log import ThrottledLog
from service.predictions.journal import SUFFIX as JOURNAL, Journal
from service.predictions.locks import create_locked
from service.predictions.rows import LABEL_TAG

log = logging.getLogger("regno")

#: Bytes of journal per row of PREDICTION_LOG_QUEUE_SIZE (a row is about 700 bytes of JSON).
ROW_BYTES = 1024
#: Seconds between two batches the writer takes from the journal (each written with one write and one fsync).
WRITE_INTERVAL_S = 0.05
#: Seconds between two scans of the spool's size.
SCAN_S = 1.0
OPEN, SEALED = ".open", ".seg"
#: How a label row's line starts (rows.label_row, as orjson writes it).
_LABEL_LINE = b'["' + LABEL_TAG.encode() + b'",'


class LogObserver(Protocol):
    """What hears of the log's rows (service/observe/metrics.py's ServiceMetrics)."""

    def log_rows(self, outcome: str, count: int = 1) -> None:
        """count rows had this outcome: logged, sampled_out, dropped_queue_full, dropped_spool_full."""

    def log_waited(self, seconds: float) -> None:
        """A row of a batch, or a label, waited this long for room in the journal."""


def journal_bytes(queue_size: int, batch_bytes: int) -> int:
    """A worker's journal: PREDICTION_LOG_QUEUE_SIZE rows kept for /reg/, and room for the largest batch."""
    return queue_size * ROW_BYTES + batch_bytes


def segment_name(started_ms: int, pid: int | str, sequence: int) -> str:
    """A segment's name without its suffix: when its first row was written, its writer, its number there."""
    return f"seg-{started_ms:013d}-{pid}-{sequence:06d}"


def segment_started(path: Path) -> float:
    """When a segment's first row was written, from its name (seg-<ms>-<pid>-<seq>), in seconds since the epoch."""
    return int(path.name.split("-")[1]) / 1000


def spool_files(spool: Path) -> list[Path]:
    """The spool's segment files, open and sealed, oldest first."""
    return sorted((path for path in spool.glob("seg-*") if path.suffix in (OPEN, SEALED)), key=lambda p: p.name)


def sealed_files(spool: Path) -> list[Path]:
    """The spool's sealed segments, oldest first: what waits to be shipped."""
    return [path for path in spool_files(spool) if path.suffix == SEALED]


def total_bytes(files: list[Path]) -> int:
    """The files' sizes added up; a file shipped meanwhile counts 0."""
    total = 0
    for path in files:
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def label_lines(data: bytes) -> int:
    """How many of these JSON lines are label rows (a line break never occurs inside a JSON line)."""
    return data.startswith(_LABEL_LINE) + data.count(b"\n" + _LABEL_LINE)


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in folder durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _Segment:
    """This writer's open segment file, locked while it is written."""

    def __init__(self, spool: Path, sequence: int):
        self.started_ms, self.sequence = int(time.time() * 1000), sequence
        self.path = spool / f"{segment_name(self.started_ms, os.getpid(), sequence)}{OPEN}"
        self.started = time.monotonic()
        self.size = 0
        self.fd = create_locked(self.path, os.O_WRONLY | os.O_APPEND)  # the shipper seals it once the lock is free

    def append(self, data: bytes) -> None:
        """Append one batch whole and make it durable; when that fails, cut off what was written, and raise."""
        try:
            view = memoryview(data)
            while view:  # a write may take less than it was given (a full disk, a signal)
                view = view[os.write(self.fd, view):]
            os.fsync(self.fd)
        except BaseException:
            # Its rows stay in the journal and are written again: a part of them left here would be there twice.
            os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def seal(self) -> None:
        """fsync, rename to .seg (shippable) while still locked, then close."""
        os.fsync(self.fd)
        os.rename(self.path, self.path.with_suffix(SEALED))
        fsync_folder(self.path.parent)
        os.close(self.fd)


class PredictionLog:
    """Takes rows without blocking and writes them to segment files from threads of this process."""

    def __init__(self, spool: Path, queue_size: int, segment_s: float, segment_bytes: int, spool_max_bytes: int,
                 sample: float = 1.0, observer: LogObserver | None = None,
                 on_written: Callable[[bytes], None] | None = None, batch_bytes: int = 0, batch_wait_s: float = 0.0):
        self.spool = spool
        #: Journal bytes beside /reg/'s share that batches and labels may fill (rows.batch_bytes of the limits);
        #: with 0, they have no room of their own and may fill the journal as /reg/'s rows do.
        self.batch_bytes = batch_bytes
        self._kept_for_reg = queue_size * ROW_BYTES if batch_bytes else 0
        #: Seconds a request's batch of rows or labels may wait, all together, for room in the journal.
        self.batch_wait_s = batch_wait_s
        self._room = threading.Condition()  # notified by the writer each time it released rows
        #: Hears each batch of lines once it is in a segment, from the writer thread (the pass index).
        self.on_written = on_written
        self._complaints = ThrottledLog(log, 10.0)
        self.queue_size = queue_size
        self.segment_s, self.segment_bytes, self.spool_max_bytes = segment_s, segment_bytes, spool_max_bytes
        self.sample = sample
        self.observer = observer
        spool.mkdir(parents=True, exist_ok=True)
        self._pid: int | None = None
        self._journal: Journal | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._wake = threading.Event()  # set by flush() and close(): act now, not at the next interval
        self._seal_requested = threading.Event()
        self._stopping = False
        self._segment: _Segment | None = None
        self._sequence = 0
        self._passes = 0  # the writer's finished passes (take, write, maybe seal), for flush()
        self._spool_bytes, self._scanned = 0, -SCAN_S

    def log(self, row: tuple) -> None:
        """Put one row in this worker's journal for the writer, or drop it (sampled out, or full); never blocks."""
        if self._pid != os.getpid():
            self.start()
        if self.sample < 1.0 and random.random() >= self.sample:
            self._count("sampled_out")
            return
        if not self._journal.put(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)):
            self._count("dropped_queue_full")

    def log_batch(self, rows: Iterable[tuple]) -> None:
        """Put a batch's rows in the journal, each sampled; wait for room up to batch_wait_s, then drop and count."""
        if self._pid != os.getpid():
            self.start()
        deadline, sampled_out, dropped = self.wait_deadline(), 0, 0
        for row in rows:
            if self.sample < 1.0 and random.random() >= self.sample:
                sampled_out += 1
            elif not self._put_waiting(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE), deadline):
                dropped += 1
        if sampled_out:
            self._count("sampled_out", sampled_out)
        if dropped:
            self._count("dropped_queue_full", dropped)

    def log_label(self, row: tuple, deadline: float | None = None) -> bool:
        """Put a label row (rows.label_row) in the journal, never sampled; False when no room came by deadline.

        deadline is the request's wait_deadline(), shared by its labels; without one, the label does not wait.
        """
        if self._pid != os.getpid():
            self.start()
        return self._put_waiting(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE),
                                 time.monotonic() if deadline is None else deadline)

    def wait_deadline(self) -> float:
        """Until when (time.monotonic) a request's rows or labels, taken from now, may wait for room in the journal."""
        return time.monotonic() + self.batch_wait_s

    def _put_waiting(self, data: bytes, deadline: float) -> bool:
        """Put data without taking /reg/'s share of the journal, waiting for the writer to free room until deadline."""
        journal, keep = self._journal, self._kept_for_reg
        if journal.put(data, keep):
            return True
        waited_from = time.monotonic()
        if waited_from >= deadline:
            return False
        with self._room:
            while not (stored := journal.put(data, keep)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.set()  # the writer frees room now rather than at its next interval
                self._room.wait(remaining)
        if self.observer is not None:
            self.observer.log_waited(time.monotonic() - waited_from)
        return stored

    def start(self) -> None:
        """Start this process's journal and threads (none survive a fork: each worker starts its own)."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._segment, self._stopping, self._pid = None, False, os.getpid()
            started_ms = int(time.time() * 1000)
            self._journal = Journal(self.spool / f"journal-{started_ms:013d}-{os.getpid()}{JOURNAL}",
                                    journal_bytes(self.queue_size, self.batch_bytes))
            self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what the journal holds, seal the open segment, stop the writer (a worker's clean exit)."""
        if self._pid != os.getpid() or self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Write every row logged before this call and seal its segment; True when done in time (tests, benchmarks)."""
        if self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout_s
        # First every row logged so far into the open segment, then the seal: asking for both at once lets the
        # writer seal the batch it holds and write the journal's rest into a new segment that nothing seals. The
        # second pass from now is the first to start after this call, so it takes every row logged before it.
        wanted = self._passes + 2
        while self._passes < wanted and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.005)
        self._seal_requested.set()
        self._wake.set()
        while self._seal_requested.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._seal_requested.is_set()

    def _count(self, outcome: str, count: int = 1) -> None:
        if self.observer is not None:
            self.observer.log_rows(outcome, count)

    def _run(self) -> None:
        """Write what the journal holds as it comes; seal on age, size, request or stop. Never dies on an error."""
        while True:
            try:
                self._wake.wait(WRITE_INTERVAL_S)
                self._wake.clear()
                end, data = self._journal.pending()
                if data:
                    self._write(end, data)
                stopping = self._stopping and self._journal.empty()
                if stopping or self._seal_requested.is_set() or self._due():
                    self._seal()
                    self._seal_requested.clear()
                if stopping:
                    self._journal.close()  # everything is in a sealed segment now
                    return
                self._passes += 1
            except Exception:  # noqa: BLE001 - the writer must outlive a full disk or a surprise; it is logged
                log.exception("prediction log writer failed; it goes on")
                time.sleep(0.1)

    def _write(self, end: int, data: bytes) -> None:
        """Append the journal's rows up to end to the open segment (opening one if needed), then release them.

        When the spool is full, only the labels are written; the rows are dropped and counted.
        """
        labels, dropped = label_lines(data), 0
        if self._spool_size() + len(data) > self.spool_max_bytes:
            # A label was acknowledged to its sender: it is kept, the spool's cap is for the rows, many times more.
            dropped = data.count(b"\n") - labels
            data = b"".join(line for line in data.splitlines(keepends=True) if line.startswith(_LABEL_LINE))
        if data:
            if self._segment is None:
                self._sequence += 1
                self._segment = _Segment(self.spool, self._sequence)
            segment = self._segment
            # Recorded first: a writer that dies from here until taken() leaves a journal saying what the segment holds.
            self._journal.commit(segment.started_ms, segment.sequence, segment.size, segment.size + len(data), end)
            segment.append(data)
            self._spool_bytes += len(data)
        self._journal.taken(end)
        with self._room:
            self._room.notify_all()
        if dropped:
            self._count("dropped_spool_full", dropped)
        if not data:
            return
        self._count("logged", data.count(b"\n") - labels)
        if self.on_written is not None:
            try:
                self.on_written(data)
            except Exception as error:  # noqa: BLE001 - the rows are written: a failing listener must not repeat them
                self._complaints.warning("prediction log: the pass index missed a batch: %s: %s",
                                         type(error).__name__, error)

    def _due(self) -> bool:
        """True when the open segment is old or big enough to seal."""
        segment = self._segment
        return segment is not None and (segment.size >= self.segment_bytes
                                        or time.monotonic() - segment.started >= self.segment_s)

    def _seal(self) -> None:
        """Seal the open segment, if any."""
        if self._segment is not None:
            self._segment.seal()
            self._segment = None

    def _spool_size(self) -> int:
        """Bytes of segments in the spool, scanned at most once a second and counted on between scans."""
        now = time.monotonic()
        if now - self._scanned >= SCAN_S:
            self._spool_bytes, self._scanned = total_bytes(spool_files(self.spool)), now
        return self._spool_bytes
