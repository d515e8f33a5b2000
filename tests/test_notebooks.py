"""The chapters as files: one MyST Markdown source each (no stored notebook twin), one parameters cell of
typed literals, every parameter visible to papermill with its type."""

import ast
import re
import subprocess
import sys
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


@pytest.mark.parametrize("source", [c for c in CHAPTERS if c.stem[:2].isdigit()], ids=lambda p: p.stem)
def test_each_chapter_checks_its_parameters_and_its_defaults_pass(source):
    """The cell after the parameters checks every parameter against its declared type
    (:func:`mclbook.parameters.check_parameters`), and the defaults themselves pass."""
    from mclbook.parameters import check_parameters

    cells = [c for c in chapter_notebook(source).cells if c.cell_type == "code"]
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    assert "check_parameters(globals())" in cells[index + 1].source
    namespace: dict = {}
    exec(compile(parameters_cell(source), source.name, "exec"), namespace)
    assert namespace["__annotations__"], "the parameters cell declares its types"
    check_parameters(namespace)


@pytest.mark.slow
def test_a_chapter_run_with_a_bad_parameter_names_it(tmp_path):
    """``papermill -p epochs abc`` stops in the chapter's second cell with one message naming the
    parameter and its declared type, before any data is loaded or model trained."""
    import nbformat

    source = ROOT / "book" / "02_mcl_step_by_step.md"
    notebook = tmp_path / "02.ipynb"
    nbformat.write(chapter_notebook(source), notebook)
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(notebook),
            str(tmp_path / "out.ipynb"),
            parameters={"epochs": "abc", "scale": "smoke", "device": "cpu"},
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
        )
    assert caught.value.ename == "ValueError"
    assert "epochs='abc'" in caught.value.evalue and "epochs: int" in caught.value.evalue
    assert "check_parameters(globals())" in caught.value.source  # the cell right after the parameters


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_passes_the_linter(source, tmp_path):
    """pyflakes' checks (undefined or unused names, and the rest of ruff's F rules) and sorted imports, on
    the chapter's code cells joined as one script."""
    import jupytext

    script = tmp_path / f"{source.stem}.py"
    jupytext.write(chapter_notebook(source), script, fmt="py:percent")
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run(
        [
            str(ruff),
            "check",
            "--select",
            "F,I",
            "--ignore",
            "E402",
            "--config",
            str(ROOT / "pyproject.toml"),
            str(script),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_set_up_and_results_cells_are_collapsed_for_readers(source):
    """The cell after ``parameters`` (imports, set-up) is shown to readers behind a toggle; the cell that
    writes the results file too, without its output (the file's path on the building machine)."""
    cells = [c for c in chapter_notebook(source).cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(cells) if "parameters" in tags(c))
    hidden = {"hide-input", "remove-input", "remove-cell"}
    assert hidden & set(tags(cells[first + 1])), f"{source.name}: tag the set-up cell hide-input"
    for cell in cells:
        if re.search(r"^save_results\(", cell.source, re.MULTILINE):
            shown = {"hide-input", "remove-output"} <= set(tags(cell)) or "remove-cell" in tags(cell)
            assert shown, f"{source.name}: the save_results cell"
