"""Build the book: execute each chapter with papermill at one scale, then run Jupyter Book.

    python -m mclbook.build --scale smoke|book|paper [--jobs N] [--force] [--only NAME]

A chapter's one source is a MyST Markdown notebook, ``book/<chapter>.md`` (jupytext's ``myst`` format);
the ``.ipynb`` that papermill executes is generated from it here. Everything goes under
``_build/<scale>/``: ``executed/`` (the notebooks as papermill executed them, with a record of the
execution), ``src/`` (a copy of the book with the pages made from them, see :mod:`mclbook.pages`),
``results/`` (the chapters' results files, see :mod:`mclbook.results`), ``logs/`` (each execution's
output, and its progress bars: the build sets ``MCL_PROGRESS`` to the log, see :mod:`mcl.progress`, so
no bar reaches a page) and ``_build/html/``. A chapter is re-executed only when its inputs change: its
source, the parameters, the source of every module it imports (directly or not:
:func:`mclbook.runcache.module_closure`) or the book's data files.

``--jobs N`` executes N chapters at a time, longest first (by the wall time in each chapter's last
results file), each kernel with ``cpu_count / N`` threads and N worker processes that train the chapter's
runs ahead (:class:`mclbook.experiments.Trainer`). Chapters share cached training runs and probes; a run
is locked while it trains (:func:`mclbook.runcache.exclusive`), so a chapter that needs a run another one
is training waits for it.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext
import nbformat
import yaml

from mclbook import pages, runcache
from mclbook.runcache import code_digest

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
# Chapters that read the other chapters' results files: executed after all the others, and again whenever
# one of those files changes.
SUMMARIES = ("scorecard", "intro")
_SAY_LOCK = threading.Lock()


def say(message: str, *, error: bool = False) -> None:
    """Print one ``[book]`` line whole (chapters run in threads; ``print`` writes text and newline apart)."""
    with _SAY_LOCK:
        print(f"[book] {message}", file=sys.stderr if error else sys.stdout, flush=True)


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


def is_chapter(source: Path) -> bool:
    """A MyST Markdown notebook (jupytext front matter with a kernelspec), not a plain page."""
    return source.suffix == ".md" and "kernelspec:" in source.read_text().split("\n---", 1)[0]


def chapter_notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook of a chapter's MyST source, outputs empty, with the ``python3`` kernelspec."""
    notebook = jupytext.read(source)
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def chapter_imports(notebook: nbformat.NotebookNode) -> list[str]:
    """The modules the chapter's code cells import."""
    names: list[str] = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def data_digest() -> str:
    """sha256 over the book's data files (the committed search records the chapters read)."""
    digest = hashlib.sha256()
    for path in sorted(path for path in (BOOK / "data").rglob("*") if path.is_file()):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def execute(
    notebook: Path, output: Path, parameters: dict, env: dict[str, str], log: Path, *, cwd: Path
) -> bool:
    """Execute ``notebook`` into ``output`` with papermill, the kernel in ``cwd``; its output goes to ``log``.
    True on success."""
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(notebook),
        str(output),
        "-k",
        "python3",
        "--cwd",
        str(cwd),
        "--log-output",
        "--no-progress-bar",
    ]
    for key, value in parameters.items():
        cmd += ["-p", key, str(value)]
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        log.write_text("")
        # appended to, not overwritten: the kernel appends its progress bars to the same file (MCL_PROGRESS)
        with log.open("a") as handle:
            if subprocess.run(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode == 0:
                return True
        if KERNEL_NOT_STARTED not in log.read_text(errors="replace") or attempt == KERNEL_START_ATTEMPTS:
            return False
        say(f"{notebook.stem}: its kernel did not start (attempt {attempt}); starting it again")
    return False


# Two kernels started at the same moment can pick the same free TCP port (jupyter_client chooses ports before
# binding them); the second then dies before running any cell. Such an execution is started again.
KERNEL_NOT_STARTED = "Kernel died before replying to kernel_info"
KERNEL_START_ATTEMPTS = 3


def expected_seconds(name: str, scale: str) -> float:
    """A chapter's last measured wall time: from its results file in this build, else the committed one
    (``results/<scale>/``); 0 when neither exists."""
    for folder in (ROOT / "_build" / scale / "results", ROOT / "results" / scale):
        path = folder / f"{name}.json"
        if path.exists():
            return float(json.loads(path.read_text())["provenance"].get("wall_time_s") or 0)
    return 0.0


def kernel_env(env: dict[str, str], jobs: int, slots: Path | None = None) -> dict[str, str]:
    """``env`` for the kernels when chapters run side by side (``jobs`` > 1): each kernel's CPU threads
    ``cpu_count // jobs`` (unless the caller set ``OMP_NUM_THREADS``: N kernels with all cores each would
    oversubscribe), ``jobs`` worker processes for a chapter's training runs (``MCL_WORKERS``, unless set;
    :class:`mclbook.experiments.Trainer`), so that a chapter left running alone, the longest, still keeps
    every core busy, and with ``slots`` (a folder) ``jobs`` CPU slots there that every training run and
    probe of every process holds while it computes (:func:`mclbook.runcache.cpu_slot`), so that the
    workers never crowd the cores."""
    if jobs == 1:
        return env
    env = dict(env)
    env.setdefault("MCL_WORKERS", str(jobs))
    if slots is not None:
        env.setdefault(runcache.SLOTS_ENV, str(jobs))
        env.setdefault(runcache.SLOTS_DIR_ENV, str(slots))
    if "OMP_NUM_THREADS" in env:
        return env
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return dict(env, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scale", default="book", choices=["smoke", "book", "paper"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--force", action="store_true", help="re-execute every chapter")
    parser.add_argument("--only", action="append", default=[], help="execute only this chapter")
    parser.add_argument("--no-html", action="store_true", help="execute the chapters only")
    parser.add_argument("--jobs", type=int, default=1, help="chapters executed at a time (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1")

    out = ROOT / "_build" / args.scale
    src = out / "src"
    results = out / "results"
    cache = out / "cache"
    executed = out / "executed"
    for folder in (src, results, cache, executed):
        folder.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, src / name)
    in_toc = chapters_in_toc(ROOT / "_toc.yml")
    chapters = [c for c in in_toc if is_chapter(ROOT / f"{c}.md")]
    plain_pages = [c for c in in_toc if c not in chapters and (ROOT / f"{c}.md").exists()]
    sources = {str(ROOT / f"{c}.md") for c in chapters}
    for chapter in chapters:  # a page an earlier build copied as text: the chapter's notebook replaces it
        (src / f"{chapter}.md").unlink(missing_ok=True)
    shutil.copytree(
        BOOK,
        src / "book",
        dirs_exist_ok=True,
        ignore=lambda folder, names: [
            n
            for n in names
            if str(Path(folder) / n) in sources
            or n in ("mclbook", "pyproject.toml", "__pycache__", "data")
            or n.endswith((".egg-info", ".ipynb"))
            or (n.startswith("search_") and n.endswith(".py"))
        ],
    )

    # figures go into the notebooks through the inline backend (a non-interactive backend such as Agg,
    # from the caller's environment, would silently drop every figure)
    env = dict(
        os.environ,
        MCL_RESULTS_DIR=str(results),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    env = kernel_env(env, args.jobs, slots=out / "slots")
    parameters = {"scale": args.scale, "device": args.device}
    data = data_digest()
    logs, inputs = out / "logs", out / "inputs"
    logs.mkdir(exist_ok=True)
    inputs.mkdir(exist_ok=True)

    def run_chapter(chapter: str) -> str | None:
        """Execute one chapter unless its cached execution is current, and write its page; its name when it
        failed, else None."""
        source = ROOT / f"{chapter}.md"
        name = source.stem
        output = executed / f"{chapter}.ipynb"
        page = src / f"{chapter}.ipynb"
        notebook = chapter_notebook(source)
        code = code_digest(*chapter_imports(notebook))
        key = hashlib.sha256(source.read_bytes() + (code + data + json.dumps(parameters)).encode())
        if name in SUMMARIES:  # its inputs include every other chapter's results file
            for path in sorted(results.glob("*.json")):
                if path.stem != name:
                    key.update(path.read_bytes())
        key_file = cache / f"{name}.key"
        if (
            not args.force
            and output.exists()
            and key_file.exists()
            and key_file.read_text() == key.hexdigest()
        ):
            say(f"{name}: inputs unchanged, reusing the executed notebook")
            write_page(output, page)
            return None
        log = logs / f"{name}.log"
        say(f"executing {name} at scale={args.scale} (log: {log})")
        start, since = time.perf_counter(), time.time()
        unexecuted = inputs / f"{name}.ipynb"
        nbformat.write(notebook, unexecuted)
        output.parent.mkdir(parents=True, exist_ok=True)
        page.parent.mkdir(parents=True, exist_ok=True)
        # the kernel runs in the page's folder, as Jupyter Book would run it; its bars go to the log
        chapter_env = dict(env, MCL_PROGRESS=str(log))
        if not execute(unexecuted, output, parameters, chapter_env, log, cwd=page.parent):
            key_file.unlink(missing_ok=True)
            tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
            say(f"{name} FAILED; the end of {log}:\n{tail}", error=True)
            return name
        seconds = time.perf_counter() - start
        result = nbformat.read(output, as_version=4)
        result.metadata[pages.KEY] = pages.execution_record(
            name,
            scale=args.scale,
            parameters=parameters,
            seconds=seconds,
            results=results,
            since=since,
            root=ROOT,
        )
        nbformat.write(result, output)
        key_file.write_text(key.hexdigest())
        write_page(output, page)
        say(f"{name}: {seconds:.1f} s")
        return None

    def write_page(output: Path, page: Path) -> None:
        """The page Jupyter Book renders, made from the executed notebook (on every build, cached or not)."""
        page.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(pages.page_notebook(nbformat.read(output, as_version=4)), page)

    every_chapter = chapters
    chapters = [c for c in chapters if not args.only or Path(c).name in args.only]
    if args.jobs > 1:  # longest first, so the longest chapter does not start last and run alone
        chapters.sort(key=lambda chapter: -expected_seconds(Path(chapter).name, args.scale))
    start = time.perf_counter()
    first = [c for c in chapters if Path(c).name not in SUMMARIES]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        failed = [name for name in pool.map(run_chapter, first) if name]
    failed += [name for c in chapters if Path(c).name in SUMMARIES if (name := run_chapter(c))]
    say(f"chapters done in {time.perf_counter() - start:.1f} s ({args.jobs} at a time)")
    if failed:
        say(f"chapters that failed: {', '.join(failed)}", error=True)
        return 1
    records = {}  # every chapter's last execution, for the front page's line on the whole book
    for chapter in every_chapter:
        if (executed / f"{chapter}.ipynb").exists():
            metadata = nbformat.read(executed / f"{chapter}.ipynb", as_version=4).metadata
            if pages.KEY in metadata:
                records[Path(chapter).name] = metadata[pages.KEY]
    for plain in plain_pages:
        page = src / f"{plain}.md"
        page.write_text(pages.with_book_header((ROOT / f"{plain}.md").read_text(), records, args.scale))
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
    say(f"HTML: {out / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
