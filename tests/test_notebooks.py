"""The chapters as files: each stored notebook is its percent-script source converted (so without outputs),
and papermill sees every parameter of its parameters cell."""

import ast
import importlib.util
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "book" / "sources").glob("*.py"))

spec = importlib.util.spec_from_file_location("book_notebook", ROOT / "book" / "notebook.py")
book_notebook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_notebook)


def notebook_of(source: Path) -> Path:
    return ROOT / "book" / f"{source.stem}.ipynb"


def test_every_source_has_a_notebook():
    assert SOURCES and all(notebook_of(s).exists() for s in SOURCES)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_notebook_is_its_source_converted(source):
    stored = nbformat.read(notebook_of(source), as_version=4)
    converted = book_notebook.script_to_notebook(source.read_text())
    assert [(c.cell_type, c.source, c.metadata) for c in stored.cells] == [
        (c.cell_type, c.source, c.metadata) for c in converted.cells
    ], f"run: .venv/bin/python book/notebook.py {source.relative_to(ROOT)}"
    assert not any(c.get("outputs") for c in stored.cells)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_papermill_sees_every_parameter(source):
    stored = nbformat.read(notebook_of(source), as_version=4)
    (cell,) = [c for c in stored.cells if "parameters" in c.metadata.get("tags", [])]
    assigned = set()
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign):
            assigned |= {t.id for t in node.targets}
        elif isinstance(node, ast.AnnAssign):
            assigned.add(node.target.id)
    assert set(papermill.inspect_notebook(str(notebook_of(source)))) == assigned
