"""Search for a book-scale CIFAR-MNIST recipe under which SimCLR's feature suppression shows.

    .venv/bin/python book/search_cifar_mnist.py [--only NAME ...] [--mcl NAME] [--out FILE.json]

For every candidate setting (composition and recipe overrides of the cifar_mnist "book" preset) this trains
SimCLR on CIFAR-MNIST and on its CIFAR-only control (:func:`mclbook.experiments.load_cifar_only`, same photos,
same recipe, same budget) and probes both, together with the random initialisation of each. Suppression
shows when SimCLR's CIFAR probe falls below the control's by at least ``MARGIN`` beyond their random-init
gap::

    suppression = (control - random control) - (SimCLR - random SimCLR input) >= MARGIN

With ``--mcl NAME`` the candidate NAME is also trained with MCL and compared with an equal-budget SimCLR
ensemble (seeds :func:`mclbook.experiments.ensemble_seeds`), clustering on the backbone and on the projection.
Results are merged into the JSON file after every candidate (the chapter "Feature suppression" shows
them). Runs are single-threaded (torch and BLAS) and not cached: the library digest changes too often.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from mcl.evaluate import probe_models
from mcl.simclr import mcl_simclr, train_recipe
from mclbook import experiments
from mclbook.results import search_command
from mclbook.scales import Preset, preset

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 0.05
N_TRAIN, N_TEST = 5000, 2000

# The recipe the search started from (the first book preset), pinned so that the table stays reproducible
# when the presets change; candidates override it. Data: N_TRAIN/N_TEST images, side by side by default.
BASE_RECIPE: dict[str, Any] = {"width": 32, "proj_dim": 64, "epochs": 10, "batch_size": 256, "lr": 1e-3}
BASE_RECIPE |= {"temperature": 0.5, "crop_scale": 0.08, "jitter_strength": 1.0, "augment_width": 0}
BASE_RECIPE |= {"groups_per_batch": 1, "stage_init": "fresh"}  # the MCL rows' sampler and stage starts
# name -> (data overrides, recipe overrides). The first six together took about 35 minutes of one busy CPU
# thread; a side-by-side run costs about three times an overlay run.
CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "overlay": ({"composition": "overlay"}, {}),
    "overlay, crop>=0.5": ({"composition": "overlay"}, {"crop_scale": 0.5}),
    "overlay, crop>=0.5, jitter x2": (
        {"composition": "overlay"},
        {"crop_scale": 0.5, "jitter_strength": 2.0},
    ),
    "overlay, crop>=0.5, t=0.2": ({"composition": "overlay"}, {"crop_scale": 0.5, "temperature": 0.2}),
    "side, crop>=0.5": ({"composition": "side"}, {"crop_scale": 0.5}),
    "overlay, 2000 images, crop>=0.5, jitter x2, t=0.2, width 16, 50 epochs": (
        {"composition": "overlay", "n_train": 2000},
        {"crop_scale": 0.5, "jitter_strength": 2.0, "temperature": 0.2, "width": 16, "epochs": 50},
    ),
    "side, 5 epochs, batch 64": ({"composition": "side"}, {"epochs": 5, "batch_size": 64}),
    # the photo augmented, the digit identical in both views (recipe.augment_width = the photo's 32 columns)
    "side, digit shared by the views": ({"composition": "side"}, {"augment_width": 32}),
    "side, digit shared by the views, 5 epochs, batch 64": (
        {"composition": "side"},
        {"augment_width": 32, "epochs": 5, "batch_size": 64},
    ),
}


def candidate_setup(name: str) -> Preset:
    """The cifar_mnist book preset with candidate ``name``'s data and recipe overrides over the base."""
    data, recipe = CANDIDATES[name]
    return experiments.with_data(
        preset("cifar_mnist", "book", **(BASE_RECIPE | recipe)),
        **({"n_train": N_TRAIN, "n_test": N_TEST, "composition": "side"} | data),
    )


def measure(name: str, seed: int, device: str) -> dict[str, Any]:
    """Train SimCLR and the CIFAR-only control of candidate ``name``; probe them and their random inits."""
    setup = candidate_setup(name)
    started = time.perf_counter()
    train, test = experiments.load_data("cifar_mnist", setup)
    control_train, control_test = experiments.load_cifar_only(setup)
    simclr, _ = train_recipe(train, setup.recipe, seed=seed, device=device, progress=False)
    control, _ = train_recipe(control_train, setup.recipe, seed=seed, device=device, progress=False)
    probes = {
        "simclr": probe_models([simclr], train, test, device=device),
        "control": probe_models([control], control_train, control_test, device=device),
        "random": probe_models(
            [experiments.random_model(setup, train, seed=seed)], train, test, device=device
        ),
        "random_control": probe_models(
            [experiments.random_model(setup, control_train, seed=seed)],
            control_train,
            control_test,
            device=device,
        ),
    }
    cifar = {k: v["cifar"] for k, v in probes.items()}
    suppression = (cifar["control"] - cifar["random_control"]) - (cifar["simclr"] - cifar["random"])
    return {
        "data": setup.data,
        "recipe_overrides": CANDIDATES[name][1],
        "probes": probes,
        "suppression": suppression,
        "shows": suppression >= MARGIN,
        "seconds": time.perf_counter() - started,
    }


def measure_mcl(name: str, seed: int, device: str) -> dict[str, Any]:
    """MCL (clustering the backbone, then the projection) against an equal-budget SimCLR ensemble."""
    setup = candidate_setup(name)
    started = time.perf_counter()
    train, test = experiments.load_data("cifar_mnist", setup)
    n = setup.recipe.n_stages
    ensemble = [
        train_recipe(train, setup.recipe, seed=s, device=device, progress=False)[0]
        for s in experiments.ensemble_seeds(seed, n)
    ]
    out: dict[str, Any] = {"candidate": name, "n_stages": n, "k": setup.recipe.k}
    out["simclr"] = probe_models(ensemble[:1], train, test, device=device)
    out["ensemble"] = probe_models(ensemble, train, test, device=device)
    for cluster_on in ("features", "projection"):
        result = mcl_simclr(
            train,
            setup.recipe.with_overrides(cluster_on=cluster_on),
            seed=seed,
            device=device,
            progress=False,
        )
        out[f"mcl_{cluster_on}"] = probe_models(result.models, train, test, device=device)
        out[f"mcl_{cluster_on}_stages"] = [
            probe_models([m], train, test, device=device) for m in result.models
        ]
    out["seconds"] = time.perf_counter() - started
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", action="append", default=[], choices=sorted(CANDIDATES))
    parser.add_argument("--mcl", choices=sorted(CANDIDATES), help="also run MCL vs. the ensemble here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "data" / "cifar_mnist_search.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)
    record = json.loads(args.out.read_text()) if args.out.exists() else {"candidates": {}}
    record.update(
        margin=MARGIN,
        base=f"cifar_mnist, n_train={N_TRAIN}, n_test={N_TEST}, recipe {BASE_RECIPE} unless overridden",
        seed=args.seed,
        device=args.device,
        cpu_threads=1,
    )
    command = search_command(__file__)
    stamp = {"command": command, "date": datetime.date.today().isoformat()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.only or ([] if args.mcl else list(CANDIDATES)):
        print(f"[search] {name}", flush=True)
        record["candidates"][name] = measure(name, args.seed, args.device) | stamp
        print(json.dumps(record["candidates"][name]), flush=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    if args.mcl:
        print(f"[search] MCL vs. ensemble on {args.mcl}", flush=True)
        record["mcl"] = measure_mcl(args.mcl, args.seed, args.device) | stamp
        print(json.dumps(record["mcl"]), flush=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
