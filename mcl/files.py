"""Atomic file writes: a reader never sees a half-written file, and two writers never collide.

Every file the library and the book write that someone else may read at the same time (checkpoints, the
data cache, results files) goes through :func:`atomic_write`: into a uniquely named temporary file beside
the target, flushed to disk, then renamed over it. Temporaries left by a writer that was killed are
removed by the next write to the same target once they are older than :data:`STALE_SECONDS`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

STALE_SECONDS = 3600.0


def remove_stale_temporaries(path: Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Delete the temporaries of ``path`` (``.<name>.*.tmp`` beside it) older than ``older_than`` seconds;
    return what was deleted."""
    removed = []
    cutoff = time.time() - older_than
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # another writer finished or removed it
            continue
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through ``write(file)`` (a binary file) into a temporary file next to it, then rename
    it into place; return the path. On any error the temporary file is removed and the target untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
