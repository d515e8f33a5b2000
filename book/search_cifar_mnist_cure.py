"""Search for a CIFAR-MNIST setting in which MCL recovers the suppressed photo.

    .venv/bin/python book/search_cifar_mnist_cure.py [--only NAME ...] [--seed S] [--out FILE.json]

In the book preset every image carries its own MNIST digit, identical in both views: the shortcut
SimCLR learns is the digit *instance* (one value per image), which K = 10 clusters cannot remove. The
candidates here vary how many values the shortcut has (``digits_per_class``: a small pool of digit
templates per class), K, the number of stages, MCL's sampler, and whether each view shifts the digit a
little (``rest_shift``). For every candidate and seed this trains, on one thread:

* SimCLR and the CIFAR-only control (same photos, no digit) and probes them with their random inits, for
  chapter 1's suppression measure
  ``suppression = (control - random control) - (SimCLR - random SimCLR)`` on the photo;
* MCL (stage 0 is the SimCLR run) and the equal-budget SimCLR ensemble (seeds
  :func:`mclbook.experiments.ensemble_seeds`), probed on the photo and the digit.

Targets (issue 14, book scale, mean over 3 seeds): suppression >= 0.10; MCL stage 1 alone reads the
photo >= SimCLR + 0.15; the concatenation reads the photo >= the ensemble + 0.10, and the digit
>= SimCLR's digit - 0.02. Results are merged into the JSON file after every candidate, under a file lock
(several searches may run side by side, one thread each).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from mcl.cluster import ami
from mcl.evaluate import probe_models
from mcl.simclr import SimCLRRecipe, mcl_simclr, train_recipe
from mclbook import experiments
from mclbook.results import search_command, updating_record
from mclbook.scales import Preset

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"suppression": 0.10, "stage1_gain": 0.15, "concat_gain": 0.10, "digit_change": -0.02}

# The book preset of CIFAR-MNIST, pinned so that the record stays reproducible when the presets change.
BASE_DATA: dict[str, Any] = {"n_train": 5000, "n_test": 1000, "composition": "side", "digits_per_class": None}
BASE_RECIPE: dict[str, Any] = {"width": 32, "proj_dim": 64, "epochs": 5, "batch_size": 64, "lr": 1e-3}
BASE_RECIPE |= {"temperature": 0.5, "crop_scale": 0.08, "jitter_strength": 1.0, "augment_width": 32}
BASE_RECIPE |= {"n_stages": 2, "k": 10, "groups_per_batch": 4, "stage_init": "previous", "rest_shift": 0}
AUTHORS = {"groups_per_batch": 1, "stage_init": "fresh"}  # one group per batch, fresh stages

# name -> (data overrides, recipe overrides)
CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "instance digits (book preset)": ({}, {}),
    "1 template per class": ({"digits_per_class": 1}, {}),
    "3 templates per class": ({"digits_per_class": 3}, {}),
    "10 templates per class": ({"digits_per_class": 10}, {}),
    "1 template, authors' sampler": ({"digits_per_class": 1}, AUTHORS),
    "3 templates, authors' sampler": ({"digits_per_class": 3}, AUTHORS),
    "3 templates, K=30": ({"digits_per_class": 3}, {"k": 30}),
    "3 templates, K=30, authors' sampler": ({"digits_per_class": 3}, {"k": 30} | AUTHORS),
    "10 templates, K=100": ({"digits_per_class": 10}, {"k": 100}),
    "3 templates, 3 stages": ({"digits_per_class": 3}, {"n_stages": 3}),
    "instance digits, K=50": ({}, {"k": 50}),
    "instance digits, K=100": ({}, {"k": 100}),
    "instance digits, K=200": ({}, {"k": 200}),
    "instance digits, 3 stages": ({}, {"n_stages": 3}),
    "instance digits, digit shifted 2 px per view": ({}, {"rest_shift": 2}),
    "3 templates, digit shifted 2 px per view": ({"digits_per_class": 3}, {"rest_shift": 2}),
}


def candidate_setup(name: str) -> Preset:
    data, recipe = CANDIDATES[name]
    base = Preset(BASE_DATA, SimCLRRecipe(**BASE_RECIPE))
    return experiments.with_data(
        Preset(base.data, base.recipe.with_overrides(**recipe)), **(BASE_DATA | data)
    )


# Runs are checkpointed in one folder per process, keyed by their inputs: candidates that share the data and
# the SimCLR recipe share SimCLR, the control and the ensemble. The code is loaded once per process, so the
# keys need no library digest; the folder is not reused across processes.
_CACHE = Path(tempfile.mkdtemp(prefix="mcl-cure-search-"))
_MCL_ONLY = ("n_stages", "k", "combine", "cluster_on", "small_groups", "stage_init", "groups_per_batch")


def _folder(**inputs: Any) -> Path:
    return _CACHE / hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _simclr_inputs(setup: Preset, seed: int, variant: str) -> dict[str, Any]:
    recipe = {k: v for k, v in asdict(setup.recipe).items() if k not in _MCL_ONLY}
    data = setup.data if variant != "control" else {**setup.data, "digits_per_class": None}
    return {"data": data, "recipe": recipe, "seed": seed, "variant": variant}


def measure(name: str, seed: int, device: str) -> dict[str, Any]:
    """Suppression, MCL per stage and concatenated, and the ensemble for candidate ``name`` at ``seed``."""
    setup = candidate_setup(name)
    recipe = setup.recipe
    started = time.perf_counter()
    train, test = experiments.load_data("cifar_mnist", setup)
    c_train, c_test = experiments.load_cifar_only(setup)

    def simclr(data, s: int, variant: str = "simclr") -> torch.nn.Module:
        folder = _folder(**_simclr_inputs(setup, s, variant))
        return train_recipe(data, recipe, seed=s, device=device, progress=False, checkpoint_dir=folder)[0]

    def stage_dir(stage: int) -> Path:
        if stage == 0:
            return _folder(**_simclr_inputs(setup, seed, "simclr"))
        return _folder(data=setup.data, recipe=asdict(recipe), seed=seed, stage=stage)

    result = mcl_simclr(train, recipe, seed=seed, device=device, progress=False, checkpoint_dir=stage_dir)
    others = [simclr(train, s) for s in experiments.ensemble_seeds(seed, recipe.n_stages)[1:]]
    control = simclr(c_train, seed, "control")

    def probe(models, on_train=train, on_test=test) -> dict[str, float]:
        return probe_models(models, on_train, on_test, device=device)

    out: dict[str, Any] = {
        "data": setup.data,
        "recipe": asdict(recipe),
        "simclr": probe(result.models[:1]),  # stage 0 is the SimCLR run of this seed
        "stages": [probe([m]) for m in result.models],
        "concat": probe(result.models),
        "ensemble": probe(result.models[:1] + others),
        "random": probe([experiments.random_model(setup, train, seed=seed)]),
        "control": probe([control], c_train, c_test),
        "random_control": probe([experiments.random_model(setup, c_train, seed=seed)], c_train, c_test),
        "cluster_ami": [
            {a: ami(ids, train.labels[a]) for a in ("cifar", "mnist")} for ids in result.cluster_ids
        ],
        "groups": [None if g is None else int(len(torch.unique(g))) for g in result.pseudo_labels],
    }
    out["suppression"] = (out["control"]["cifar"] - out["random_control"]["cifar"]) - (
        out["simclr"]["cifar"] - out["random"]["cifar"]
    )
    out["stage1_gain"] = out["stages"][1]["cifar"] - out["simclr"]["cifar"]
    out["concat_gain"] = out["concat"]["cifar"] - out["ensemble"]["cifar"]
    out["digit_change"] = out["concat"]["mnist"] - out["simclr"]["mnist"]
    out["meets_targets"] = all(out[k] >= v for k, v in TARGETS.items())
    out["seconds"] = time.perf_counter() - started
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", action="append", default=[], choices=sorted(CANDIDATES))
    parser.add_argument("--seed", type=int, action="append", default=[])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "data" / "cifar_mnist_cure_search.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)
    command = search_command(__file__)
    for name in args.only or list(CANDIDATES):
        for seed in args.seed or [0]:
            print(f"[search] {name}, seed {seed}", flush=True)
            stamp = {"command": command, "date": datetime.date.today().isoformat(), "cpu_threads": 1}
            measured = measure(name, seed, args.device) | stamp
            print(json.dumps({k: measured[k] for k in (*TARGETS, "seconds")}), flush=True)
            with updating_record(args.out) as record:
                record.update(
                    targets=TARGETS,
                    base={"data": BASE_DATA, "recipe": BASE_RECIPE},
                    device=args.device,
                )
                record["candidates"].setdefault(name, {})[str(seed)] = measured
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
