"""Cache-entry locks: a second process waits for the holder, then proceeds."""

import multiprocessing
import time
from pathlib import Path

import pytest

from mcl.locking import exclusive, fcntl

pytestmark = pytest.mark.skipif(fcntl is None, reason="no advisory locks on this platform")


def _take_lock(entry: str, folder: str) -> None:
    Path(folder, "started").touch()
    with exclusive(entry):
        Path(folder, "acquired").touch()


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


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
