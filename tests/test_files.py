"""Atomic writes: concurrent writers never crash each other, readers never see a partial file, temporaries
of a killed writer are cleaned up, the target survives a failing write."""

import os
import threading
import time

import pytest

from mcl.files import atomic_write, atomic_write_text, remove_stale_temporaries


def test_two_writers_and_a_reader_never_collide(tmp_path):
    target = tmp_path / "results.json"
    payloads = {name: (name * 200_000).encode() for name in "ab"}
    errors, seen = [], set()

    def writer(name):
        try:
            for _ in range(30):
                atomic_write(target, lambda f: f.write(payloads[name]))
        except Exception as err:  # noqa: BLE001 (any error is the failure under test)
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(name,)) for name in payloads]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if target.exists():
            seen.add(target.read_bytes())
    for t in threads:
        t.join()
    assert errors == []
    assert seen <= set(payloads.values())  # every read saw one whole payload
    assert list(tmp_path.glob(".*.tmp")) == []


def test_stale_temporaries_are_removed_fresh_ones_kept(tmp_path):
    target = tmp_path / "run" / "last.pt"
    target.parent.mkdir()
    stale, fresh = target.parent / ".last.pt.old.tmp", target.parent / ".last.pt.new.tmp"
    for tmp in (stale, fresh):
        tmp.write_bytes(b"x" * 1000)
    hours_ago = time.time() - 7200
    os.utime(stale, (hours_ago, hours_ago))
    atomic_write_text(target, "done")
    assert not stale.exists() and fresh.exists() and target.read_text() == "done"
    assert remove_stale_temporaries(target, older_than=0) == [fresh]


def test_a_failing_write_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "x.txt"
    atomic_write_text(target, "old")

    def broken(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old" and list(tmp_path.glob(".*.tmp")) == []
