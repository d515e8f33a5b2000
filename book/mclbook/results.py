"""Results files with provenance: how numbers move between chapters, the book and the tests.

``results/<scale>/<name>.json`` holds ``{"metrics": ..., "provenance": ...}``; provenance
records the git commit, versions, device, CPU threads, wall time, seed and parameters. The directory is
``$MCL_RESULTS_DIR`` when set (the book build sets it to ``_build/<scale>/results``), else
``_build/<scale>/results`` in the repository. Results recorded on a GPU are committed under
``results/<scale>/`` so the book can show them beside a fresh CPU run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

import mcl
from mcl.files import atomic_write_text

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "results"
BOOK_DATA = REPO / "book" / "data"


def results_dir(scale: str) -> Path:
    env = os.environ.get("MCL_RESULTS_DIR")
    return Path(env) if env else REPO / "_build" / scale / "results"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def provenance(
    *, seed: int | None, parameters: dict[str, Any], device: torch.device | str, wall_time_s: float
) -> dict[str, Any]:
    return {
        "git_commit": git_commit(),
        "mcl": mcl.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "wall_time_s": round(wall_time_s, 2),
        "seed": seed,
        "parameters": parameters,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def save_results(
    name: str,
    metrics: dict[str, Any],
    *,
    scale: str,
    seed: int | None,
    parameters: dict[str, Any],
    device: torch.device | str,
    wall_time_s: float,
    directory: Path | None = None,
) -> Path:
    """Write ``<dir>/<name>.json`` atomically and return its path."""
    folder = directory or results_dir(scale)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    payload = {
        "name": name,
        "scale": scale,
        "metrics": metrics,
        "provenance": provenance(seed=seed, parameters=parameters, device=device, wall_time_s=wall_time_s),
    }
    atomic_write_text(path, json.dumps(payload, indent=2, default=float))
    return path


def load_results(name: str, *, scale: str, directory: Path | None = None) -> dict[str, Any]:
    """Read a results file; a missing one raises naming the chapter that writes it."""
    path = (directory or results_dir(scale)) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run the chapter that writes {name!r} at "
            f"scale={scale!r} first (make book SCALE={scale})"
        )
    return json.loads(path.read_text())


def committed_results(name: str, scale: str = "paper") -> dict[str, Any] | None:
    """A results file committed to the repository (e.g. a GPU run), or None."""
    path = COMMITTED / scale / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def portable_command(command: str) -> str:
    """A recorded command as a reader would run it: the interpreter by its name (``.venv/bin/python`` ->
    ``python``: the recording machine's environment is not the reader's), and an output file given by an
    absolute path on that machine (``--out /tmp/ts/a.json``) by its file name only (``--out a.json``)."""
    command = re.sub(r"^(?:\S*/)?(python[\d.]*)(?=\s|$)", r"\1", command)
    return re.sub(r"(--out[ =])/\S*/([^/\s]+)", r"\1\2", command)


def _portable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: portable_command(v) if k == "command" else _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    return value


@contextlib.contextmanager
def updating_record(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """A search record to change in place: read from ``path`` (``{"candidates": {}}`` when absent), yielded
    to the caller, then written back (indented JSON, atomically), all under a file lock beside it, so that
    searches running side by side merge their rows instead of overwriting each other's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        record = json.loads(path.read_text()) if path.exists() else {"candidates": {}}
        yield record
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def search_command(script: str | os.PathLike) -> str:
    """The command line a search script (``book/search_*.py``) records with its rows, as a reader would
    run it from the repository root: ``python book/<script> <this process's arguments>``."""
    return shlex.join(["python", f"book/{Path(script).name}", *sys.argv[1:]])


def search_record(name: str) -> dict[str, Any]:
    """A committed search record, ``book/data/<name>.json`` (found from this package, so a chapter works
    from any working directory), its commands as a reader would run them (:func:`portable_command`)."""
    path = BOOK_DATA / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; it is committed with the repository: git checkout it"
        )
    return _portable(json.loads(path.read_text()))
