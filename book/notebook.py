"""Write a chapter notebook from a percent-format script (how the chapters are authored and edited).

    python book/notebook.py book/sources/<chapter>.py      # -> book/<chapter>.ipynb, without outputs

Cells are separated by ``# %%`` (code) and ``# %% [markdown]`` lines; the markdown cell's lines lose their
leading ``# ``. A code cell whose marker line reads ``# %% tags=["parameters"]`` gets papermill's
``parameters`` tag. The notebook gets the ``python3`` kernelspec that ``make setup`` installs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=\[(?P<tags>[^\]]*)\])?\s*$")


def script_to_notebook(text: str) -> nbformat.NotebookNode:
    """The notebook of a percent-format script: one cell per ``# %%`` block, outputs empty."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    cells: list[tuple[bool, list[str], list[str]]] = []
    for line in text.splitlines():
        match = MARKER.match(line)
        if match:
            tags = re.findall(r'"([^"]+)"', match["tags"] or "")
            cells.append((bool(match["markdown"]), tags, []))
        elif cells:
            cells[-1][2].append(line)
    for index, (markdown, tags, lines) in enumerate(cells):
        body = "\n".join(lines).strip("\n")
        if markdown:
            body = "\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines())
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        cell.id = f"cell-{index}"
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        target = path.parents[1] / f"{path.stem}.ipynb"
        nbformat.write(script_to_notebook(path.read_text()), target)
        print(f"{path} -> {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
