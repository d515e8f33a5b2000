"""mclbook.build's helpers: kernel threads when chapters run side by side, longest-first hints."""

import json
import subprocess
from pathlib import Path

from mclbook import build


def test_kernels_share_the_cores_when_chapters_run_side_by_side(monkeypatch):
    monkeypatch.setattr(build.os, "cpu_count", lambda: 8)
    assert build.kernel_env({"A": "1"}, 1) == {"A": "1"}
    assert build.kernel_env({}, 2) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "MCL_WORKERS": "2"}
    assert build.kernel_env({}, 16)["OMP_NUM_THREADS"] == "1"
    # the caller's choices
    assert build.kernel_env({"OMP_NUM_THREADS": "3"}, 2) == {"OMP_NUM_THREADS": "3", "MCL_WORKERS": "2"}
    assert build.kernel_env({"MCL_WORKERS": "1"}, 2)["MCL_WORKERS"] == "1"
    slotted = build.kernel_env({}, 2, slots=Path("/tmp/slots"))
    assert slotted["MCL_CPU_SLOTS"] == "2" and slotted["MCL_SLOTS_DIR"] == "/tmp/slots"


def test_expected_seconds_prefer_this_build_then_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "ROOT", tmp_path)

    def write(folder: Path, seconds: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ch.json").write_text(json.dumps({"provenance": {"wall_time_s": seconds}}))

    assert build.expected_seconds("ch", "book") == 0.0
    write(tmp_path / "results" / "book", 12.5)
    assert build.expected_seconds("ch", "book") == 12.5
    write(tmp_path / "_build" / "book" / "results", 3.0)
    assert build.expected_seconds("ch", "book") == 3.0
    assert build.expected_seconds("ch", "smoke") == 0.0


def test_an_execution_whose_kernel_did_not_start_is_started_again(tmp_path, monkeypatch):
    """papermill's kernel can die before its first cell when two kernels take the same port; the build starts
    such an execution again (up to KERNEL_START_ATTEMPTS times), and any other failure at once fails."""

    def fake_papermill(outcomes):
        calls = []

        def run(cmd, *, stdout, **kwargs):
            message, code = outcomes[len(calls)]
            calls.append(cmd)
            stdout.write(message)
            return subprocess.CompletedProcess(cmd, code)

        return calls, run

    log, args = tmp_path / "chapter.log", (tmp_path / "in.ipynb", tmp_path / "out.ipynb", {"seed": 1}, {})
    not_started = (f"ZMQError: Address already in use\n{build.KERNEL_NOT_STARTED}\n", 1)
    calls, run = fake_papermill([not_started, ("ran every cell\n", 0)])
    monkeypatch.setattr(build.subprocess, "run", run)
    assert build.execute(*args, log, cwd=tmp_path) and len(calls) == 2
    assert log.read_text() == "ran every cell\n"  # the log of the execution that ran

    calls, run = fake_papermill([("NameError in cell 3\n", 1), ("unused", 0)])
    monkeypatch.setattr(build.subprocess, "run", run)
    assert not build.execute(*args, log, cwd=tmp_path) and len(calls) == 1

    calls, run = fake_papermill([not_started] * build.KERNEL_START_ATTEMPTS)
    monkeypatch.setattr(build.subprocess, "run", run)
    assert not build.execute(*args, log, cwd=tmp_path) and len(calls) == build.KERNEL_START_ATTEMPTS
