"""``python -m mcl doctor``: is this machine ready to run mcl (and the workshop's notebooks)? A few lines.

It prints, one line each:

* **packages**: every pinned requirement of ``mcl`` and of the installed distributions built on it (the
  book's package, for one), present at its pinned version or not; the Jupyter front end;
* **data**: for every data set, where a load would take it from now (the decoded cache, the local data root,
  the offline mirror ``$MCL_DATA_MIRROR``, a download, or nowhere), the ones the workshop needs first;
* **cpu**: cores, the cores this process may use, torch's threads;
* **gpu**: a usable CUDA (or Apple MPS) device, or none;
* **speed**: a 5-second micro-benchmark, SimCLR training steps of the small CNN at the book's batch of 64
  on 32-pixel images (views per second), and from it the time each workshop notebook should take here:
  the time measured on a reference machine (:data:`WORKSHOP_REFERENCE`) times that machine's speed over
  this one's;
* a verdict, and the exit code: 0 ready, 1 something the workshop needs is missing.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import platform
import re
import time
from collections.abc import Callable

import torch

import mcl
from mcl.data import sources

# The workshop (chapters 1 and 2 of the book at the `workshop` scale): the data sets its notebooks load, and
# what bench/bench_workshop.py measured, notebook by notebook: the CPU time of its kernel and the speed of the
# micro-benchmark below per CPU second, run just before it with the same threads (book/data/
# workshop_timing.json holds the full record, with wall times and the load; a test checks the two agree). CPU
# time, unlike wall time, hardly depends on how busy the reference machine was. The estimate for this machine
# is the notebook's CPU seconds times the reference speed over this machine's speed in wall time.
WORKSHOP_DATA = ("trifeature", "mnist", "cifar10")
WORKSHOP_REFERENCE: dict[str, dict[str, float]] = {
    "01_feature_suppression": {"cpu_seconds": 111.4, "views_per_cpu_s": 1064.3},
    "02_mcl_step_by_step": {"cpu_seconds": 139.8, "views_per_cpu_s": 1120.9},
}
FRONTENDS = ("jupyterlab", "notebook")


def _requirement(text: str) -> tuple[str, str | None, bool]:
    """(normalised name, pinned version or None, only for an extra) of a requirement string."""
    name = re.match(r"[A-Za-z0-9_.-]+", text)[0].lower().replace("_", "-")
    pinned = re.search(r"==\s*([^\s;,]+)", text)
    return name, (pinned[1] if pinned else None), "extra ==" in text.replace('"', " ").replace("'", " ")


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_report() -> tuple[str, list[str]]:
    """(the packages line, the problems): pins of mcl and of every installed distribution requiring mcl."""
    owners = ["mcl"] + sorted(
        {
            dist.metadata["Name"]
            for dist in metadata.distributions()
            if dist.metadata["Name"] and any(_requirement(r)[0] == "mcl" for r in (dist.requires or []))
        }
    )
    checked, problems, versions = 0, [], []
    for owner in owners:
        version = _installed(owner)
        if version is None:
            if owner == "mcl":
                problems.append(
                    f"mcl is imported from {os.path.dirname(mcl.__file__)} but not installed "
                    "(pip install -e .)"
                )
            continue
        versions.append(f"{owner} {version}")
        for text in metadata.requires(owner) or []:
            name, pinned, extra = _requirement(text)
            if extra or name == "mcl":
                continue
            checked += 1
            have = _installed(name)
            if have is None:
                problems.append(f"{name} MISSING (pinned {pinned or 'any'})")
            elif pinned and have != pinned:
                problems.append(f"{name} {have} (pinned {pinned})")
    frontend = next((f"{n} {v}" for n in FRONTENDS if (v := _installed(n))), None)
    if frontend is None:
        problems.append("no Jupyter front end (pip install jupyterlab, or open the notebooks in VS Code)")
    state = "all present at their pinned versions" if not problems else f"{len(problems)} problem(s)"
    line = f"packages: {checked} pins checked, {state} ({', '.join(versions)}; {frontend or 'no Jupyter'})"
    return line, problems


def data_source(name: str) -> str:
    """Where a load of data set ``name`` would come from now: cache, local, mirror, download or missing."""
    if name not in sources.SPECS:
        return "generated" if importlib.util.find_spec(f"mcl.data.{name}") else "missing"
    root = sources.data_root()
    spec = sources.SPECS[name]
    if any((root / "cache").glob(f"{name}-*.json")):
        return "cache"
    if spec.present(root, None):
        return "local"
    mirror = sources.mirror_dir()
    if mirror is not None and spec.mirror and all((mirror / f).is_file() for f in spec.mirror):
        return "mirror"
    if spec.download is not None and os.environ.get(sources.ENV_OFFLINE, "") in ("", "0"):
        return "download (needs internet)"
    return "missing"


def data_report() -> tuple[str, list[str]]:
    """(the data line, the problems: workshop data sets that no source has)."""
    where = {
        name: data_source(name)
        for name in (*WORKSHOP_DATA, *(n for n in sources.SPECS if n not in WORKSHOP_DATA))
    }
    problems = [
        f"data set {name} is {where[name]}: copy the workshop pack's data, or set ${sources.ENV_MIRROR}"
        for name in WORKSHOP_DATA
        if where[name] in ("missing", "download (needs internet)")
    ]
    workshop = ", ".join(f"{n} {where[n]}" for n in WORKSHOP_DATA)
    others = ", ".join(f"{n} {w}" for n, w in where.items() if n not in WORKSHOP_DATA)
    return f"data (root {sources.data_root()}): workshop: {workshop}; others: {others}", problems


def cpu_report() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    busy = ""
    if hasattr(os, "getloadavg") and torch.get_num_threads() > 1 and os.getloadavg()[0] > (usable or 1):
        busy = (
            f"; the machine is busy (load average {os.getloadavg()[0]:.1f}): threads competing for busy "
            "cores slow training down many times, set OMP_NUM_THREADS=1"
        )
    return (
        f"cpu: {os.cpu_count()} cores ({usable} usable by this process), torch threads "
        f"{torch.get_num_threads()}, OMP_NUM_THREADS {omp}; {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}{busy}"
    )


def gpu_report() -> str:
    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return f"gpu: CUDA {props.name}, {props.total_memory / 2**30:.0f} GiB (device='auto' uses it)"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "gpu: Apple MPS is available (the workshop runs on the CPU; device='mps' is untested)"
    except Exception as err:  # noqa: BLE001 - a broken driver is reported, not raised
        return f"gpu: none usable ({type(err).__name__}: {err}); the CPU is enough for the workshop"
    return "gpu: none (the workshop needs none)"


def benchmark(seconds: float = 5.0, *, device: str = "cpu", cpu_time: bool = False) -> float:
    """Views per second of SimCLR training steps (augmentation, forward, backward, Adam) of the small CNN
    (width 32, batch 64, 32x32 images), run for about ``seconds`` after one warm-up step. ``cpu_time``: per
    second of this process's CPU time instead of wall time (on a machine busy with other jobs, CPU time is
    what stays comparable)."""
    from mcl.simclr import SimCLRRecipe, build_model, train_simclr

    clock = time.process_time if cpu_time else time.perf_counter
    recipe = SimCLRRecipe(width=32, proj_dim=64, batch_size=64, epochs=1)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=generator)
    model = build_model(recipe, 3, seed=0)
    config = recipe.config(seed=0, device=device, progress=False)
    augment = recipe.augment((32, 32))
    train_simclr(model, images[:64], config, augment=augment)  # warm-up: allocations, thread pools
    views, start = 0, clock()
    while True:  # two steps of 64 images (256 views) at a time
        train_simclr(model, images, config, augment=augment)
        views += 2 * len(images)
        elapsed = clock() - start
        if elapsed >= seconds:
            return views / elapsed


def estimate(views_per_s: float) -> dict[str, float]:
    """Seconds each workshop notebook should take at ``views_per_s`` (from :data:`WORKSHOP_REFERENCE`)."""
    return {
        name: r["cpu_seconds"] * r["views_per_cpu_s"] / views_per_s for name, r in WORKSHOP_REFERENCE.items()
    }


def speed_report(seconds: float) -> str:
    speed = benchmark(seconds)
    line = f"speed: {speed:,.0f} views/s training the small CNN ({seconds:.0f} s micro-benchmark)"
    times = estimate(speed)
    if times:
        listed = ", ".join(f"{name} ~{s / 60:.1f} min" for name, s in times.items())
        line += f"; workshop notebooks here: {listed} (total ~{sum(times.values()) / 60:.0f} min)"
    return line


def doctor(*, seconds: float = 5.0, say: Callable[[str], None] = print) -> int:
    """Print the report; return 0 when the workshop can run here, 1 when something it needs is missing."""
    say(f"mcl {mcl.__version__} doctor")
    problems: list[str] = []
    for report in (package_report, data_report):
        line, found = report()
        say(line)
        problems += found
    say(cpu_report())
    say(gpu_report())
    if seconds > 0:
        say(speed_report(seconds))
    if problems:
        say("NOT READY: " + "; ".join(problems))
        return 1
    say("ready for the workshop")
    return 0
