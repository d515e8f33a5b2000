"""Why MoCo-v2 suppresses more than SimCLR at book scale: its knobs against the data set and the budget.

    .venv/bin/python book/search_moco.py [--only NAME ...] [--seed S] [--out FILE.json]

The paper reports MoCo-v2 reading Trifeature's texture at 0.99 and shape at 0.85, better than SimCLR; at book
scale (10,000 images, 5 epochs, batch 64) chapter 1 measures the opposite. MoCo-v2's CIFAR settings assume a
long run on a large data set: a queue of 4,096 keys is 41 % of this data set and holds keys from the last 64
steps, and a key network with momentum 0.99 follows the query network with a lag of about 100 steps, in a run
of 780 steps. Each candidate here changes one of them (queue length, momentum, epochs, temperature) on the
trifeature book preset, trains MoCo-v2 and probes shape, texture and colour; SimCLR of the same seed is the
reference. One thread; results are merged into the JSON file after every candidate (chapter 1 shows them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from mcl.evaluate import probe_models
from mcl.moco import MoCo, train_moco
from mcl.simclr import build_model, train_recipe
from mclbook import experiments
from mclbook.results import search_command, updating_record
from mclbook.scales import preset

ROOT = Path(__file__).resolve().parents[1]
BASE = {"queue_size": 4096, "momentum": 0.99, "temperature": 0.2, "bn_splits": 8}
# name -> (MoCo overrides, recipe overrides)
CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "MoCo-v2's CIFAR settings (the book's)": ({}, {}),
    "queue 1,024": ({"queue_size": 1024}, {}),
    "queue 256": ({"queue_size": 256}, {}),
    "momentum 0.9": ({"momentum": 0.9}, {}),
    "temperature 0.5 (SimCLR's)": ({"temperature": 0.5}, {}),
    "20 epochs": ({}, {"epochs": 20}),
    "queue 256, momentum 0.9": ({"queue_size": 256, "momentum": 0.9}, {}),
}


_SIMCLR: dict[tuple[str, int], torch.nn.Module] = {}  # the reference SimCLR runs of this process


def measure(name: str, seed: int, device: str) -> dict[str, Any]:
    knobs_override, recipe_override = CANDIDATES[name]
    setup = preset("trifeature", "book", **recipe_override)
    knobs = BASE | knobs_override
    started = time.perf_counter()
    train, test = experiments.load_data("trifeature", setup)
    moco = MoCo(build_model(setup.recipe, train.images.shape[1], seed), **knobs)
    config = setup.recipe.config(seed=seed, device=device, progress=False)
    history = train_moco(
        moco, train.images, config, augment=setup.recipe.augment(tuple(train.images.shape[2:]))
    )
    key = (json.dumps(asdict(setup.recipe), sort_keys=True), seed)
    if key not in _SIMCLR:
        _SIMCLR[key] = train_recipe(train, setup.recipe, seed=seed, device=device, progress=False)[0]
    simclr = _SIMCLR[key]
    return {
        "moco": knobs,
        "recipe": asdict(setup.recipe),
        "moco_probe": probe_models([moco.eval()], train, test, device=device),
        "simclr_probe": probe_models([simclr], train, test, device=device),
        "moco_losses": history.losses,
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", action="append", default=[], choices=sorted(CANDIDATES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "data" / "moco_search.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)
    command = search_command(__file__)
    for name in args.only or list(CANDIDATES):
        print(f"[search] {name}, seed {args.seed}", flush=True)
        measured = measure(name, args.seed, args.device)
        measured |= {"command": command, "date": datetime.date.today().isoformat(), "cpu_threads": 1}
        print(json.dumps({k: measured[k] for k in ("moco_probe", "simclr_probe", "seconds")}), flush=True)
        with updating_record(args.out) as record:
            record.update(base={"moco": BASE, "data": "trifeature book preset"}, device=args.device)
            record["candidates"].setdefault(name, {})[str(args.seed)] = measured
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
