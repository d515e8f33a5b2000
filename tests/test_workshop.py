"""The workshop edition (mclbook.workshop): exercises marked in the chapters, the student and solution
notebooks generated from them, the student notebooks' friendly stubs, the solved notebooks' checks, and the
offline pack run from its unpacked folder without a mirror or the network."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest

from mclbook import build, checks, workshop
from mclbook.build import chapter_notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = workshop.workshop_chapters()


def code_cells(notebook, tag: str | None = None) -> list:
    return [
        c
        for c in notebook.cells
        if c.cell_type == "code" and (tag is None or tag in c.metadata.get("tags", []))
    ]


def check_lines(notebook) -> list[str]:
    return ["".join(o.get("text", "") for o in c.outputs).strip() for c in code_cells(notebook, "check")]


def errors(notebook) -> list[str]:
    return [o.get("ename", "") for c in code_cells(notebook) for o in c.outputs if o.output_type == "error"]


# ------------------------------------------------------------------------------------------ the marking
def test_the_workshop_chapters_are_the_ones_with_exercises():
    assert [c.stem for c in CHAPTERS] == ["01_feature_suppression", "02_mcl_step_by_step"]


def test_the_issue_exercises_are_there_each_with_its_check():
    used = []
    for chapter in CHAPTERS:
        cells = chapter_notebook(chapter).cells
        for i, cell in enumerate(cells):
            if "solution" in cell.metadata.get("tags", []):
                defined = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
                after = next(c for c in cells[i + 1 :] if c.cell_type == "code")
                assert "check" in after.metadata.get("tags", []), f"{chapter.name}: no check after {defined}"
                call = next(n for n in ast.walk(ast.parse(after.source)) if isinstance(n, ast.Call))
                assert call.func.id in checks.CHECKS and call.args[0].id in defined
                used.append(call.func.id)
                lines = cell.source.split("\n")
                body = lines.index(f"    {workshop.END}") - lines.index(f"    {workshop.BEGIN}") - 1
                assert 1 <= body <= 15, f"{defined}: {body} lines to write"
    assert sorted(used) == sorted(checks.CHECKS)


def test_marking_errors_name_the_problem():
    with pytest.raises(workshop.MarkingError, match="not inside a function"):
        workshop.solution_regions(f"# task\n{workshop.BEGIN}\nx = 1\n{workshop.END}")
    with pytest.raises(workshop.MarkingError, match="task as comment"):
        workshop.solution_regions(f"def f():\n    {workshop.BEGIN}\n    return 1\n    {workshop.END}")
    with pytest.raises(workshop.MarkingError, match="has no"):
        workshop.solution_regions(f"def f():\n    # task\n    {workshop.BEGIN}\n    return 1")
    with pytest.raises(workshop.MarkingError, match="alone"):
        workshop.solution_regions("def f():\n    ### BEGIN SOLUTION here\n")


def test_a_stub_keeps_the_task_and_raises_it():
    source = "\n".join(
        ["def f(x):", "    # Double x.", f"    {workshop.BEGIN}", "    return 2 * x", f"    {workshop.END}"]
    )
    stub = workshop.stub_source(source)
    assert "return 2 * x" not in stub and "# Double x." in stub
    namespace: dict = {}
    exec(stub, namespace)
    with pytest.raises(NotImplementedError, match=r"^f: Double x\.$"):
        namespace["f"](1)


# ------------------------------------------------------------------------------------------ the notebooks
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebook_has_stubs_no_answers_no_outputs(chapter):
    student = workshop.workshop_notebook(chapter, "student")
    solution = workshop.workshop_notebook(chapter, "solution")
    assert all(not c.get("outputs") for c in code_cells(student))
    chapter_cells = code_cells(chapter_notebook(chapter), "solution")
    for stubbed, original in zip(code_cells(student, "solution"), chapter_cells, strict=True):
        assert "raise NotImplementedError(" in stubbed.source and workshop.BEGIN not in stubbed.source
        lines = original.source.split("\n")
        for region in workshop.solution_regions(original.source):
            answer = [line for line in lines[region.begin + 1 : region.end] if line.strip()]
            assert answer and not set(answer) & set(stubbed.source.split("\n"))
        ast.parse(stubbed.source)
    for notebook in (student, solution):
        params = code_cells(notebook, "parameters")[0].source
        assert 'scale: str = "workshop"' in params
        markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
        assert "{exercise-start}" not in markdown and "{solution-end}" not in markdown
        assert "### Exercise 1:" in markdown


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_filling_the_solutions_back_gives_the_solution_notebook(chapter):
    filled = workshop.fill_solutions(workshop.workshop_notebook(chapter, "student"), chapter)
    solution = workshop.workshop_notebook(chapter, "solution")
    assert [c.source for c in code_cells(filled)] == [c.source for c in code_cells(solution)]


def test_make_workshop_writes_both_notebooks_per_chapter(tmp_path):
    written = workshop.write_notebooks(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for paths in written.values() for p in paths) == sorted(
        f"{folder}/{c.stem}.ipynb" for folder in ("student", "solutions") for c in CHAPTERS
    )


def kernel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MCL_RESULTS_DIR",)}
    return env | {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "HF_HUB_OFFLINE": "1"} | extra


def papermill(notebook: Path, out: Path, env: dict[str, str], *, cwd: Path, prefix: list[str] = ()) -> None:
    command = [*prefix, sys.executable, "-m", "papermill", str(notebook), str(out), "-k", "python3"]
    command += ["-p", "scale", "smoke", "-p", "device", "cpu", "--cwd", str(cwd), "--no-progress-bar"]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebook_runs_to_its_first_check_and_says_not_written_yet(chapter, tmp_path, smoke_book):
    """Up to its first check cell, at smoke scale, with the smoke build's trained runs (the runs folder
    beside its results), so nothing is trained twice."""
    student = workshop.workshop_notebook(chapter, "student")
    first_check = next(i for i, c in enumerate(student.cells) if "check" in c.metadata.get("tags", []))
    student.cells = student.cells[: first_check + 1]
    nbformat.write(student, tmp_path / "student.ipynb")
    env = build.kernel_env(kernel_env(MCL_RESULTS_DIR=str(smoke_book)), 2)  # the fixture's threads: same runs
    papermill(tmp_path / "student.ipynb", tmp_path / "out.ipynb", env, cwd=tmp_path)
    executed = nbformat.read(tmp_path / "out.ipynb", 4)
    assert errors(executed) == []
    (line,) = check_lines(executed)
    assert line.startswith("not written yet: ") and "\n" not in line


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_solved_chapters_pass_every_check_at_smoke_scale(chapter, smoke_book):
    """The smoke build executes the chapters, which are the solution notebooks, to the end."""
    executed = nbformat.read(ROOT / "_build" / "smoke" / "src" / "book" / f"{chapter.stem}.ipynb", 4)
    lines = check_lines(executed)
    assert lines and all(line.startswith("right: ") and "\n" not in line for line in lines), lines


# ------------------------------------------------------------------------------------------------ pack
def test_pack_requirements_are_the_projects_pins():
    def pins(requirements: list[str]) -> dict[str, str]:
        return dict(r.split("==") for r in requirements)

    project = [
        tomllib.loads((ROOT / p).read_text())["project"] for p in ("pyproject.toml", "book/pyproject.toml")
    ]
    pinned = pins([r for p in project for r in p["dependencies"] if not r.startswith("mcl==")])
    listed = pins(workshop.requirements())
    assert {k: v for k, v in listed.items() if k in pinned} == pinned
    assert set(listed) - set(pinned) == {"jupyterlab", "setuptools"}


def test_pack_needs_mnist_and_cifar10_for_chapter_1_only():
    assert set(workshop.data_needed(CHAPTERS[:1])) == {
        "mnist-train",
        "mnist-test",
        "cifar10-train",
        "cifar10-test",
    }
    assert workshop.data_needed(CHAPTERS[1:]) == []


def offline_prefix() -> list[str]:
    """``unshare -n`` (a network namespace with only loopback up, for the kernel's sockets) when this machine
    allows it; else nothing (the environment then still has no mirror and downloads switched off)."""
    probe = ["unshare", "-n", "sh", "-c", "ip link set lo up"]
    if (
        shutil.which("unshare")
        and shutil.which("ip")
        and subprocess.run(probe, capture_output=True).returncode == 0
    ):
        return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"]
    return []


@pytest.mark.slow
def test_pack_runs_a_solved_notebook_offline_from_the_unpacked_zip(tmp_path):
    chapter = CHAPTERS[0]  # the one with real data (CIFAR-MNIST from MNIST and CIFAR-10)
    pack = workshop.build_pack(tmp_path / "build", chapters=[chapter], archive=True)
    assert (pack / "install.py").exists() and (pack / "requirements.txt").exists()
    with zipfile.ZipFile(tmp_path / "build" / "mcl-workshop.zip") as archive:
        archive.extractall(tmp_path / "usb")
    unpacked = tmp_path / "usb" / "mcl-workshop"
    project = unpacked / "project"
    assert sorted(p.name for p in (project / "data" / "cache").glob("*.json")) == sorted(
        f"{key}.json" for key in workshop.data_needed([chapter])
    )
    student = nbformat.read(unpacked / "notebooks" / f"{chapter.stem}.ipynb", 4)
    nbformat.write(workshop.fill_solutions(student, chapter), unpacked / "notebooks" / "solved.ipynb")

    env = {k: v for k, v in os.environ.items() if not k.startswith("MCL_")}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(project), str(project / "book")]),  # the pack's code, not ours
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "HF_HUB_OFFLINE": "1",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    prefix = offline_prefix()
    if not prefix:
        env["MCL_DATA_OFFLINE"] = "1"
    where = subprocess.run(
        [*prefix, sys.executable, "-c", "import mcl, mclbook; print(mcl.__file__); print(mclbook.__file__)"],
        env=env,
        cwd=unpacked / "notebooks",  # where a participant starts Jupyter (not a checkout of ours)
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(project) for p in where), where
    papermill(
        unpacked / "notebooks" / "solved.ipynb",
        tmp_path / "out.ipynb",
        env,
        cwd=unpacked / "notebooks",
        prefix=prefix,
    )
    executed = nbformat.read(tmp_path / "out.ipynb", 4)
    assert errors(executed) == []
    assert all(line.startswith("right: ") for line in check_lines(executed))
    assert (project / "_build" / "smoke" / "results" / f"{chapter.stem}.json").exists()


def test_install_py_lab_starts_jupyter_lab_from_the_packs_environment(tmp_path, monkeypatch, capsys):
    """``python install.py --lab``: one command on every system, no environment path for people to type."""
    from mclbook import pack_install

    calls = []
    monkeypatch.setattr(pack_install.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or Done())
    assert pack_install.main(["--lab", "--env", str(tmp_path / "env")]) == 1  # nothing installed yet
    assert "run python install.py first" in capsys.readouterr().err and calls == []
    python = pack_install.venv_python(tmp_path / "env")
    python.parent.mkdir(parents=True)
    python.touch()
    assert pack_install.main(["--lab", "--env", str(tmp_path / "env")]) == 0
    assert calls == [[str(python), "-m", "jupyterlab", str(pack_install.HERE / "notebooks")]]


class Done:
    returncode = 0
