"""What a cached computation depends on, and a lock while it is computed.

One rule for every cache of the book (trained unimodal runs, CLIP stages, probes, executed chapters): an
entry's key is a hash of its inputs (settings, data, seed, CPU threads) and of the source of every module its
code imports. The modules are found statically (:func:`module_closure`: the transitive closure of the
``import`` statements of the entry modules, read with :mod:`ast`, lazy imports inside functions
included), so a module that training starts to import is covered without anyone updating a list.

Entries are computed under a cross-process lock (:func:`exclusive`, a :class:`filelock.FileLock` on
``<entry>.lock``), so chapters executed side by side compute a shared entry once: whichever comes first
computes it while the other waits, then loads it.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import Tensor

PACKAGES = ("mcl", "mclbook")


def _source(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The module names ``tree`` imports (absolute; ``from a import b`` gives ``a`` and ``a.b``)."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def module_closure(modules: Iterable[str], packages: Sequence[str] = PACKAGES) -> list[Path]:
    """The source files of ``modules`` and of every module of ``packages`` they import, directly or not,
    with the ``__init__`` of every package on the way (imported first by Python). Sorted paths."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        if parts[0] not in packages or name in seen:
            continue
        path = _source(name)
        if path is None:  # an attribute imported with "from a import b", not a module
            continue
        seen[name] = path
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        tree = ast.parse(path.read_text(), filename=str(path))
        todo.extend(_imported(tree, name, path.name == "__init__.py"))
    return sorted(set(seen.values()))


def code_digest(*modules: str, packages: Sequence[str] = PACKAGES) -> str:
    """sha256 (16 hex digits) of the sources of :func:`module_closure` (``modules``), file names included."""
    digest = hashlib.sha256()
    for path in module_closure(modules, packages):
        digest.update(f"{path.parent.name}/{path.name}".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_key(*, code: Sequence[str], **inputs: Any) -> str:
    """A cache entry's name: a short hash of ``inputs`` (JSON-able), the CPU threads torch uses (they
    change the floating-point order of a run) and the digest of the library modules ``code`` imports
    (:func:`code_digest` over the ``mcl`` package)."""
    inputs = dict(inputs, cpu_threads=torch.get_num_threads(), code=code_digest(*code, packages=("mcl",)))
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_digest(images: Tensor | Any, captions: Sequence[str] | Sequence[Sequence[str]]) -> str:
    """sha256 (16 hex digits) of the images' bytes (of their file paths for a lazy
    :class:`mcl.data.image_text.ImageTextFolder`) and the captions: part of a CLIP run's key."""
    if isinstance(images, Tensor):
        digest = hashlib.sha256(images.contiguous().cpu().numpy().tobytes())
    else:
        digest = hashlib.sha256(json.dumps([str(p) for p in images.image_paths]).encode())
    digest.update(json.dumps([c if isinstance(c, str) else list(c) for c in captions]).encode())
    return digest.hexdigest()[:16]


def tensor_digest(digest: Any, name: str, value: Any) -> None:
    """Feed ``value``, named ``name``, into the hashlib object ``digest``: a tensor's dtype, shape and bytes;
    the items of a dict, list or tuple (a module's extra state, e.g. MoCo's queue pointers) one by one;
    anything else by its ``repr``."""
    if isinstance(value, Tensor):
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"{name}:dict{len(value)}".encode())
        for key, item in value.items():
            tensor_digest(digest, f"{name}.{key}", item)
    elif isinstance(value, list | tuple):
        digest.update(f"{name}:{type(value).__name__}{len(value)}".encode())
        for i, item in enumerate(value):
            tensor_digest(digest, f"{name}[{i}]", item)
    else:
        digest.update(f"{name}={value!r}".encode())


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of a model's class and every entry of its ``state_dict`` (parameters and
    buffers): equal digests, the same function of its input."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, tensor in model.state_dict().items():
        tensor_digest(digest, name, tensor)
    return digest.hexdigest()[:16]


def labeled_digest(data: Any) -> str:
    """sha256 (16 hex digits) of a :class:`mcl.data.base.LabeledImages`: its images and every attribute's
    labels."""
    digest = hashlib.sha256()
    tensor_digest(digest, "images", data.images)
    for name, labels in data.labels.items():
        tensor_digest(digest, name, torch.as_tensor(labels))
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def exclusive(*entries: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on each cache entry (a file or folder, which need not exist yet) for the
    duration of the block; blocks while another process holds one of them.

    The lock is the file ``<entry>.lock`` beside the entry (so deleting or replacing the entry keeps it).
    Entries are locked in sorted order, so two processes locking overlapping sets cannot deadlock. Locks
    are re-entrant within a process (a nested block on the same entry does not wait)."""
    with contextlib.ExitStack() as stack:
        for entry in sorted({Path(e).resolve() for e in entries}):
            entry.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(FileLock(str(entry.with_name(entry.name + ".lock")), is_singleton=True))
        yield


# The build's CPU slots: how many computations may run at once across all its processes, and where their
# lock files are (set by mclbook.build when it runs chapters side by side; unset, nothing is limited).
SLOTS_ENV, SLOTS_DIR_ENV = "MCL_CPU_SLOTS", "MCL_SLOTS_DIR"


@contextlib.contextmanager
def cpu_slot(poll_s: float = 0.05) -> Iterator[None]:
    """Hold one of the build's ``MCL_CPU_SLOTS`` CPU slots (lock files in ``MCL_SLOTS_DIR``) for the block,
    waiting for one to free: chapters and their worker processes then never run more training runs and
    probes at a time than the machine has cores for (more would only share the cores, each slower, and
    evict each other's caches). Without those variables it holds nothing. Take it after an entry's lock
    (:func:`exclusive`), never before, so a process holding a slot never waits for an entry; within a
    process slots are re-entrant."""
    count, folder = os.environ.get(SLOTS_ENV), os.environ.get(SLOTS_DIR_ENV)
    if not count or not folder:
        yield
        return
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{SLOTS_ENV}={count!r} must be an int >= 1 (CPU slots; unset it to limit nothing)")
    Path(folder).mkdir(parents=True, exist_ok=True)
    locks = [FileLock(str(Path(folder) / f"slot{i}.lock"), is_singleton=True) for i in range(int(count))]
    while True:
        for lock in locks:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield
            finally:
                lock.release()
            return
        time.sleep(poll_s)


@contextlib.contextmanager
def computing(*entries: str | Path) -> Iterator[None]:
    """:func:`exclusive` on ``entries``, then a :func:`cpu_slot`: the way to compute a cache entry."""
    with exclusive(*entries), cpu_slot():
        yield
