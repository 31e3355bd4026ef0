"""The journal: a worker's bounded queue of rows, in memory that outlives the worker.

It is a file of fixed size mapped into the worker's memory (MAP_SHARED): putting a row is a copy into
memory, with no system call and no wait, yet the kernel keeps those pages when the process is killed.
So a row is safe from a SIGKILL from the moment `put` returns, before the answer leaves, and the
shipper recovers what a dead worker's writer had not taken yet.

Layout: a magic (8 bytes), the host's boot id (16), two header slots, then rows as JSON lines. A slot
holds a generation number, start and end (offsets of the unread rows), the writer's commit (below), and
the generation again. Every change of the header writes the whole state into the slot the previous change
did not use, generation last, and only after the bytes it describes: a slot that a kill tore has two
generations that differ, and the other slot still holds the state before the change. A reader takes the
whole slot of the higher generation, so a row is seen whole or not at all.

The producer appends at `end` (a put that would leave less than `keep` bytes free is refused: puts that
may wait leave room for those that may not). The writer takes [start, end) and, before it appends those
rows to its open segment, records a commit: the segment (its start time in ms and its sequence number),
the segment's size before and after the append, and the end it took. Once the segment is fsynced it
releases the rows (`taken`): start moves on and the commit is cleared in one header write. When it has
caught up it resets start and end to 0, and what came in meanwhile is moved down to 0 when it is small;
so the journal fills only while the writer lags, and the file (sparse: a large capacity costs nothing
until a burst uses it) only ever has its first pages written in ordinary traffic.

A dead writer's journal (its flock free) is read by `read_leftover`: the rows [start, end), the commit if
the writer died between recording one and releasing its rows, and whether the host has restarted since
the journal was written. The shipper (shipper.py) decides from the committed segment which of the rows no
segment holds. A journal without the magic was left by a worker of the version before commits (start and
end, then the rows), or by one killed before it wrote the magic (empty).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path
from typing import NamedTuple

from service.predictions.locks import create_locked, owner_is_gone

#: generation, start, end, the commit (segment started-ms, segment sequence, size before, size after, end), generation.
_SLOT = struct.Struct("<9Q")
_pack_slot = _SLOT.pack_into
#: Written once the file has its size: a journal without it is empty, or one the version before commits wrote.
_MAGIC = b"regno-j2"
_BOOT = slice(len(_MAGIC), len(_MAGIC) + 16)
_SLOTS = (_BOOT.stop, _BOOT.stop + _SLOT.size)
HEADER_BYTES = _BOOT.stop + 2 * _SLOT.size
#: The version before: start and end, then the rows.
_LEGACY_HEADER = struct.Struct("<QQ")
_NO_COMMIT = (0, 0, 0, 0, 0)
#: Most bytes that came in during a write which `taken` moves down to offset 0 (under the lock the producer takes).
MOVE_BYTES = 1 << 20
SUFFIX = ".journal"


def boot_id() -> bytes:
    """This host's boot id (16 bytes; zeros where the system has none): it changes when the host restarts."""
    try:
        return bytes.fromhex(Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", ""))
    except (OSError, ValueError):
        return bytes(_BOOT.stop - _BOOT.start)


class Commit(NamedTuple):
    """What the writer was appending when it died: to which segment, from which size to which, up to which end."""

    segment_ms: int
    sequence: int
    before: int
    after: int
    end: int


class Leftover(NamedTuple):
    """What a dead writer's journal holds."""

    #: The unread rows, [start, end).
    rows: bytes
    #: The commit the writer had recorded and not released, or None.
    commit: Commit | None
    #: How many bytes at the head of rows the commit covers (commit.end - start; 0 without a commit).
    committed: int
    #: True when the host has restarted since: the journal's pages may never have reached the disk.
    rebooted: bool


class Journal:
    """A fixed-size, memory-mapped queue of bytes for one process, locked (flock) for as long as it lives.

    put is called from any thread; pending, commit and taken from the writer's thread only.
    """

    def __init__(self, path: Path, capacity: int):
        self.path = path
        self.capacity = capacity
        self.fd = create_locked(path, os.O_RDWR)  # the shipper recovers it once the lock is free
        os.ftruncate(self.fd, HEADER_BYTES + capacity)
        self.memory = mmap.mmap(self.fd, HEADER_BYTES + capacity, mmap.MAP_SHARED)
        self.memory[:_BOOT.stop] = _MAGIC + boot_id()
        self.lock = threading.Lock()
        # A new file reads as zeros: two valid slots of generation 0 saying start = end = 0, no commit.
        self.start = self.end = 0
        self._commit = _NO_COMMIT
        self._generation = 0

    def put(self, data: bytes, keep: int = 0) -> bool:
        """Append data; False (nothing written) when less than keep bytes would be left free."""
        with self.lock:
            end = self.end
            if end + len(data) > self.capacity - keep:
                return False
            self.memory[HEADER_BYTES + end:HEADER_BYTES + end + len(data)] = data
            self.end = end = end + len(data)
            # _store, spelled out on the request's path: after the bytes, so a row is seen whole or not at all.
            self._generation = generation = self._generation + 1
            _pack_slot(self.memory, _SLOTS[generation & 1], generation, self.start, end, *self._commit, generation)
        return True

    def pending(self) -> tuple[int, bytes]:
        """(end, the bytes between start and end): what the writer has not taken yet."""
        with self.lock:
            start, end = self.start, self.end
        return end, self.memory[HEADER_BYTES + start:HEADER_BYTES + end]

    def commit(self, segment_ms: int, sequence: int, before: int, after: int, end: int) -> None:
        """Record, before appending [start, end) to a segment, which segment it is and its size before and after."""
        with self.lock:
            self._commit = (segment_ms, sequence, before, after, end)
            self._store()

    def taken(self, end: int) -> None:
        """The writer has written everything up to end: move start on and clear the commit, in one header write."""
        with self.lock:
            self.start, self._commit = end, _NO_COMMIT
            left = self.end - end
            if not left:
                self.start = self.end = 0
            self._store()
            # What came in during the write, moved down to 0 once the release above is stored: a kill during the
            # copy leaves a header pointing at the rows where they were, which the copy (to below them) spares.
            if 0 < left <= min(end, MOVE_BYTES):
                rest = HEADER_BYTES + end
                self.memory[HEADER_BYTES:HEADER_BYTES + left] = self.memory[rest:rest + left]
                self.start, self.end = 0, left
                self._store()

    def empty(self) -> bool:
        """True when the writer has taken everything."""
        return self.start == self.end

    def close(self) -> None:
        """Unmap, and delete the file (call only once everything was taken)."""
        self.memory.close()
        self.path.unlink(missing_ok=True)
        os.close(self.fd)

    def _store(self) -> None:
        """Write the state into the slot the last change did not use, its generation first and last (under the lock)."""
        self._generation = generation = self._generation + 1
        _pack_slot(self.memory, _SLOTS[generation & 1], generation, self.start, self.end, *self._commit, generation)


def _state(header: bytes, capacity: int | None = None) -> tuple[int, int, Commit | None] | None:
    """(start, end, commit) of the header's newest whole slot; None when neither slot is whole and sound."""
    newest = None
    for offset in _SLOTS:
        generation, start, end, *commit, again = _SLOT.unpack_from(header, offset)
        sound = generation == again and start <= end and (capacity is None or end <= capacity)
        if sound and commit[0]:
            sound = start <= commit[4] <= end and commit[2] <= commit[3]
        if sound and (newest is None or generation > newest[0]):
            newest = (generation, start, end, Commit(*commit) if commit[0] else None)
    return newest[1:] if newest else None


def committed_segment(path: Path) -> tuple[int, int] | None:
    """(started-ms, sequence) of the segment a journal's writer is appending to, or None (no commit, or no file)."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(HEADER_BYTES)
    except FileNotFoundError:
        return None
    state = _state(header) if header.startswith(_MAGIC) and len(header) == HEADER_BYTES else None
    commit = state[2] if state else None
    return (commit.segment_ms, commit.sequence) if commit else None


def read_leftover(path: Path) -> Leftover | None:
    """What a dead process's journal holds, or None while its process lives (or there is no file)."""
    if not owner_is_gone(path):
        return None
    with open(path, "rb") as stream:
        header = stream.read(HEADER_BYTES)
        if not header.startswith(_MAGIC):
            return _legacy_leftover(header + stream.read())
        capacity = os.fstat(stream.fileno()).st_size - HEADER_BYTES
        state = _state(header, capacity) if len(header) == HEADER_BYTES else None
        if state is None:  # never happens to a file this module wrote: a kill tears at most the slot being written
            return Leftover(b"", None, 0, False)
        start, end, commit = state
        stream.seek(HEADER_BYTES + start)  # only the unread rows: the file is as big as the largest batch
        rows = stream.read(end - start)
    stored = header[_BOOT]
    rebooted = stored != boot_id() and any(stored)
    return Leftover(rows, commit, commit.end - start if commit else 0, rebooted)


def _legacy_leftover(data: bytes) -> Leftover:
    """The rows of a journal without the magic: one killed before it was written (empty), or a worker's of the
    version before commits, killed before an upgrade (its header: start and end, then its rows)."""
    start, end = _LEGACY_HEADER.unpack_from(data) if len(data) >= _LEGACY_HEADER.size else (0, 0)
    body = data[_LEGACY_HEADER.size:]
    if not start <= end <= len(body):  # a header it never finished writing: keep the whole lines there are
        start, end = 0, len(body.rstrip(b"\0"))
    return Leftover(body[start:end], None, 0, False)
