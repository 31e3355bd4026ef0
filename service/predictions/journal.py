"""The journal: a worker's bounded queue of rows, in memory that outlives the worker.

It is a file of fixed size mapped into the worker's memory (MAP_SHARED): putting a row is a copy into
memory, with no system call and no wait, yet the kernel keeps those pages when the process is killed.
So a row is safe from a SIGKILL from the moment `put` returns, before the answer leaves, and the
shipper recovers what a dead worker's writer had not taken yet.

Layout: a 16-byte header (start, end: offsets of the unread rows) and then rows as JSON lines. The
producer appends at `end` and stores the header after the bytes, so a row is visible only whole. The
writer takes [start, end) and, once it has written those rows to its segment, moves `start` on; when it
has caught up it resets both to 0, so the journal only fills while the writer lags.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path

from service.predictions.locks import create_locked, owner_is_gone

_HEADER = struct.Struct("<QQ")
SUFFIX = ".journal"


class Journal:
    """A fixed-size, memory-mapped queue of bytes for one process, locked (flock) for as long as it lives."""

    def __init__(self, path: Path, capacity: int):
        self.path = path
        self.capacity = capacity
        self.fd = create_locked(path, os.O_RDWR)  # the shipper recovers it once the lock is free
        os.ftruncate(self.fd, _HEADER.size + capacity)
        self.memory = mmap.mmap(self.fd, _HEADER.size + capacity, mmap.MAP_SHARED)
        self.lock = threading.Lock()
        self.start = self.end = 0
        _HEADER.pack_into(self.memory, 0, 0, 0)

    def put(self, data: bytes) -> bool:
        """Append data; False (nothing written) when it does not fit."""
        with self.lock:
            end = self.end
            if end + len(data) > self.capacity:
                return False
            self.memory[_HEADER.size + end:_HEADER.size + end + len(data)] = data
            self.end = end + len(data)
            _HEADER.pack_into(self.memory, 0, self.start, self.end)  # after the bytes: a row is seen whole or not
        return True

    def pending(self) -> tuple[int, bytes]:
        """(end, the bytes between start and end): what the writer has not taken yet."""
        with self.lock:
            start, end = self.start, self.end
        return end, self.memory[_HEADER.size + start:_HEADER.size + end]

    def taken(self, end: int) -> None:
        """The writer has written everything up to end: move start on, back to 0 when nothing is left."""
        with self.lock:
            self.start = end
            if self.start == self.end:
                self.start = self.end = 0
            _HEADER.pack_into(self.memory, 0, self.start, self.end)

    def empty(self) -> bool:
        """True when the writer has taken everything."""
        return self.start == self.end

    def close(self) -> None:
        """Unmap, and delete the file (call only once everything was taken)."""
        self.memory.close()
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def recover(path: Path) -> bytes | None:
    """The rows a dead process's journal still holds, or None while its process lives (or there is no file)."""
    if not owner_is_gone(path):
        return None
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        return b""
    start, end = _HEADER.unpack_from(data, 0)
    body = data[_HEADER.size:]
    if not start <= end <= len(body):  # a header it never finished writing: keep the whole lines there are
        start, end = 0, len(body.rstrip(b"\0"))
    return body[start:end]
