"""mcl.progress: bars go where MCL_PROGRESS says, and never warn the reader."""

import warnings

import nbformat
import papermill
import pytest

from mcl.progress import progress


def run_bars() -> None:
    for _ in progress(range(2), desc="outer"):
        for _ in progress(range(3), desc="inner"):
            pass


def test_a_file_gets_one_plain_line_per_redraw_and_stderr_nothing(tmp_path, monkeypatch, capsys):
    log = tmp_path / "chapter.log"
    log.write_text("papermill's own line\n")
    monkeypatch.setenv("MCL_PROGRESS", str(log))
    run_bars()
    lines = log.read_text().splitlines()
    assert lines[0] == "papermill's own line"  # appended to, not overwritten
    assert not any("\r" in line or "\x1b" in line for line in lines)
    assert any(line.startswith("outer: 100%|") for line in lines)
    assert sum(line.startswith("inner: 100%|") for line in lines) == 2
    assert capsys.readouterr().err == ""


def test_off_writes_nothing_and_a_callers_disable_always_wins(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MCL_PROGRESS", "off")
    run_bars()
    assert capsys.readouterr().err == ""
    log = tmp_path / "log"
    monkeypatch.setenv("MCL_PROGRESS", str(log))
    for _ in progress(range(3), disable=True):
        pass
    assert not log.exists()


@pytest.mark.parametrize("mode", ["text", "auto", ""])
def test_text_and_auto_outside_jupyter_draw_on_stderr_without_warnings(mode, monkeypatch, capsys):
    monkeypatch.setenv("MCL_PROGRESS", mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_bars()
    assert "outer: 100%|" in capsys.readouterr().err


def kernel_outputs(tmp_path, monkeypatch, mode: str) -> list:
    """The outputs of a notebook cell that runs a bar in a real Jupyter kernel with ``MCL_PROGRESS=mode``."""
    monkeypatch.setenv("MCL_PROGRESS", mode)  # the kernel inherits the environment
    code = "from mcl.progress import progress\nfor _ in progress(range(3)):\n    pass"
    notebook = tmp_path / "bars.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), notebook)
    papermill.execute_notebook(notebook, tmp_path / "out.ipynb", kernel_name="python3", progress_bar=False)
    return nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs


@pytest.mark.slow  # starts two Jupyter kernels
def test_in_jupyter_one_widget_bar_and_under_the_book_build_none(tmp_path, monkeypatch):
    outputs = kernel_outputs(tmp_path, monkeypatch, "auto")
    assert [o.output_type for o in outputs] == ["display_data"]  # one bar, no stderr, no warning
    assert "application/vnd.jupyter.widget-view+json" in outputs[0].data
    log = tmp_path / "chapter.log"
    assert kernel_outputs(tmp_path, monkeypatch, str(log)) == []
    assert "100%|" in log.read_text()
