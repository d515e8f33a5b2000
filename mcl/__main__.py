"""The ``mcl`` command line: ``python -m mcl <group> <command>``.

``python -m mcl data list``      what each data set needs, and what this machine has of it
``python -m mcl data prepare``   find, unpack, decode and cache every data set it can; print a table
``python -m mcl doctor``         is this machine ready? packages, data, CPU, GPU, workshop time (mcl.doctor)

More groups (training, the book) can be added as further sub-parsers in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from mcl.data import sources


def _real_preparers() -> dict[str, list[tuple[str, Callable[[], Any]]]]:
    """Data set name -> [(part, load call)], the loads that fill the cache."""
    from mcl.data.captions import load_coco_captions, load_flickr30k
    from mcl.data.celeba import load_celeba
    from mcl.data.cifar import load_cifar10
    from mcl.data.cifar_mnist import load_cifar_mnist
    from mcl.data.imagenet import load_imagenet
    from mcl.data.mnist import load_mnist

    return {
        "mnist": [("train", lambda: load_mnist("train")), ("test", lambda: load_mnist("test"))],
        "cifar10": [("train", lambda: load_cifar10("train")), ("test", lambda: load_cifar10("test"))],
        "cifar_mnist": [("test, n=1000 (composed on load)", lambda: load_cifar_mnist("test", n=1000))],
        "celeba": [("train, 64 px (caches all faces)", lambda: load_celeba("train", size=64))],
        "coco": [("val2017", lambda: load_coco_captions(split="val2017"))],
        "flickr30k": [("test", lambda: load_flickr30k(split="test"))],
        "imagenet": [("train", lambda: load_imagenet("train")), ("val", lambda: load_imagenet("val"))],
    }


# Generated data sets, written by other modules: module -> (loader name, parts to prepare).
GENERATED = {"trifeature": ("load_trifeature", ("train", "test"))}


def _generated_preparers() -> dict[str, list[tuple[str, Callable[[], Any]]]]:
    out = {}
    for name, (loader, parts) in GENERATED.items():
        if importlib.util.find_spec(f"mcl.data.{name}") is None:
            continue
        function = getattr(importlib.import_module(f"mcl.data.{name}"), loader, None)
        if function is not None:
            out[name] = [(part, lambda f=function, p=part: f(p)) for part in parts]
    return out


def _describe(result: Any) -> tuple[str, str, float]:
    """(number of items, shape, MB) of a loaded data set."""
    images = getattr(result, "images", None)
    if images is not None and hasattr(images, "shape"):
        return str(len(result)), "x".join(map(str, images.shape[1:])), images.numel() / 1e6
    if hasattr(result, "captions"):
        return f"{len(result)} images, {sum(map(len, result.captions))} captions", "files", 0.0
    if hasattr(result, "samples"):
        return f"{len(result)} ({len(result.classes)} classes)", "files", 0.0
    return str(len(result)) if hasattr(result, "__len__") else "?", "?", 0.0


def _short(origin: str) -> str:
    """``"mirror: /long/path/file.tar.gz"`` -> ``"mirror: file.tar.gz"``."""
    source, _, path = origin.partition(": ")
    return f"{source}: {os.path.basename(path.rstrip('/'))}" if path else origin


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _prepare_one(name: str, part: str, load: Callable[[], Any]) -> tuple[list[str], str]:
    """Run one load; return its table row and its outcome: "ok", "not found" or "error" (unexpected)."""
    start = time.perf_counter()
    before = len(sources.history())
    try:
        result = load()
    except sources.DataNotFoundError as err:
        print(f"\n{err}\n", file=sys.stderr)
        row = [name, part, "not found", "-", "-", "-", "-", f"{time.perf_counter() - start:.1f}"]
        return row, "not found"
    except Exception as err:  # noqa: BLE001 - one failing data set must not stop the others
        print(f"\n{name} ({part}): {type(err).__name__}: {err}\n", file=sys.stderr)
        row = [name, part, f"error: {type(err).__name__}", "-", "-", "-", "-"]
        return [*row, f"{time.perf_counter() - start:.1f}"], "error"
    seconds = time.perf_counter() - start
    records = sources.history()[before:]
    where = ", ".join(dict.fromkeys(r.source for r in records)) or "generated"
    origin = ", ".join(dict.fromkeys(_short(r.origin) for r in records)) or "-"
    items, shape, mb = _describe(result)
    return [name, part, where, origin, items, shape, f"{mb:.0f}" if mb else "-", f"{seconds:.1f}"], "ok"


def _manual_only(name: str) -> bool:
    """A data set this command can never fetch itself (no mirror copy, no download): its absence fails
    ``prepare`` only when it was asked for by name."""
    spec = sources.SPECS.get(name)
    return spec is not None and not spec.mirror and spec.download is None


def data_prepare(only: Sequence[str] | None = None) -> int:
    """Prepare every data set (or those in ``only``); print what came from where. Returns an exit code:
    0 when every data set asked for was prepared (without ``only``: every one this command can fetch, i.e.
    not Flickr30k and ImageNet, which are put in place by hand), 1 when one was not found or failed, 2 for
    an unknown name."""
    preparers = {**_real_preparers(), **_generated_preparers()}
    unknown = sorted(set(only or ()) - set(preparers))
    if unknown:
        print(f"unknown data set(s) {unknown}; choose from {sorted(preparers)}", file=sys.stderr)
        return 2
    print(f"data root: {sources.data_root()}   mirror: {sources.mirror_dir() or '(MCL_DATA_MIRROR unset)'}")
    rows, missing, failed = [], [], []
    for name, parts in preparers.items():
        if not only or name in only:
            for part, load in parts:
                row, outcome = _prepare_one(name, part, load)
                rows.append(row)
                if outcome == "error":
                    failed.append(f"{name} ({part})")
                elif outcome == "not found" and (only or not _manual_only(name)):
                    missing.append(f"{name} ({part})")
    print(_table(rows, ["data set", "part", "source", "first from", "items", "shape", "MB", "seconds"]))
    problems = [
        f"{what}: {', '.join(names)}" for what, names in (("not found", missing), ("failed", failed)) if names
    ]
    if problems:
        print(
            f"\n{'; '.join(problems)} (what was tried, and how to fix it, is printed above)", file=sys.stderr
        )
        return 1
    return 0


def data_list() -> int:
    """Print each data set's layout and whether this machine has it locally, cached, or in the mirror."""
    root = sources.data_root()
    mirror = sources.mirror_dir()
    cached = sorted(p.stem for p in (root / "cache").glob("*.json"))
    print(f"data root: {root}\nmirror:    {mirror or '(MCL_DATA_MIRROR unset)'}\n")
    rows = []
    for name, spec in sources.SPECS.items():
        local = "yes" if spec.present(root, None) else "no"
        if not spec.mirror:
            in_mirror = "-"
        elif mirror is None:
            in_mirror = "?"
        else:
            in_mirror = "yes" if all((mirror / f).is_file() for f in spec.mirror) else "no"
        keys = ", ".join(k for k in cached if k.startswith(name + "-")) or "-"
        download = "yes" if spec.download else "no"
        rows.append([name, spec.title, local, in_mirror, download, keys])
    print(_table(rows, ["name", "data set", "local", "mirror", "download", "cached"]))
    generated = [n for n in GENERATED if importlib.util.find_spec(f"mcl.data.{n}") is not None]
    print(f"\ngenerated (no files needed): {', '.join(generated) or '-'}")
    print("\nlocal layouts, under the data root:")
    for spec in sources.SPECS.values():
        print(f"  {spec.name:10s} {spec.layout}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mcl", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="the data root (default: $MCL_DATA_ROOT, else data/ or ~/.cache/mcl)")

    data = groups.add_parser("data", help="data sets: list them, prepare the cache")
    commands = data.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", parents=[common], help="what each data set needs and what is here")
    listing.set_defaults(run=lambda args: data_list())
    prepare = commands.add_parser("prepare", parents=[common], help="find, unpack, decode, cache")
    prepare.add_argument("--only", nargs="+", metavar="NAME", help="only these (e.g. mnist cifar10)")
    prepare.set_defaults(run=lambda args: data_prepare(args.only))

    doctor = groups.add_parser("doctor", parents=[common], help="is this machine ready? (mcl.doctor)")
    doctor.add_argument("--seconds", type=float, default=5.0, help="micro-benchmark length (0: skip it)")
    doctor.set_defaults(run=lambda args: importlib.import_module("mcl.doctor").doctor(seconds=args.seconds))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "root", None):
        os.environ[sources.ENV_ROOT] = args.root
    try:
        return args.run(args)
    except ValueError as err:  # a bad data root or setting: its message names it and the fix
        print(f"python -m mcl: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
