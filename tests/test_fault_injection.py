"""Fault injection: an MCL run killed (SIGKILL) in the middle of stage 1 and run again ends exactly where an
uninterrupted run ends: the same pseudo-labels, the same weights of every stage, the same probes. Stage 0 is
loaded from its checkpoint, not retrained, and stage 1 resumes from its last finished epoch.

The run is a child process (a smoke-scale recipe with three epochs per stage on small random images) that,
when told to, stops in stage 1's second epoch, after its first checkpoint, and waits there to be killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mcl.fit import load_file

CHILD = r"""
import sys, time
from dataclasses import replace
from pathlib import Path

import torch

torch.set_num_threads(1)
from mcl import simclr
from mcl.data.base import LabeledImages
from mcl.evaluate import probe_models

root, out, pause = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "pause"
generator = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (640, 3, 16, 16), dtype=torch.uint8, generator=generator)
labels = {name: torch.randint(0, k, (640,), generator=generator) for name, k in (("a", 3), ("b", 2))}
train = LabeledImages(images[:512], {k: v[:512] for k, v in labels.items()})
test = LabeledImages(images[512:], {k: v[512:] for k, v in labels.items()})
# the book's smoke recipe (mclbook.scales), three epochs per stage so that stage 1 can be killed mid-way
recipe = simclr.SimCLRRecipe(
    width=8, proj_dim=32, epochs=3, batch_size=128, n_stages=2, k=4, groups_per_batch=4, stage_init="previous"
)

if pause:  # stop in stage 1, epoch 1, at its second batch (epoch 0 is checkpointed), and wait to be killed
    begin, loss = simclr.SimCLRStep.begin_epoch, simclr.SimCLRStep.loss

    def begin_epoch(self, epoch):
        self.epoch, self.calls = epoch, 0
        return begin(self, epoch)

    def paused_loss(self, index, step):
        self.calls += 1
        if self.config.checkpoint_dir.endswith("stage1") and self.epoch == 1 and self.calls == 2:
            (root / "paused").write_text("stage 1, epoch 1, step 2")
            time.sleep(600)
        return loss(self, index, step)

    simclr.SimCLRStep.begin_epoch, simclr.SimCLRStep.loss = begin_epoch, paused_loss

result = simclr.mcl_simclr(
    train, recipe, seed=0, device="cpu", progress=False, checkpoint_dir=lambda stage: root / f"stage{stage}"
)
probes = {f"stage {s}": probe_models([m], train, test, device="cpu") for s, m in enumerate(result.models)}
probes["concatenated"] = probe_models(result.models, train, test, device="cpu")
torch.save(
    {
        "pseudo_labels": result.pseudo_labels[1],
        "cluster_ids": result.cluster_ids,
        "weights": [m.state_dict() for m in result.models],
        "losses": [h.losses for h in result.histories],
        "probes": probes,
    },
    out,
)
"""


def _child(root: Path, out: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(out), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> None:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"the run failed:\n{stdout[-3000:]}\n{stderr[-3000:]}"


@pytest.mark.slow
def test_a_run_killed_in_stage_1_and_rerun_equals_an_uninterrupted_run(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    killed.mkdir()
    clean.mkdir()
    uninterrupted = _child(clean, tmp_path / "clean.pt", "run")  # alongside: the machine has two cores
    victim = _child(killed, tmp_path / "never.pt", "pause")
    rerun = None
    try:
        deadline = time.monotonic() + 300
        while not (killed / "paused").exists():
            assert victim.poll() is None, f"the run ended before stage 1:\n{victim.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "stage 1 never reached its second epoch"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
        assert victim.returncode == -signal.SIGKILL
        assert not (tmp_path / "never.pt").exists()
        assert load_file(killed / "stage0" / "last.pt")["epoch"] == 2  # stage 0 finished
        assert load_file(killed / "stage1" / "last.pt")["epoch"] == 0  # stage 1 killed after its first epoch
        stage0_written = (killed / "stage0" / "last.pt").stat().st_mtime_ns

        rerun = _child(killed, tmp_path / "resumed.pt", "run")
        _finish(rerun)
        _finish(uninterrupted)
    finally:  # a failed assertion must not leave a child waiting 10 minutes to be killed
        for process in (victim, uninterrupted, rerun):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    assert (killed / "stage0" / "last.pt").stat().st_mtime_ns == stage0_written  # loaded, not retrained

    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    reference = torch.load(tmp_path / "clean.pt", weights_only=True)
    assert torch.equal(resumed["pseudo_labels"], reference["pseudo_labels"])
    for a, b in zip(resumed["cluster_ids"], reference["cluster_ids"], strict=True):
        assert torch.equal(a, b)
    for stage, (a, b) in enumerate(zip(resumed["weights"], reference["weights"], strict=True)):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), f"stage {stage}: {name} differs"
    assert resumed["losses"] == reference["losses"]
    assert resumed["probes"] == reference["probes"]
