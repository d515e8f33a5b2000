"""The book's cache rule: keys follow every module a run imports; locks make a second process wait."""

import multiprocessing
import sys
import time
from pathlib import Path

import pytest
import torch

from mclbook import runcache
from mclbook.runcache import exclusive, module_closure


def _take_lock(entry: str, folder: str) -> None:
    Path(folder, "started").touch()
    with exclusive(entry):
        Path(folder, "acquired").touch()


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.slow
def test_a_second_process_waits_until_the_holder_releases(tmp_path):
    entry = tmp_path / "runs" / "abc"  # need not exist
    child = multiprocessing.get_context("spawn").Process(target=_take_lock, args=(str(entry), str(tmp_path)))
    with exclusive(entry, tmp_path / "runs" / "other"):
        child.start()
        wait_for(tmp_path / "started")
        time.sleep(0.5)
        assert not (tmp_path / "acquired").exists()  # blocked while we hold the lock
    child.join(timeout=30)
    assert child.exitcode == 0 and (tmp_path / "acquired").exists()
    assert (tmp_path / "runs" / "abc.lock").exists() and not entry.exists()


def test_locks_are_released_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError), exclusive(tmp_path / "x"):
        raise RuntimeError
    child = multiprocessing.get_context("spawn").Process(
        target=_take_lock, args=(str(tmp_path / "x"), str(tmp_path))
    )
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0 and (tmp_path / "acquired").exists()


def test_the_closure_follows_imports_also_inside_functions(tmp_path, monkeypatch):
    """A fake package: a imports b at the top, b imports c inside a function; d is imported by nobody."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from fakepkg import b\nimport os\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n    return c\n")
    (pkg / "c.py").write_text("X = 1\n")
    (pkg / "d.py").write_text("import fakepkg.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    files = {p.name for p in module_closure(["fakepkg.a"], packages=("fakepkg",))}
    assert files == {"__init__.py", "a.py", "b.py", "c.py"}


@pytest.mark.slow
def test_a_change_to_a_module_training_imports_changes_the_run_key(tmp_path, monkeypatch):
    """Copy the library, edit mcl/device.py (imported by training through mcl.fit and mcl.models): the key
    changes; edit mcl/data/mmvp.py (no unimodal run imports it): the key stays."""
    import shutil

    import mcl

    copy = tmp_path / "lib"
    shutil.copytree(Path(mcl.__file__).parent, copy / "mcl")
    monkeypatch.syspath_prepend(str(copy))
    for name in [m for m in list(sys.modules) if m == "mcl" or m.startswith("mcl.")]:
        monkeypatch.delitem(sys.modules, name)
    code = ("mcl.simclr", "mcl.moco", "mcl.schedules", "mcl.viewmaker", "mcl.data.trifeature")
    before = runcache.run_key(code=code, seed=0)
    assert all(str(copy) in str(p) for p in module_closure(code, packages=("mcl",)))
    (copy / "mcl" / "data" / "mmvp.py").write_text(
        (copy / "mcl" / "data" / "mmvp.py").read_text() + "\n# x\n"
    )
    assert runcache.run_key(code=code, seed=0) == before
    device = copy / "mcl" / "device.py"
    device.write_text(device.read_text() + "\n# a change\n")
    assert runcache.run_key(code=code, seed=0) != before
    assert runcache.run_key(code=code, seed=1) != runcache.run_key(code=code, seed=0)


def test_the_run_key_holds_the_cpu_threads(monkeypatch):
    import torch

    code = ("mcl.simclr",)
    threads = torch.get_num_threads()
    key = runcache.run_key(code=code, seed=0)
    try:
        torch.set_num_threads(threads + 1)
        assert runcache.run_key(code=code, seed=0) != key
    finally:
        torch.set_num_threads(threads)


def test_weights_digest_names_the_weights_and_the_class():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    same = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    same.load_state_dict(model.state_dict())
    assert runcache.weights_digest(model) == runcache.weights_digest(same)
    with torch.no_grad():
        same[0].weight[1, 2] += 1e-7  # one element, by less than float32's step at 1
    assert runcache.weights_digest(model) != runcache.weights_digest(same)
    same.load_state_dict(model.state_dict())
    same[1].num_batches_tracked += 1  # buffers count too
    assert runcache.weights_digest(model) != runcache.weights_digest(same)
    other_class = torch.nn.ModuleList([torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)])
    other_class.load_state_dict(model.state_dict())
    assert runcache.weights_digest(model) != runcache.weights_digest(other_class)


def test_labeled_digest_names_images_and_every_label():
    from mcl.data.base import LabeledImages

    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    data = LabeledImages(images, {"a": torch.tensor([0, 1, 0, 1])})
    assert runcache.labeled_digest(data) == runcache.labeled_digest(
        LabeledImages(images.clone(), {"a": torch.tensor([0, 1, 0, 1])})
    )
    assert runcache.labeled_digest(data) != runcache.labeled_digest(
        LabeledImages(images, {"a": torch.tensor([0, 1, 1, 1])})
    )
    brighter = images.clone()
    brighter[3, 2, 1, 1] = 1
    assert runcache.labeled_digest(data) != runcache.labeled_digest(
        LabeledImages(brighter, {"a": torch.tensor([0, 1, 0, 1])})
    )


def test_weights_digest_reads_a_modules_extra_state():
    class Queue(torch.nn.Module):
        def __init__(self, pointer: list[int]) -> None:
            super().__init__()
            self.pointer = pointer
            self.register_buffer("keys", torch.zeros(2, 3))

        def get_extra_state(self) -> dict:
            return {"pointer": self.pointer, "labels": None}

        def set_extra_state(self, state: dict) -> None:
            self.pointer = state["pointer"]

    assert runcache.weights_digest(Queue([0, 1])) == runcache.weights_digest(Queue([0, 1]))
    assert runcache.weights_digest(Queue([0, 1])) != runcache.weights_digest(Queue([1, 1]))


def _hold_a_slot(folder: str, seconds: float, started) -> None:
    import os

    os.environ.update(MCL_CPU_SLOTS="1", MCL_SLOTS_DIR=folder)
    with runcache.cpu_slot():
        started.set()
        time.sleep(seconds)


@pytest.mark.slow
def test_cpu_slots_limit_computations_across_processes(tmp_path, monkeypatch):
    """One slot: while another process holds it, this one waits; unset, nothing waits; nested, no deadlock."""
    with runcache.cpu_slot():  # no MCL_CPU_SLOTS: holds nothing
        pass
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    holder = context.Process(target=_hold_a_slot, args=(str(tmp_path), 3.0, started))
    holder.start()
    assert started.wait(60)
    monkeypatch.setenv("MCL_CPU_SLOTS", "1")
    monkeypatch.setenv("MCL_SLOTS_DIR", str(tmp_path))
    begin = time.perf_counter()
    with runcache.cpu_slot(), runcache.cpu_slot():  # re-entrant within a process
        waited = time.perf_counter() - begin
    holder.join()
    assert waited > 1.0
    monkeypatch.setenv("MCL_CPU_SLOTS", "two")
    with pytest.raises(ValueError, match="MCL_CPU_SLOTS='two'"), runcache.cpu_slot():
        pass
