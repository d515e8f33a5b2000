"""Search for a book-scale Trifeature recipe under which MCL's stages learn the suppressed shape.

    .venv/bin/python book/search_trifeature.py [--only NAME ...] [--seed S] [--out FILE.json]

For every candidate (recipe overrides of the trifeature "book" preset) this trains MCL with SimCLR
(stage 0 is plain SimCLR) and the equal-budget SimCLR seed ensemble (seeds
:func:`mclbook.experiments.ensemble_seeds`), then probes shape, texture and colour on: SimCLR, each MCL stage
alone, the concatenation of all stages and the ensemble. It also records the AMI of every stage's
k-means clusters with each attribute. The issue's targets, checked per candidate:

    stage-1 shape >= SimCLR shape + MARGIN,  concatenation shape >= ensemble shape + MARGIN

Results are merged into the JSON file after every candidate (chapter 2 shows them). Runs are
single-threaded (torch and BLAS) and not cached: the library digest changes too often.
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

from mcl.cluster import ami
from mcl.evaluate import probe_models
from mcl.simclr import mcl_simclr, train_recipe
from mclbook import experiments
from mclbook.results import search_command, updating_record
from mclbook.scales import preset

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 0.05
ATTRIBUTES = ("shape", "texture", "color")

# Every candidate overrides this base: the trifeature book preset with the authors' sampler (one pseudo-label
# group per batch) and freshly initialised stages, the preset the search started from (data: 10 renders per
# combination, 32 px). The book preset is the row "4 groups per batch, previous stage".
BASE: dict[str, Any] = {"groups_per_batch": 1, "stage_init": "fresh"}
CANDIDATES: dict[str, dict[str, Any]] = {
    "one group per batch": {},
    "crop>=0.3": {"crop_scale": 0.3},
    "t=0.2": {"temperature": 0.2},
    "10 epochs": {"epochs": 10},
    "cluster the projection": {"cluster_on": "projection"},
    "combine latest": {"combine": "latest"},
    "stages start from the previous stage": {"stage_init": "previous"},
    "k=20, combine latest": {"k": 20, "combine": "latest"},
    "previous stage, combine latest": {"stage_init": "previous", "combine": "latest"},
    # finer stage-0 clusters, so that a cluster fixes texture as well as colour (~100-200 images each)
    "k=50, combine latest": {"k": 50, "combine": "latest"},
    "k=100, combine latest": {"k": 100, "combine": "latest"},
    # batches of 4 one-group blocks of 16, negatives within a block: BatchNorm sees 4 colours a step
    "4 groups per batch": {"groups_per_batch": 4},
    "4 groups per batch, previous stage": {"groups_per_batch": 4, "stage_init": "previous"},
    "8 groups per batch, previous stage": {"groups_per_batch": 8, "stage_init": "previous"},
    "2 groups per batch, previous stage": {"groups_per_batch": 2, "stage_init": "previous"},
    # every stage >= 1 starts from stage 0's weights: stages 1 and 2 differ from each other, not only from 0
    "4 groups per batch, stages from stage 0": {"groups_per_batch": 4, "stage_init": "first"},
    # the authors' procedure as far as their code shows it: one group per batch, the loss unchanged, every
    # stage restarting from stage 0's weights
    "one group per batch, stages from stage 0": {"stage_init": "first"},
    "4 groups per batch, previous stage, combine latest": {
        "groups_per_batch": 4,
        "stage_init": "previous",
        "combine": "latest",
    },
}


def measure(name: str, seed: int, device: str) -> dict[str, Any]:
    """MCL and the seed ensemble of candidate ``name``: per-attribute probes and cluster AMIs."""
    setup = preset("trifeature", "book", **(BASE | CANDIDATES[name]))
    started = time.perf_counter()
    train, test = experiments.load_data("trifeature", setup)
    result = mcl_simclr(train, setup.recipe, seed=seed, device=device, progress=False)
    others = [
        train_recipe(train, setup.recipe, seed=s, device=device, progress=False)[0]
        for s in experiments.ensemble_seeds(seed, setup.recipe.n_stages)[1:]
    ]

    def probe(models: list[torch.nn.Module]) -> dict[str, float]:
        return probe_models(models, train, test, device=device)

    out: dict[str, Any] = {
        "recipe_overrides": CANDIDATES[name],
        "simclr": probe(result.models[:1]),  # stage 0 is the SimCLR run of this seed
        "stages": [probe([m]) for m in result.models],
        "concat": probe(result.models),
        "ensemble": probe(result.models[:1] + others),
        "cluster_ami": [{a: ami(ids, train.labels[a]) for a in ATTRIBUTES} for ids in result.cluster_ids],
    }
    out["stage1_gain"] = out["stages"][1]["shape"] - out["simclr"]["shape"]
    out["concat_gain"] = out["concat"]["shape"] - out["ensemble"]["shape"]
    out["meets_targets"] = out["stage1_gain"] >= MARGIN and out["concat_gain"] >= MARGIN
    out["seconds"] = time.perf_counter() - started
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", action="append", default=[], choices=sorted(CANDIDATES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "data" / "trifeature_search.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)
    command = search_command(__file__)
    stamp = {"command": command, "date": datetime.date.today().isoformat(), "seed": args.seed}
    for name in args.only or list(CANDIDATES):
        print(f"[search] {name}", flush=True)
        measured = measure(name, args.seed, args.device) | stamp
        print(json.dumps(measured), flush=True)
        # several searches may run side by side, each on one thread: merged under a lock
        with updating_record(args.out) as record:
            record.update(
                margin=MARGIN, base=f"trifeature book preset with {BASE}", device=args.device, cpu_threads=1
            )
            record["candidates"][name if args.seed == 0 else f"{name}, seed {args.seed}"] = measured
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
