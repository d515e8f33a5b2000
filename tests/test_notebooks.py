"""The chapters as files: one MyST Markdown source each (no stored notebook twin), one parameters cell of
typed literals, every parameter visible to papermill with its type."""

import ast
import re
import subprocess
from pathlib import Path

import papermill
import pytest

from mclbook.build import chapter_notebook, chapters_in_toc, is_chapter

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [ROOT / f"{c}.md" for c in chapters_in_toc(ROOT / "_toc.yml") if is_chapter(ROOT / f"{c}.md")]


def test_every_chapter_has_one_text_source_and_no_notebook_twin():
    assert len(CHAPTERS) >= 9
    tracked = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout.split() == []


def parameters_cell(source: Path) -> str:
    cells = [c for c in chapter_notebook(source).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{source.name}: exactly one cell tagged 'parameters'"
    return cells[0].source


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_sees_every_parameter_with_its_type(source, tmp_path):
    assigned = {}
    for node in ast.parse(parameters_cell(source)).body:
        assert isinstance(node, ast.AnnAssign), f"{source.name}: annotate {ast.unparse(node)!r} with a type"
        assigned[node.target.id] = ast.unparse(node.annotation)
    notebook = tmp_path / f"{source.stem}.ipynb"
    import nbformat

    nbformat.write(chapter_notebook(source), notebook)
    seen = papermill.inspect_notebook(str(notebook))
    assert set(seen) == set(assigned)
    for name, annotation in assigned.items():
        assert seen[name]["inferred_type_name"] == annotation, name


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_set_up_and_results_cells_are_collapsed_for_readers(source):
    """The cell after ``parameters`` (imports, set-up) is shown to readers behind a toggle; the cell that
    writes the results file too, without its output (the file's path on the building machine)."""
    cells = [c for c in chapter_notebook(source).cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(cells) if "parameters" in tags(c))
    assert "hide-input" in tags(cells[first + 1]), f"{source.name}: tag the set-up cell hide-input"
    for cell in cells:
        if re.search(r"^save_results\(", cell.source, re.MULTILINE):
            assert {"hide-input", "remove-output"} <= set(tags(cell)), f"{source.name}: the save_results cell"
