"""Shared fixtures. ``smoke_book`` executes every chapter at smoke scale and builds the book, once per
session; chapter tests read the results files it leaves in ``_build/smoke/results``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "_build" / "smoke"


@pytest.fixture(scope="session")
def smoke_book() -> Path:
    """Run ``python -m mclbook.build --scale smoke --device cpu --jobs 2`` (cached per chapter) and return the
    results folder."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mclbook.build",
            "--scale",
            "smoke",
            "--device",
            "cpu",
            "--jobs",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"the smoke book build failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}")
    return SMOKE / "results"


def read_results(folder: Path, name: str) -> dict:
    """The metrics of results file ``name`` written by a chapter."""
    return json.loads((folder / f"{name}.json").read_text())["metrics"]
