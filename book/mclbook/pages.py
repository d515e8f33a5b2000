"""The pages as readers see them: what the build adds to each executed chapter before Jupyter Book renders it.

* At the top of every page, under its title, one line of provenance: the scale, seed and commit the page
  was built at, and how long its chapter ran, from the chapter's results file (:mod:`mclbook.results`;
  for a chapter without one, from the build's own record of the execution). The front page says the
  same of the whole book.
* The cell papermill injects after the ``parameters`` cell is hidden, and a one-line note in its place
  says which parameters the build set (the ``parameters`` cell itself stays visible: it is the chapter's
  interface).

The executed notebook keeps the record of its execution in its metadata (``metadata.mclbook``), so a page
rebuilt from a cached execution says when, at what commit and how fast that execution ran.
"""

from __future__ import annotations

import ast
import copy
import datetime
import json
from pathlib import Path
from typing import Any

import nbformat

from mclbook.results import git_commit

KEY = "mclbook"
CLASS = "mcl-provenance"


def execution_record(
    name: str,
    *,
    scale: str,
    parameters: dict[str, Any],
    seconds: float,
    results: Path,
    since: float,
    root: Path,
) -> dict[str, Any]:
    """What the build knows about one execution of chapter ``name``: the scale and parameters it set, the
    commit, the seconds the execution took, and the provenance of the results file the chapter wrote
    (``results/<name>.json``, if written since ``since``, a ``time.time()``)."""
    path = results / f"{name}.json"
    provenance, results_file = None, None
    if path.exists() and path.stat().st_mtime >= since:
        provenance = json.loads(path.read_text()).get("provenance")
        results_file = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
    return {
        "scale": scale,
        "parameters": parameters,
        "git_commit": git_commit(),
        "seconds": round(seconds, 1),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "provenance": provenance,
        "results_file": results_file,
    }


NBSP = "\u00a0"  # between a number and its unit, so a line never breaks between them


def duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s``, ``1 h 02 min`` (with non-breaking spaces before the units)."""
    if seconds < 60:
        return f"{seconds:.1f}{NBSP}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}{NBSP}min {secs:02d}{NBSP}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}{NBSP}h {minutes:02d}{NBSP}min"


def commit_text(commit: str) -> str:
    """A short commit id for readers; a dirty working tree said in words."""
    if not commit or commit == "unknown":
        return "an unknown commit"
    short = f"`{commit.removesuffix('+dirty')[:7]}`"
    return f"commit {short} with uncommitted changes" if commit.endswith("+dirty") else f"commit {short}"


def _day(iso: str) -> str:
    return datetime.datetime.fromisoformat(iso).strftime("%-d %B %Y") if iso else "an unknown day"


def provenance_text(record: dict[str, Any]) -> str:
    """The line under a chapter's title (MyST Markdown)."""
    prov = record.get("provenance")
    if prov:
        seed = f", seed {prov['seed']}," if prov.get("seed") is not None else ""
        threads = prov.get("cpu_threads")
        on = f" on {prov['device']}"
        if threads:
            on += f" with {threads} CPU thread{'s' * (threads != 1)}"
        return (
            f"Built at scale **{record['scale']}**{seed} from {commit_text(prov['git_commit'])} on "
            f"{_day(prov.get('written', ''))}; the chapter ran for {duration(prov['wall_time_s'])}{on}. Its "
            f"numbers are in `{record['results_file']}`."
        )
    return (
        f"Built at scale **{record['scale']}** from {commit_text(record['git_commit'])} on "
        f"{_day(record['finished'])}; the chapter ran for {duration(record['seconds'])}."
    )


def _block(text: str) -> str:
    return f"```{{container}} {CLASS}\n{text}\n```"


def _injected_note(source: str) -> str | None:
    """One sentence for the cell papermill injected: its assignments as it wrote them."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    assignments = [ast.get_source_segment(source, node) for node in tree.body if isinstance(node, ast.Assign)]
    if not assignments:
        return None
    values = ", ".join(f"`{a}`" for a in assignments[:-1]) + (" and " if len(assignments) > 1 else "")
    values += f"`{assignments[-1]}`"
    return _block(f"For this page the build set {values}; every other parameter has the value above.")


def _with_header(cells: list, header: str) -> list:
    """``cells`` with ``header`` right under the first Markdown title (or first, without a title)."""
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for line_no, line in enumerate(lines):
            if line.startswith("# "):
                cell.source = "\n".join(lines[: line_no + 1] + ["", header, ""] + lines[line_no + 1 :])
                return cells
        break
    return [nbformat.v4.new_markdown_cell(header)] + cells


def page_notebook(executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook Jupyter Book renders, from an executed chapter with its execution record."""
    notebook = copy.deepcopy(executed)
    record = notebook.metadata.get(KEY)
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            note = _injected_note(cell.source)
            if note:
                cells.append(nbformat.v4.new_markdown_cell(note))
    if record:
        cells = _with_header(cells, _block(provenance_text(record)))
    notebook.cells = cells
    return notebook


def book_text(records: dict[str, dict[str, Any]], scale: str) -> str:
    """The line under the front page's title: the scale, the commits and the chapters' time in all."""
    commits = sorted(
        {(r.get("provenance") or {}).get("git_commit") or r["git_commit"] for r in records.values()}
    )
    seconds = sum((r.get("provenance") or {}).get("wall_time_s") or r["seconds"] for r in records.values())
    which = " and ".join(commit_text(c) for c in commits) if commits else "an unknown commit"
    return (
        f"This book was built at scale **{scale}** from {which}; its {len(records)} chapters ran for "
        f"{duration(seconds)} in all (each chapter's page says its own)."
    )


def with_book_header(markdown: str, records: dict[str, dict[str, Any]], scale: str) -> str:
    """A plain Markdown page's text with the book's provenance line under its title."""
    lines = markdown.split("\n")
    header = _block(book_text(records, scale))
    for line_no, line in enumerate(lines):
        if line.startswith("# "):
            return "\n".join(lines[: line_no + 1] + ["", header, ""] + lines[line_no + 1 :])
    return header + "\n\n" + markdown
