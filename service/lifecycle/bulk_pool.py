"""What makes the bulk pool a good neighbour of the main one: a lower CPU priority, and memory given back.

The bulk pool (POOL=bulk) runs batches, explanations and labels on workers of its own. Its CPU priority is
lowered once, in its gunicorn master, so its workers inherit it; after each request a worker returns what
the request's objects took, so a 10,000-record batch does not leave a worker hundreds of MB larger.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from pathlib import Path

log = logging.getLogger("regno")

#: Where Linux keeps the nice value of a process's autogroup (its session): with autogroups on, nice alone only
#: ranks processes within one session, and make serve starts each gunicorn in a session of its own.
_AUTOGROUP = Path("/proc/self/autogroup")


def _load_libc():
    """glibc, for malloc_trim; None on a C library without it (musl)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def lower_priority(nice: int) -> None:
    """Lower this process's CPU priority by nice (and its autogroup's, where there is one); children inherit it."""
    if nice <= 0:
        return
    os.nice(nice)
    try:
        _AUTOGROUP.write_text(f"{nice}\n")
    except OSError:  # no autogroups (a container's cgroup ranks it instead), or not allowed: nice is enough
        pass
    log.info("bulk pool: CPU priority lowered by %d", nice)


def release_memory() -> None:
    """Collect the garbage a request left and hand the freed heap back to the system."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
