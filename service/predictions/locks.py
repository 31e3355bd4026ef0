"""Files owned by a living process: created already locked, and told apart from a dead owner's by the lock.

A writer's journal and open segment carry an flock for as long as their process lives; the kernel drops
it when the process dies, however it dies. So a file whose lock can be taken is a dead writer's.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def create_locked(path: Path, flags: int) -> int:
    """Create path locked by this process; its descriptor.

    The file is created under a name the shipper ignores, locked, and only then given its own name, so a
    file found under that name with its lock free is always a dead writer's, never one caught between
    its creation and its flock.
    """
    creating = path.with_name(f"new-{path.name}")
    descriptor = os.open(creating, flags | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.rename(creating, path)
    return descriptor


def owner_is_gone(path: Path) -> bool | None:
    """True when the process that locked path is gone, False while it lives, None when there is no such file."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True
