"""mclbook.build's helpers: kernel threads when chapters run side by side, longest-first hints."""

import json
from pathlib import Path

from mclbook import build


def test_kernels_share_the_cores_when_chapters_run_side_by_side(monkeypatch):
    monkeypatch.setattr(build.os, "cpu_count", lambda: 8)
    assert build.kernel_env({"A": "1"}, 1) == {"A": "1"}
    assert build.kernel_env({}, 2) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
    assert build.kernel_env({}, 16)["OMP_NUM_THREADS"] == "1"
    assert build.kernel_env({"OMP_NUM_THREADS": "3"}, 2) == {"OMP_NUM_THREADS": "3"}  # the caller's choice


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
