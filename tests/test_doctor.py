"""python -m mcl doctor: a few lines on packages, data, CPU, GPU and the workshop's time; its reference
agrees with the committed workshop timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcl import doctor
from mcl.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_doctor_prints_a_few_lines_and_a_verdict(capsys):
    code = main(["doctor", "--seconds", "0"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0].split(" ")[0] for line in lines[1:5]] == ["packages", "data", "cpu", "gpu"]
    assert len(lines) <= 8
    assert (code == 0) == (lines[-1] == "ready for the workshop")


def test_a_missing_or_different_pin_is_a_problem(monkeypatch):
    requires = {"mcl": ["torch==0.0.1", "surely-not-installed-pkg==1.0", "pytest==1.0; extra == 'test'"]}
    monkeypatch.setattr(doctor.metadata, "requires", lambda name: requires.get(name, []))
    line, problems = doctor.package_report()
    assert any(p.startswith("torch ") and "(pinned 0.0.1)" in p for p in problems)
    assert "surely-not-installed-pkg MISSING (pinned 1.0)" in problems
    assert not any(p.startswith("pytest") for p in problems)  # an extra's pin is not required
    assert "problem(s)" in line


def test_data_sources_are_reported_where_a_load_would_find_them(monkeypatch, tmp_path):
    monkeypatch.setenv("MCL_DATA_ROOT", str(tmp_path))
    monkeypatch.delenv("MCL_DATA_MIRROR", raising=False)
    monkeypatch.setenv("MCL_DATA_OFFLINE", "1")
    assert doctor.data_source("trifeature") == "generated"
    assert doctor.data_source("mnist") == "missing"
    _, problems = doctor.data_report()
    assert any("mnist" in p for p in problems) and any("cifar10" in p for p in problems)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mnist-train.json").write_text("{}")
    assert doctor.data_source("mnist") == "cache"
    monkeypatch.delenv("MCL_DATA_OFFLINE")
    assert doctor.data_source("cifar10").startswith("download")


def test_the_estimate_scales_the_reference_by_speed(monkeypatch):
    monkeypatch.setattr(doctor, "WORKSHOP_REFERENCE", {"a": {"cpu_seconds": 100.0, "views_per_cpu_s": 500.0}})
    assert doctor.estimate(1000.0) == {"a": 50.0}


def test_the_reference_is_the_committed_workshop_timing():
    record = json.loads((ROOT / "book" / "data" / "workshop_timing.json").read_text())
    assert doctor.WORKSHOP_REFERENCE == {
        name: {"cpu_seconds": row["cpu_seconds"], "views_per_cpu_s": row["views_per_cpu_s"]}
        for name, row in record["notebooks"].items()
    }


@pytest.mark.slow
def test_the_micro_benchmark_trains_and_reports_views_per_second():
    assert doctor.benchmark(0.2) > 0
