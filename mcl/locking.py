"""Cross-process locks on cache entries, so chapters executed side by side never compute one entry twice.

The book's chapters share cached runs (MCL's stage 0 is chapter 1's SimCLR run; chapters 2-4 read the
same MCL run). When the build executes two chapters at once, whichever reaches an entry first computes it
while the other waits, then loads it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # no advisory locks (Windows): execute chapters one at a time there
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def exclusive(*entries: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on each cache entry (a file or folder, which need not exist yet) for the
    duration of the block; blocks while another process holds one of them.

    The lock is an ``flock`` on the file ``<entry>.lock`` beside the entry (so deleting or replacing the
    entry keeps it). Entries are locked in sorted order, so two processes locking overlapping sets cannot
    deadlock. Do not nest blocks on the same entry in one process (the inner one would wait forever)."""
    handles = []
    try:
        for entry in sorted({Path(e).resolve() for e in entries}):
            entry.parent.mkdir(parents=True, exist_ok=True)
            handle = open(entry.with_name(entry.name + ".lock"), "a")  # noqa: SIM115 (closed below)
            handles.append(handle)
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        for handle in reversed(handles):
            handle.close()  # closing the file releases its lock
