"""Results files: round trip, provenance, atomic write, helpful error for a missing file."""

import json
import sys

import pytest

from mclbook import results
from mclbook.results import load_results, portable_command, save_results, search_record


def test_round_trip_with_provenance(tmp_path):
    path = save_results(
        "demo",
        {"acc": 0.5, "per_attr": {"shape": 0.25}},
        scale="smoke",
        seed=3,
        parameters={"epochs": 2},
        device="cpu",
        wall_time_s=1.234,
        directory=tmp_path,
    )
    assert path == tmp_path / "demo.json" and not list(tmp_path.glob("*.tmp"))
    data = load_results("demo", scale="smoke", directory=tmp_path)
    assert data["metrics"] == {"acc": 0.5, "per_attr": {"shape": 0.25}}
    prov = data["provenance"]
    assert prov["seed"] == 3 and prov["parameters"] == {"epochs": 2} and prov["wall_time_s"] == 1.23
    for key in ("git_commit", "torch", "mcl", "device", "written", "python"):
        assert prov[key]
    assert json.loads(path.read_text())["scale"] == "smoke"


def test_results_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MCL_RESULTS_DIR", str(tmp_path))
    save_results("x", {"a": 1}, scale="book", seed=None, parameters={}, device="cpu", wall_time_s=0)
    assert (tmp_path / "x.json").exists()


def test_missing_results_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make book SCALE=smoke"):
        load_results("absent", scale="smoke", directory=tmp_path)


def test_recorded_commands_name_the_interpreter_and_output_files_without_the_recording_machines_folders():
    command = ".venv/bin/python book/search_trifeature.py --only 'a b' --out /tmp/ts2/g2.json --seed 1"
    assert portable_command(command) == "python book/search_trifeature.py --only 'a b' --out g2.json --seed 1"
    assert portable_command("/opt/x/.venv/bin/python3.11 book/s.py") == "python3.11 book/s.py"
    assert portable_command("python book/s.py --out a/b.json") == "python book/s.py --out a/b.json"
    assert portable_command("x --out=/tmp/a.json") == "x --out=a.json"
    assert portable_command("x --out s.json") == "x --out s.json"
    for name in ("trifeature_search", "cifar_mnist_search"):
        assert "/tmp/" not in json.dumps(search_record(name))


def test_updating_record_creates_merges_and_keeps_other_rows(tmp_path):
    from mclbook.results import updating_record

    path = tmp_path / "sub" / "search.json"
    with updating_record(path) as record:
        assert record == {"candidates": {}}
        record["candidates"]["a"] = {"0": 1.0}
    with updating_record(path) as record:  # a second search adds its row beside the first
        record["candidates"]["b"] = {"0": 2.0}
        record["base"] = "x"
    assert json.loads(path.read_text()) == {"candidates": {"a": {"0": 1.0}, "b": {"0": 2.0}}, "base": "x"}
    with pytest.raises(RuntimeError), updating_record(path) as record:  # a failed update writes nothing
        record["candidates"].clear()
        raise RuntimeError("measurement failed")
    assert set(json.loads(path.read_text())["candidates"]) == {"a", "b"}


def test_search_command_names_the_interpreter_and_the_script_as_a_reader_runs_them(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/abs/book/search_moco.py", "--only", "queue 256", "--seed", "1"])
    command = results.search_command("/somewhere/book/search_moco.py")
    assert command == "python book/search_moco.py --only 'queue 256' --seed 1"
    assert results.portable_command(command) == command
