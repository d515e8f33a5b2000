"""The workshop edition: student and solution notebooks generated from the chapters, and the offline pack.

    python -m mclbook.workshop notebooks [--out DIR]            # make workshop
    python -m mclbook.workshop pack [--out DIR] [--archive] [--wheels] [--with-solutions]  # workshop-pack

**How a chapter marks an exercise** (one source for the book, the student and the solution notebooks):

1. The task, for the rendered book, between sphinx-exercise's gated directives
   ``{exercise-start}`` (its argument is the exercise's title, ``:label:`` its name) and ``{exercise-end}``.
2. The answer: a code cell tagged ``solution`` that defines a function, between ``{solution-start} <label>``
   (with ``:class: dropdown``, so the book shows it collapsed) and ``{solution-end}``. Inside the function,
   nbgrader's delimiters ``### BEGIN SOLUTION`` / ``### END SOLUTION`` mark the lines the participant
   writes, and the comment lines just above ``### BEGIN SOLUTION`` say what to write (the task).
3. A code cell tagged ``check`` right after it calls a helper of :mod:`mclbook.checks` with the function.

The **student notebook** is the chapter with every solution region replaced by
``raise NotImplementedError("<function>: <task>")`` at the region's indentation (the task comment stays
above it), the directives' fences turned into plain Markdown headings, the ``scale`` parameter set to
``"workshop"`` and no outputs. The **solution notebook** is the chapter itself, with the same headings and
scale. A region must sit inside a function (the check calls it and turns the stub's error into its "not
written yet" line; a region at the top level would stop the notebook with a traceback), so the rest of a
student notebook runs with the stubs in place.

The **pack** (``pack``) is one folder, optionally zipped, for USB sticks: the student notebooks, a copy of
the library and the book's package (``project/``), the decoded arrays of every real data set the workshop
chapters load (``project/data/cache``; Trifeature is generated on the laptop), pinned requirements, an
``install.py`` that makes the environment from the registry or from ``wheels/`` with one command, and a
README. Nothing in it needs the network once installed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from mclbook.build import BOOK, ROOT, chapter_notebook, chapters_in_toc, is_chapter

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTION_TAG, CHECK_TAG = "solution", "check"
WORKSHOP_SCALE = "workshop"
# The Jupyter front end participants open the notebooks with (the book itself needs none: papermill runs it)
FRONTEND = "jupyterlab==4.6.6"
# The real data sets each experiment's loader reads (decoded cache entries under <data root>/cache);
# Trifeature is generated and needs none.
REAL_DATA = {
    "trifeature": (),
    "cifar_mnist": ("mnist-train", "mnist-test", "cifar10-train", "cifar10-test"),
    "cifar10": ("cifar10-train", "cifar10-test"),
    "celeba": ("celeba-32px",),
}
_FENCE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{(?P<kind>exercise|solution)-(?P<edge>start|end)\}[ \t]*(?P<arg>[^\n]*)\n"
    r"(?P<body>.*?)^(?P=fence)[ \t]*$\n?",
    re.MULTILINE | re.DOTALL,
)


class MarkingError(ValueError):
    """A chapter's exercise marking is malformed (the message names the chapter, the cell and the fix)."""


# ------------------------------------------------------------------------------------------ the chapters
def workshop_chapters() -> list[Path]:
    """The chapters in the table of contents that hold at least one exercise (a cell tagged ``solution``)."""
    chapters = [ROOT / f"{c}.md" for c in chapters_in_toc(ROOT / "_toc.yml") if is_chapter(ROOT / f"{c}.md")]
    return [c for c in chapters if any(_is(cell, SOLUTION_TAG) for cell in chapter_notebook(c).cells)]


def _is(cell: nbformat.NotebookNode, tag: str) -> bool:
    return cell.cell_type == "code" and tag in cell.metadata.get("tags", [])


@dataclass(frozen=True)
class Region:
    """One solution region: lines ``[begin, end]`` of a cell (the delimiters included), its indentation,
    the function it belongs to and the task comment above it."""

    begin: int
    end: int
    indent: str
    function: str
    task: str


def solution_regions(source: str, where: str = "a cell") -> list[Region]:
    """The solution regions of one code cell's source (:class:`MarkingError` when one is malformed)."""
    lines = source.split("\n")
    regions, begin = [], None
    for i, line in enumerate(lines):
        text = line.strip()
        if text == BEGIN:
            if begin is not None:
                raise MarkingError(f"{where}: {BEGIN} on line {i + 1} before the {END} of line {begin + 1}")
            begin = i
        elif text == END:
            if begin is None:
                raise MarkingError(f"{where}: {END} on line {i + 1} without a {BEGIN}")
            regions.append(_region(lines, begin, i, where))
            begin = None
        elif "BEGIN SOLUTION" in text or "END SOLUTION" in text:
            raise MarkingError(f"{where}: line {i + 1} {text!r}: write the delimiter alone, as {BEGIN!r}")
    if begin is not None:
        raise MarkingError(f"{where}: {BEGIN} on line {begin + 1} has no {END}")
    return regions


def _region(lines: list[str], begin: int, end: int, where: str) -> Region:
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    if lines[end][: len(lines[end]) - len(lines[end].lstrip())] != indent:
        raise MarkingError(f"{where}: {BEGIN} and {END} (lines {begin + 1}, {end + 1}) differ in indentation")
    function = None
    for line in reversed(lines[:begin]):
        match = re.match(r"^(\s*)def\s+(\w+)\s*\(", line)
        if match and len(match[1]) < len(indent):
            function = match[2]
            break
    if not indent or function is None:
        raise MarkingError(
            f"{where}: the solution region on line {begin + 1} is not inside a function; put the "
            "participant's code in a function's body, so the student notebook runs on with the stub and "
            "the check cell reports it"
        )
    task = []
    for line in reversed(lines[:begin]):
        stripped = line.strip()
        if not stripped.startswith("#") or not line.startswith(indent):
            break
        task.insert(0, stripped.lstrip("#").strip())
    if not task:
        raise MarkingError(
            f"{where}: write the task as comment lines just above {BEGIN} (line {begin + 1}): the stub's "
            "message repeats it"
        )
    return Region(begin, end, indent, function, " ".join(task))


def stub_source(source: str, where: str = "a cell") -> str:
    """A solution cell's source with every region replaced by a stub raising ``NotImplementedError``."""
    lines = source.split("\n")
    for region in reversed(solution_regions(source, where)):
        message = f"{region.function}: {region.task}"
        lines[region.begin : region.end + 1] = [
            f"{region.indent}# YOUR CODE HERE",
            f"{region.indent}raise NotImplementedError({message!r})",
        ]
    stubbed = "\n".join(lines)
    ast.parse(stubbed)  # a stub must leave valid Python
    return stubbed


def _markdown(source: str, audience: str, numbers: dict[str, int]) -> str:
    """A Markdown cell with sphinx-exercise's gated fences turned into plain Markdown for Jupyter."""

    def replace(match: re.Match) -> str:
        kind, edge, arg = match["kind"], match["edge"], match["arg"].strip()
        if edge == "end":
            return ""
        if kind == "exercise":
            numbers["n"] = numbers.get("n", 0) + 1
            return (
                f"---\n### Exercise {numbers['n']}: {arg}\n" if arg else f"---\n### Exercise {numbers['n']}\n"
            )
        if audience == "student":
            return "**Your solution** (replace the `raise NotImplementedError` line; the check tests it):"
        return "**Solution** (the check below tests it):"

    return _FENCE.sub(replace, source).strip()


def _workshop_parameters(source: str, where: str) -> str:
    changed, n = re.subn(r'^(scale: str = )"[a-z]+"', rf'\1"{WORKSHOP_SCALE}"', source, count=1, flags=re.M)
    if n != 1:
        raise MarkingError(
            f'{where}: the parameters cell has no `scale: str = "..."` line to set to workshop'
        )
    return changed


def workshop_notebook(chapter: Path, audience: str) -> nbformat.NotebookNode:
    """The student (``audience="student"``) or solution notebook of a chapter (see the module's docstring)."""
    if audience not in ("student", "solution"):
        raise ValueError(f"audience={audience!r}; use 'student' or 'solution'")
    notebook = chapter_notebook(chapter)
    numbers: dict[str, int] = {}
    cells = []
    for i, cell in enumerate(notebook.cells):
        where = f"{chapter.name}, cell {i + 1}"
        if cell.cell_type == "markdown":
            cell.source = _markdown(cell.source, audience, numbers)
            if not cell.source:
                continue
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "parameters" in cell.metadata.get("tags", []):
                cell.source = _workshop_parameters(cell.source, where)
            if _is(cell, SOLUTION_TAG):
                regions = solution_regions(cell.source, where)
                if not regions:
                    raise MarkingError(
                        f"{where}: tagged '{SOLUTION_TAG}' but has no {BEGIN} ... {END} region"
                    )
                if audience == "student":
                    cell.source = stub_source(cell.source, where)
                else:  # the delimiters are for the generator; the solution notebook shows the plain answer
                    cell.source = "\n".join(
                        line for line in cell.source.split("\n") if line.strip() not in (BEGIN, END)
                    )
            elif BEGIN in cell.source:
                raise MarkingError(f"{where}: holds {BEGIN} but is not tagged '{SOLUTION_TAG}'")
        cells.append(cell)
    notebook.cells = cells
    notebook.metadata["mcl_workshop"] = {"chapter": chapter.name, "audience": audience}
    return notebook


def fill_solutions(student: nbformat.NotebookNode, chapter: Path) -> nbformat.NotebookNode:
    """The student notebook with the chapter's solution cells put back in place of the stubbed ones, in
    order (what a participant who solved every exercise has)."""
    answers = [stub for stub in workshop_notebook(chapter, "solution").cells if _is(stub, SOLUTION_TAG)]
    filled = nbformat.from_dict(json.loads(json.dumps(student)))
    slots = [cell for cell in filled.cells if _is(cell, SOLUTION_TAG)]
    if len(slots) != len(answers):
        raise ValueError(f"{len(slots)} exercise cells in the notebook, {len(answers)} in {chapter.name}")
    for slot, answer in zip(slots, answers, strict=True):
        slot.source = answer.source
    return filled


def write_notebooks(out: Path) -> dict[str, list[Path]]:
    """Write ``out/student/<chapter>.ipynb`` and ``out/solutions/<chapter>.ipynb`` for every workshop
    chapter; return the paths by audience."""
    written: dict[str, list[Path]] = {"student": [], "solution": []}
    for audience, folder in (("student", out / "student"), ("solution", out / "solutions")):
        folder.mkdir(parents=True, exist_ok=True)
        for chapter in workshop_chapters():
            path = folder / f"{chapter.stem}.ipynb"
            nbformat.write(workshop_notebook(chapter, audience), path)
            written[audience].append(path)
    return written


# ------------------------------------------------------------------------------------------------ pack
def _pins(pyproject: Path, extra: str | None = None) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    listed = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return [r for r in listed if not r.startswith("mcl==")]


def requirements() -> list[str]:
    """The pinned set a participant installs: the library's and the book's pins (from the two
    pyproject.toml files), the Jupyter front end, and setuptools (to install the pack's own two packages
    offline)."""
    from importlib.metadata import version

    pins = _pins(ROOT / "pyproject.toml") + _pins(BOOK / "pyproject.toml")
    return [*pins, FRONTEND, f"setuptools=={version('setuptools')}"]


def data_needed(chapters: list[Path]) -> list[str]:
    """The cache entries the chapters' real data sets are decoded into (an experiment counts as used when
    its name appears quoted in a chapter's code)."""
    code = "\n".join(c.source for ch in chapters for c in chapter_notebook(ch).cells if c.cell_type == "code")
    keys = [key for name, keys in REAL_DATA.items() if f'"{name}"' in code for key in keys]
    return list(dict.fromkeys(keys))


def _prepare(key: str) -> None:
    """Build the cache entry ``key`` in the current data root (from wherever the loaders find the data)."""
    from mcl.data.celeba import load_celeba
    from mcl.data.cifar import load_cifar10
    from mcl.data.mnist import load_mnist

    name, _, part = key.partition("-")
    loaders = {
        "mnist": lambda: load_mnist(part),
        "cifar10": lambda: load_cifar10(part),
        "celeba": lambda: load_celeba("train", size=int(part.removesuffix("px"))),
    }
    loaders[name]()


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)  # cache files are only ever replaced by rename, never changed in place
    except OSError:
        shutil.copy2(src, dst)


def _copy_tree(src: Path, dst: Path, suffixes: tuple[str, ...]) -> None:
    for path in sorted(src.rglob("*")):
        if path.is_file() and path.suffix in suffixes and "__pycache__" not in path.parts:
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def build_pack(
    out: Path,
    *,
    chapters: list[Path] | None = None,
    with_solutions: bool = False,
    wheels: bool = False,
    pip_args: list[str] | None = None,
    archive: bool = False,
) -> Path:
    """Write the pack folder ``out/mcl-workshop`` (see the module's docstring); return its path.

    wheels: also download every requirement's wheel into ``wheels/`` with pip (for this platform, or the
    one ``pip_args`` name, e.g. ``["--platform", "win_amd64", "--python-version", "3.12",
    "--only-binary=:all:"]``), so install.py works without the registry. archive: also write
    ``out/mcl-workshop.zip``.
    """
    from mcl.data import cache, sources

    chapters = chapters or workshop_chapters()
    pack = out / "mcl-workshop"
    if pack.exists():
        shutil.rmtree(pack)
    project = pack / "project"
    for audience, folder in (("student", "notebooks"), ("solution", "solutions")):
        if audience == "solution" and not with_solutions:
            continue
        (pack / folder).mkdir(parents=True)
        for chapter in chapters:
            nbformat.write(workshop_notebook(chapter, audience), pack / folder / f"{chapter.stem}.ipynb")

    # the library and the book's package, installed from here (editable), and the book's data records
    for name in ("pyproject.toml", "README.md"):
        project.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    _copy_tree(ROOT / "mcl", project / "mcl", (".py",))
    _copy_tree(BOOK / "mclbook", project / "book" / "mclbook", (".py",))
    _copy_tree(BOOK / "data", project / "book" / "data", (".json",))
    shutil.copy2(BOOK / "pyproject.toml", project / "book" / "pyproject.toml")

    # decoded data: mcl's default data root for a checkout is its data/ folder
    root = sources.data_root()
    data_cache = project / "data" / "cache"
    data_cache.mkdir(parents=True)
    for key in data_needed(chapters):
        if cache.load(root, key) is None:  # not decoded here yet: decode it from the mirror or download
            _prepare(key)
        for path in sorted(cache.cache_dir(root).glob(f"{key}.*")):
            if path.name == f"{key}.json" or path.name.startswith(f"{key}.") and path.suffix == ".npy":
                _link_or_copy(path, data_cache / path.name)

    (pack / "requirements.txt").write_text(
        "# The pins of mcl and its book (pyproject.toml, book/pyproject.toml) and a Jupyter front end.\n"
        + "\n".join(requirements())
        + "\n"
    )
    shutil.copy2(Path(__file__).with_name("pack_install.py"), pack / "install.py")
    (pack / "README.md").write_text(pack_readme(chapters, with_solutions))
    if wheels:
        command = [sys.executable, "-m", "pip", "download", "-r", str(pack / "requirements.txt")]
        subprocess.run([*command, "-d", str(pack / "wheels"), *(pip_args or [])], check=True)
    if archive:
        write_zip(pack, out / "mcl-workshop.zip")
    return pack


def write_zip(folder: Path, path: Path) -> Path:
    """Zip ``folder`` (its name as the archive's top folder); arrays are stored, everything else deflated."""
    tmp = path.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w") as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            method = zipfile.ZIP_STORED if file.suffix in (".npy", ".whl") else zipfile.ZIP_DEFLATED
            archive.write(file, file.relative_to(folder.parent), compress_type=method)
    tmp.replace(path)
    return path


def timing_record() -> dict | None:
    """The committed workshop timing (bench/bench_workshop.py), or None."""
    path = BOOK / "data" / "workshop_timing.json"
    return json.loads(path.read_text()) if path.exists() else None


def timing_points() -> dict[str, str]:
    """Whether each workshop notebook showed its chapter's point in the committed timing run, one sentence
    per notebook."""
    timing = timing_record() or {"notebooks": {}}
    said = {}
    for name, row in timing["notebooks"].items():
        p = row["points"]
        if name == "01_feature_suppression":
            said[name] = (
                f"SimCLR's Trifeature shape probe {p['trifeature_simclr_shape']:.2f}, the one-colour "
                f"control's {p['trifeature_control_shape']:.2f} "
                f"({'shows' if p['shape_below_control'] else 'does not show'}); CIFAR-MNIST suppression "
                f"{p['cifar_mnist_suppression']:+.3f} "
                f"({'shows' if p['cifar_mnist_shows'] else 'does not show'}, from 0.05)"
            )
        elif name == "02_mcl_step_by_step":
            gain, over = p["mcl_minus_simclr"], p["mcl_minus_ensemble"]
            said[name] = (
                f"MCL ({p['concatenation']}) minus SimCLR: shape {gain['shape']:+.3f}, texture "
                f"{gain['texture']:+.3f} ({'shows' if p['mcl_above_simclr_by_0.05'] else 'does not show'}, "
                f"from 0.05); minus the equal-budget ensemble: shape {over['shape']:+.3f}, texture "
                f"{over['texture']:+.3f}"
            )
    return said


def timing_table():
    """The committed workshop timing as a table (a pandas DataFrame, one row per notebook): wall and CPU
    minutes, the load average before and after, the speed micro-benchmark in wall and CPU time, and the
    checks that printed ``right``."""
    import pandas as pd

    timing = timing_record()
    if timing is None:
        path = BOOK / "data" / "workshop_timing.json"
        raise FileNotFoundError(f"{path} is missing: run bench/bench_workshop.py --write")
    rows = {
        name: {
            "minutes": round(row["seconds"] / 60, 1),
            "CPU minutes": round(row["cpu_seconds"] / 60, 1),
            "load before": row["load_before"],
            "load after": row["load_after"],
            "views/s": row["views_per_s"],
            "views/CPU s": row["views_per_cpu_s"],
            "checks right": f"{row['checks_right']}/{row['checks']}",
        }
        for name, row in timing["notebooks"].items()
    }
    return pd.DataFrame(rows).T


def pack_readme(chapters: list[Path], with_solutions: bool) -> str:
    """The pack's README: what is in it, the one install command, how to run, the measured times."""
    timing = timing_record()
    times = ""
    if timing:
        rows = "\n".join(
            f"| {name} | {row['seconds'] / 60:.1f} min | {row['cpu_seconds'] / 60:.1f} min |"
            for name, row in timing["notebooks"].items()
        )
        times = (
            f"\nMeasured on {timing['machine']} shared with other jobs (load average {timing['load_before']} "
            "at the start): the wall time there, and the CPU time, about the wall time of a quiet machine. "
            "`python -m mcl doctor` estimates your laptop's times.\n\n"
            f"| notebook | wall time | CPU time |\n| --- | --- | --- |\n{rows}\n"
        )
    listed = "\n".join(f"- `notebooks/{c.stem}.ipynb`" for c in chapters)
    solutions = (
        "- `solutions/`: the same notebooks with the answers (the chapters themselves)\n"
        if with_solutions
        else ""
    )
    return f"""# MCL workshop: feature suppression and Multistage Contrastive Learning

Everything for the hands-on session, for a laptop without internet: the notebooks, the data, the code.

## Install (once, before the workshop)

You need Python 3.11 or newer. In this folder run

```bash
python install.py
```

It creates a virtual environment here and installs the pinned packages of `requirements.txt`: from
`wheels/` when that folder exists (no internet needed), else from the package index. Then it runs
`python -m mcl doctor`, which checks the environment, the data, the CPU and estimates how long each
notebook takes on this laptop. Show the instructor its output if a line says MISSING or a problem.

## Run

```bash
python install.py --lab                  # Jupyter Lab on the notebooks, from that environment
```

{listed}
{solutions}
Each exercise is a function with a `raise NotImplementedError` line: replace that line with your code and
run the check cell below it. It prints one line: `right`, `not written yet`, or what is wrong and a hint.
The notebooks run at the `workshop` scale (the `scale` parameter in the first code cell); every data set is
in `project/data/cache` or generated on the spot, so nothing is downloaded.
{times}
## What is here

- `notebooks/`: the student notebooks (generated from the book's chapters)
- `project/`: the `mcl` library and the book's package `mclbook` (installed from here), the decoded data
  (`project/data/cache`) and the book's committed search records (`project/book/data`)
- `requirements.txt`: the pinned packages; `install.py`: the one-command setup; `wheels/` (optional): the
  packages themselves, for an offline install
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    notebooks = commands.add_parser(
        "notebooks", help="student and solution notebooks of every workshop chapter"
    )
    notebooks.add_argument("--out", type=Path, default=ROOT / "_build" / "workshop")
    pack = commands.add_parser("pack", help="the folder (and zip) to copy to USB sticks")
    pack.add_argument("--out", type=Path, default=ROOT / "_build" / "workshop")
    pack.add_argument("--archive", action="store_true", help="also write mcl-workshop.zip")
    pack.add_argument("--with-solutions", action="store_true", help="put the solution notebooks in too")
    pack.add_argument("--wheels", action="store_true", help="download every wheel into wheels/ (large)")
    pack.add_argument("--pip-args", default="", help="more arguments of pip download, e.g. '--platform ...'")
    args = parser.parse_args(argv)
    if args.command == "notebooks":
        written = write_notebooks(args.out)
        for audience, paths in written.items():
            for path in paths:
                print(f"[workshop] {audience}: {path}")
        return 0
    path = build_pack(
        args.out,
        with_solutions=args.with_solutions,
        wheels=args.wheels,
        pip_args=args.pip_args.split(),
        archive=args.archive,
    )
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"[workshop] pack: {path} ({size / 1e6:.0f} MB)")
    if args.archive:
        print(f"[workshop] archive: {path.parent / 'mcl-workshop.zip'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
