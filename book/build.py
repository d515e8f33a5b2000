"""Build the book: execute each chapter with papermill at one scale, then run Jupyter Book.

    python book/build.py --scale smoke|book|paper [--force] [--only NAME]

Sources stay output-free. Everything goes under ``_build/<scale>/``:
``src/`` (a copy of the book with executed chapters), ``results/`` (the chapters' results
files, see :mod:`mcl.results`) and ``html/``. A chapter is re-executed only when its inputs
change: the notebook, the library's source, or the parameters (the cache key covers all three).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def chapters_in_toc(toc_path: Path) -> list[str]:
    """The ``file:`` entries of the table of contents, in order (without suffix)."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            for key in ("chapters", "sections", "parts"):
                walk(entry.get(key, []))

    walk(toc.get("chapters", []) + toc.get("parts", []))
    return files


def inputs_digest() -> str:
    """sha256 over the library's source files and the book's data files (the committed search results the
    chapters read), so a change to either re-executes the chapters."""
    digest = hashlib.sha256()
    data = [path for path in (ROOT / "book" / "data").rglob("*") if path.is_file()]
    for path in sorted([*(ROOT / "mcl").rglob("*.py"), *data]):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def execute(notebook: Path, output: Path, parameters: dict, env: dict[str, str]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(notebook),
        str(output),
        "-k",
        "python3",
        "--cwd",
        str(output.parent),
        "--log-output",
        "--no-progress-bar",
    ]
    for key, value in parameters.items():
        cmd += ["-p", key, str(value)]
    subprocess.run(cmd, check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scale", default="book", choices=["smoke", "book", "paper"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--force", action="store_true", help="re-execute every chapter")
    parser.add_argument("--only", action="append", default=[], help="execute only this chapter")
    parser.add_argument("--no-html", action="store_true", help="execute the chapters only")
    args = parser.parse_args(argv)

    out = ROOT / "_build" / args.scale
    src = out / "src"
    results = out / "results"
    cache = out / "cache"
    for folder in (src, results, cache):
        folder.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "book",
        src / "book",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("*.ipynb", "build.py", "__pycache__"),
    )

    # figures go into the notebooks through the inline backend (a non-interactive backend such as Agg,
    # from the caller's environment, would silently drop every figure)
    env = dict(
        os.environ,
        MCL_RESULTS_DIR=str(results),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    parameters = {"scale": args.scale, "device": args.device}
    lib = inputs_digest()
    failed = []
    for chapter in chapters_in_toc(ROOT / "_toc.yml"):
        notebook = ROOT / f"{chapter}.ipynb"
        if not notebook.exists():
            continue
        name = notebook.stem
        if args.only and name not in args.only:
            continue
        output = src / f"{chapter}.ipynb"
        key = hashlib.sha256(notebook.read_bytes() + lib.encode() + json.dumps(parameters).encode())
        key_file = cache / f"{name}.key"
        if (
            not args.force
            and output.exists()
            and key_file.exists()
            and key_file.read_text() == key.hexdigest()
        ):
            print(f"[book] {name}: inputs unchanged, reusing the executed notebook")
            continue
        print(f"[book] executing {name} at scale={args.scale}", flush=True)
        start = time.perf_counter()
        try:
            execute(notebook, output, parameters, env)
        except subprocess.CalledProcessError:
            failed.append(name)
            key_file.unlink(missing_ok=True)
            continue
        key_file.write_text(key.hexdigest())
        print(f"[book] {name}: {time.perf_counter() - start:.1f} s", flush=True)
    if failed:
        print(f"[book] chapters that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if args.no_html:
        return 0
    subprocess.run(
        [
            str(Path(sys.executable).with_name("jupyter-book")),
            "build",
            str(src),
            "--path-output",
            str(out),
            "-W",
            "-n",
            "--keep-going",
        ],
        check=True,
        env=env,
    )
    print(f"[book] HTML: {out / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
