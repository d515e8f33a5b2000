"""A cache of decoded arrays under the data root, safe against truncated or corrupted files.

A cache entry ``<root>/cache/<key>`` is one ``.npy`` file per array (``<key>.<array>.npy``) and a
JSON sidecar ``<key>.json`` holding, for every array, its shape, dtype, byte size and sha256,
plus free-form metadata (class names, where the data came from). Every file is written to a
temporary name and renamed into place (atomic on one file system), and the sidecar is written
last, so an entry without a sidecar was never finished. A read checks the sidecar against the
files (size, header, sha256: about 1.2 GB/s here) and, when anything disagrees, warns, deletes
the entry and reports a miss, so it is rebuilt and never silently used.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcl.files import atomic_write

FORMAT = 1  # bump when the layout of cache entries changes; older entries are rebuilt
_CHUNK = 1 << 24


class CacheWarning(UserWarning):
    """A cache entry was found damaged or stale and is being rebuilt."""


@dataclass
class CacheEntry:
    """What a cache read or write produced: the arrays, their metadata and the sidecar's path."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: Path  # the sidecar <root>/cache/<key>.json
    hit: bool  # True when read from the cache, False when just built


def cache_dir(root: Path) -> Path:
    """``<root>/cache``: where decoded arrays live."""
    return Path(root) / "cache"


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_key(key: str) -> None:
    if not key or "/" in key or "\\" in key or key.startswith("."):
        raise ValueError(f"key={key!r} must be a plain file name (no slashes, not starting with '.')")


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(file)`` into a temporary file next to ``path``, then rename it."""
    atomic_write(path, write)


def _array_path(directory: Path, key: str, name: str) -> Path:
    return directory / f"{key}.{name}.npy"


def save(root: Path, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> Path:
    """Store ``arrays`` (name -> ndarray) under ``key``; return the sidecar's path (written last)."""
    _check_key(key)
    directory = cache_dir(root)
    sidecar = directory / f"{key}.json"
    sidecar.unlink(missing_ok=True)  # an entry being rewritten is unfinished until the new sidecar lands
    described = {}
    for name, array in arrays.items():
        if not name.isidentifier():
            raise ValueError(f"array name {name!r} must be an identifier")
        array = np.ascontiguousarray(array)
        path = _array_path(directory, key, name)
        _atomic_write(path, lambda f, a=array: np.save(f, a, allow_pickle=False))
        described[name] = {
            "file": path.name,
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
    doc = {"format": FORMAT, "key": key, "created": time.time(), "arrays": described, "meta": meta or {}}
    _atomic_write(sidecar, lambda f: f.write(json.dumps(doc, indent=1).encode()))
    return sidecar


def _invalidate(directory: Path, key: str, reason: str) -> None:
    warnings.warn(
        f"cache entry {directory / key}.* is damaged or stale ({reason}); rebuilding it",
        CacheWarning,
        stacklevel=3,
    )
    for path in directory.glob(f"{key}.*"):
        path.unlink(missing_ok=True)


def load(root: Path, key: str, *, mmap: bool = False) -> CacheEntry | None:
    """The entry ``key`` when it is complete and intact, else ``None`` (a damaged one is deleted).

    ``mmap=True`` maps the arrays read-only instead of reading them into memory.
    """
    _check_key(key)
    directory = cache_dir(root)
    sidecar = directory / f"{key}.json"
    if not sidecar.is_file():
        return None
    try:
        doc = json.loads(sidecar.read_text())
        if doc.get("format") != FORMAT or doc.get("key") != key:
            raise ValueError(f"format {doc.get('format')} (expected {FORMAT})")
        arrays = {}
        for name, info in doc["arrays"].items():
            path = directory / info["file"]
            if not path.is_file():
                raise ValueError(f"{path.name} is missing")
            size = path.stat().st_size
            if size != info["bytes"]:
                raise ValueError(f"{path.name} has {size} bytes, expected {info['bytes']}")
            actual = sha256_file(path)
            if actual != info["sha256"]:
                raise ValueError(f"{path.name} has sha256 {actual}, expected {info['sha256']}")
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            if list(array.shape) != info["shape"] or array.dtype.str != info["dtype"]:
                raise ValueError(
                    f"{path.name} holds {array.dtype.str} {array.shape}, "
                    f"expected {info['dtype']} {tuple(info['shape'])}"
                )
            arrays[name] = array
    except (ValueError, KeyError, TypeError, OSError) as err:  # json.JSONDecodeError is a ValueError
        _invalidate(directory, key, str(err))
        return None
    return CacheEntry(arrays, doc["meta"], sidecar, hit=True)


def cached(
    root: Path,
    key: str,
    build: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]],
    *,
    mmap: bool = False,
    rebuild: bool = False,
) -> CacheEntry:
    """Read ``key`` from the cache, or call ``build() -> (arrays, meta)``, store and return it.

    ``rebuild=True`` ignores an existing entry. ``entry.hit`` tells which of the two happened.
    """
    if not rebuild:
        entry = load(root, key, mmap=mmap)
        if entry is not None:
            return entry
    arrays, meta = build()
    sidecar = save(root, key, arrays, meta)
    return CacheEntry(dict(arrays), meta, sidecar, hit=False)
