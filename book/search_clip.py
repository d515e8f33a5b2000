"""Search for a book-scale CLIP setup in which MCL's stage 1 adds more than an ensemble member does.

    .venv/bin/python book/search_clip.py [--only NAME ...] [--seed S ...] [--out FILE.json]

For every candidate (overrides of the CLIP "book" preset, and optionally which clauses stage 0's
captions state) and seed this trains, on one thread: stage 0 (from scratch, on the candidate's stage-0
captions), the MCL stages fine-tuned from it (:func:`mclbook.clip_experiments.run_mcl`) and the control,
stage 0 fine-tuned exactly as one MCL stage but on random batches
(:func:`mclbook.clip_experiments.train_control`). Stage 0's captions may leave clauses out
(:func:`mcl.data.scenes.caption_scenes`), so stage 0 can be a CLIP "pretrained" on data that rarely
names some properties, as OpenAI's CLIP rarely reads the details MMVP asks about; the MCL stages and the
control train on the same captions as each other (the full ones unless the candidate says otherwise).
Each row also records the linear-probe accuracy of every property on the image features of stage 0,
stage 1 and the control (what each image tower encodes, whether or not its text tower can name it).

Every model is scored on a held-out generated MMVP-layout benchmark (:data:`BENCH_PAIRS` pairs per
pattern, written with ``seed=BENCH_SEED``: the random stream ``(BENCH_SEED, 7919)``, disjoint from the
training scenes' ``default_rng(data_seed)`` and from the chapters' 30-pair benchmark), with a stratified
bootstrap 95 % interval over pairs (:func:`mcl.clip.eval.bootstrap_average`). The issue's target (mean
over seeds 0, 1, 2):

    (stage 0 + stage 1) - (stage 0 + control) >= TARGET points of MMVP average, and the two seed-averaged
    intervals do not overlap.

Results are merged into the JSON file after every candidate and seed, under a file lock; each run is
stamped with its command and date. Trained models are cached under ``_build/book/cache/clip-search``
(keyed by settings, data and training code, as the chapters'), so candidates that share stage 0 train it
once.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from mcl.clip import encode_images
from mcl.clip.eval import bootstrap_average, mmvp_features, score_concatenated
from mcl.data.mmvp import PATTERNS
from mcl.data.scenes import PROPERTIES, caption_scenes
from mcl.evaluate import probe_attributes
from mclbook import clip_experiments as ce
from mclbook.results import search_command, updating_record

ROOT = Path(__file__).resolve().parents[1]
TARGET = 5.0  # points of MMVP average
BENCH_PAIRS = 300  # pairs per pattern: one pair moves a pattern by 0.33 points
BENCH_SEED = 1
N_BOOT = 2000
N_PROBE = 1000  # held-out scenes for the linear probes of the image features
CACHE = ROOT / "_build" / "book" / "cache" / "clip-search"

# the properties a 64 px scene shows in a small region (the arrow, the dot, the count, the row's place
# beside the star, the word), against the large-area ones (colour, shape, filled or hollow, size)
DETAILS = ("orientation", "presence", "quantity", "position", "text")
NO_DETAILS = dict.fromkeys(DETAILS, 0.0)
LOW_DETAILS = dict.fromkeys(DETAILS, 0.2)
PARTIAL = dict.fromkeys(PROPERTIES, 0.5)
PARTIAL_RARE_DETAILS = PARTIAL | dict.fromkeys(DETAILS, 0.05)

# name -> {"preset": clip_preset overrides, "stages": further overrides for the MCL stages and the control
# only (e.g. their batch size; optional), "stage0_mention": property -> probability of its clause in stage
# 0's captions (None: all clauses), "mention": the same for the MCL stages' and the control's captions
# (optional, default all clauses), "stage0_variants" / "variants": captions per image (optional, 1)}
# Candidates other than the book preset train stage 0 and one MCL stage (n_stages=2): stage 1 and the
# control do not depend on n_stages, and the target compares them.
TWO = {"n_stages": 2}
CANDIDATES: dict[str, dict[str, Any]] = {
    "book preset": {"preset": {}, "stage0_mention": None},
    "book preset, k=10": {"preset": TWO | {"k": 10}, "stage0_mention": None},
    "book preset, k=2": {"preset": TWO | {"k": 2}, "stage0_mention": None},
    "book preset, 12 epochs per stage": {"preset": TWO | {"epochs": 12}, "stage0_mention": None},
    "book preset, 20 epochs per stage": {"preset": TWO | {"epochs": 20}, "stage0_mention": None},
    # stage 0 "pretrained" on captions that never state the details; stages and control on full captions
    "stage 0 without detail clauses": {"preset": TWO, "stage0_mention": NO_DETAILS},
    "stage 0 without detail clauses, k=10": {"preset": TWO | {"k": 10}, "stage0_mention": NO_DETAILS},
    "stage 0 without detail clauses, k=20": {"preset": TWO | {"k": 20}, "stage0_mention": NO_DETAILS},
    "stage 0 details at p=0.2, k=10": {"preset": TWO | {"k": 10}, "stage0_mention": LOW_DETAILS},
    # the paper's fine-tuning: text tower locked (it must have read the details in stage 0)
    "stage 0 details at p=0.2, k=10, text locked": {
        "preset": TWO | {"k": 10, "lock_text": True},
        "stage0_mention": LOW_DETAILS,
    },
    "stage 0 without detail clauses, k=10, 12 epochs": {
        "preset": TWO | {"k": 10, "epochs": 12},
        "stage0_mention": NO_DETAILS,
    },
    "stage 0 without detail clauses, k=10, last 3 image groups": {
        "preset": TWO | {"k": 10, "unlocked_groups": 3},
        "stage0_mention": NO_DETAILS,
    },
    # a converged stage 0 (its loss still falls fast after 12 epochs, so a control mostly trains it on)
    "stage 0 30 epochs, k=10": {"preset": TWO | {"k": 10, "stage0_epochs": 30}, "stage0_mention": None},
    "stage 0 30 epochs without detail clauses, k=10": {
        "preset": TWO | {"k": 10, "stage0_epochs": 30},
        "stage0_mention": NO_DETAILS,
    },
    "stage 0 30 epochs without detail clauses, k=20": {
        "preset": TWO | {"k": 20, "stage0_epochs": 30},
        "stage0_mention": NO_DETAILS,
    },
    "stage 0 30 epochs, details at p=0.2, k=10": {
        "preset": TWO | {"k": 10, "stage0_epochs": 30},
        "stage0_mention": LOW_DETAILS,
    },
    # finer pseudo-labels: batches of 32 let k = 30 groups hold 4 batches each, and a random batch of 32
    # rarely holds two scenes alike in colour, shape, fill, size and count (216 combinations), so the
    # control has little reason to read the details
    "stage 0 30 epochs, k=30, stages at batch 32": {
        "preset": TWO | {"k": 30, "stage0_epochs": 30},
        "stages": {"batch_size": 32},
        "stage0_mention": None,
    },
    "stage 0 30 epochs without detail clauses, k=30, stages at batch 32": {
        "preset": TWO | {"k": 30, "stage0_epochs": 30},
        "stages": {"batch_size": 32},
        "stage0_mention": NO_DETAILS,
    },
    # partial captions (each clause with probability 1/2, four captions per image, one drawn per epoch),
    # as web captions name a few things each: a one-clause MMVP statement is then in the training
    # distribution. Stage 0's captions state the details rarely.
    "partial captions, stage 0 rarely states details, k=10": {
        "preset": TWO | {"k": 10, "stage0_epochs": 20},
        "stage0_mention": PARTIAL_RARE_DETAILS,
        "stage0_variants": 4,
        "mention": PARTIAL,
        "variants": 4,
    },
    "partial captions, stage 0 rarely states details, k=20": {
        "preset": TWO | {"k": 20, "stage0_epochs": 20},
        "stage0_mention": PARTIAL_RARE_DETAILS,
        "stage0_variants": 4,
        "mention": PARTIAL,
        "variants": 4,
    },
    "partial captions, stage 0 rarely states details, k=30, stages at batch 32": {
        "preset": TWO | {"k": 30, "stage0_epochs": 20},
        "stages": {"batch_size": 32},
        "stage0_mention": PARTIAL_RARE_DETAILS,
        "stage0_variants": 4,
        "mention": PARTIAL,
        "variants": 4,
    },
    "partial captions everywhere, k=10": {
        "preset": TWO | {"k": 10, "stage0_epochs": 20},
        "stage0_mention": PARTIAL,
        "stage0_variants": 4,
        "mention": PARTIAL,
        "variants": 4,
    },
}


def with_captions(
    data: ce.TrainingData, preset: ce.ClipPreset, mention: dict[str, float] | None, variants: int = 1
) -> ce.TrainingData:
    """The training scenes (same images) with captions that leave clauses out per ``mention``
    (:func:`mcl.data.scenes.caption_scenes`, seeds ``data_seed + v``); with ``variants`` > 1 each image
    gets that many such captions, one drawn per epoch by :func:`mcl.clip.train_clip`."""
    if mention is None and variants == 1:
        return data
    specs = ce.scene_specs(preset.n_train, preset.data_seed)
    drawn = [caption_scenes(specs, mention=mention, seed=preset.data_seed + v) for v in range(variants)]
    captions = drawn[0] if variants == 1 else [list(c) for c in zip(*drawn, strict=True)]
    return ce.TrainingData(
        data.images, captions, data.properties, f"{data.source}, mention {mention} x {variants}"
    )


def entry(right: torch.Tensor, patterns: list[str]) -> dict[str, Any]:
    """Average (%) with its bootstrap interval, per-pattern % (paper column names), and the per-pair
    outcomes as a "01" string (for intervals over seeds without retraining)."""
    average, low, high = bootstrap_average(right, patterns, n_boot=N_BOOT)
    names = np.asarray(patterns)
    per_pattern = {name: 100.0 * float(right.numpy()[names == name].mean()) for name in PATTERNS}
    return {
        "average": average,
        "interval": [low, high],
        "per_pattern": ce.abbreviate(per_pattern),
        "right": "".join("1" if r else "0" for r in right.tolist()),
    }


def measure(name: str, seed: int, device: str) -> dict[str, Any]:
    """Stage 0, the MCL stages and the control of candidate ``name`` at ``seed``, scored on the benchmark."""
    spec = CANDIDATES[name]
    preset0 = ce.clip_preset("book", **spec["preset"])
    preset = ce.clip_preset("book", **(spec["preset"] | spec.get("stages", {})))
    started = time.perf_counter()
    cache = ce.clip_cache_dir("book", CACHE)
    data = ce.load_training_data(preset, cache)
    data0 = with_captions(data, preset0, spec["stage0_mention"], spec.get("stage0_variants", 1))
    data = with_captions(data, preset, spec.get("mention"), spec.get("variants", 1))
    stage0, history0 = ce.train_stage0(preset0, data0, device=device, seed=seed, cache=cache, progress=False)
    # the MCL stages' cache keys name stage 0 by the stages' preset and the full captions: key them by
    # stage 0's own key as well
    after = cache / f"after-stage0-{ce.stage0_key(preset0, data0, seed)}"
    after.mkdir(exist_ok=True)
    result = ce.run_mcl(preset, stage0, data, device=device, seed=seed, cache=after, progress=False)
    control, history_c = ce.train_control(
        preset, stage0, data, device=device, seed=seed, cache=after, progress=False
    )
    trained = time.perf_counter() - started

    bench = dataclasses.replace(preset, mmvp_pairs_per_pattern=BENCH_PAIRS)
    pairs = ce.load_mmvp(bench, cache, seed=BENCH_SEED)
    patterns = [p.pattern for p in pairs]
    feats = [mmvp_features(m, pairs, device=device) for m in [*result.models, control]]
    stages, ctrl = feats[:-1], feats[-1]
    combos = {f"stage {s}": [f] for s, f in enumerate(stages)}
    combos |= {
        "control": [ctrl],
        "stage 0 + stage 1": stages[:2],
        "stage 0 + control": [stages[0], ctrl],
        "all stages": stages,
    }
    right = {k: score_concatenated(v, patterns, pattern_order=PATTERNS).right for k, v in combos.items()}
    gain = right["stage 0 + stage 1"].double() - right["stage 0 + control"].double()
    diff, low, high = bootstrap_average(gain, patterns, n_boot=N_BOOT)
    properties = ce.property_ami(result.cluster_ids, data.properties).round(3)
    # what each image tower encodes, whether or not the text tower can name it: a linear probe per property
    held_out = ce.load_scenes(
        N_PROBE, size=preset.scene_size, seed=preset.data_seed + ce.HELD_OUT_SEED, cache=cache
    )
    probes = {
        key: probe_attributes(
            encode_images(model, data.images, device=device),
            data.properties,
            encode_images(model, held_out[0], device=device),
            held_out[2],
        )
        for key, model in (("stage 0", stage0), ("stage 1", result.models[1]), ("control", control))
    }
    return {
        "overrides": spec["preset"],
        "stage_overrides": spec.get("stages", {}),
        "stage0_mention": spec["stage0_mention"],
        "stage0_caption_variants": spec.get("stage0_variants", 1),
        "mention": spec.get("mention"),
        "caption_variants": spec.get("variants", 1),
        "n_stages": preset.n_stages,
        "k": preset.k,
        "mmvp": {k: entry(r, patterns) for k, r in right.items()},
        "gain": {"mean": diff, "interval": [low, high]},
        "cluster_property_ami": properties.to_dict(orient="index"),
        "probe": probes,
        "sampler": [
            {"groups": s.n_groups, "trained_groups": s.n_trained_groups, "mixed_batches": s.n_mixed_batches}
            for s in result.samplers[1:]
        ],
        "losses": {
            "stage 0": history0.losses,
            **{f"stage {s}": h.losses for s, h in enumerate(result.histories) if h is not None},
            "control": history_c.losses,
        },
        "train_seconds": trained,
        "seconds": time.perf_counter() - started,
    }


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Over the seeds run so far: each seed's gain, their mean and standard deviation, and for every
    column the bootstrap interval of the seed-averaged MMVP average (pairs resampled, the benchmark being
    shared, with the per-pair outcome averaged over seeds); whether the target is met (3 seeds)."""
    seeds = sorted(runs, key=int)
    patterns = [p for p in PATTERNS for _ in range(BENCH_PAIRS)]
    out: dict[str, Any] = {"seeds": [int(s) for s in seeds]}
    for key in ("stage 0", "stage 1", "control", "stage 0 + stage 1", "stage 0 + control", "all stages"):
        outcomes = torch.tensor([[c == "1" for c in runs[s]["mmvp"][key]["right"]] for s in seeds]).double()
        average, low, high = bootstrap_average(outcomes.mean(0), patterns, n_boot=N_BOOT)
        out[key] = {"average": average, "interval": [low, high]}
    out["gain_per_seed"] = {s: runs[s]["gain"]["mean"] for s in seeds}
    gains = list(out["gain_per_seed"].values())
    out["gain_mean"] = float(np.mean(gains))
    # the bootstrap above resamples pairs with the seeds fixed; the spread over seeds is separate
    out["gain_seed_sd"] = float(np.std(gains, ddof=1)) if len(gains) > 1 else None
    mcl, control = out["stage 0 + stage 1"]["interval"], out["stage 0 + control"]["interval"]
    out["intervals_overlap"] = mcl[0] <= control[1] and control[0] <= mcl[1]
    out["meets_target"] = len(seeds) >= 3 and out["gain_mean"] >= TARGET and mcl[0] > control[1]
    return out


COLUMNS = ("stage 0", "stage 1", "control", "stage 0 + stage 1", "stage 0 + control", "all stages")


def table(record: dict[str, Any]) -> str:
    """The record as a markdown table: one line per candidate and seed (MMVP average [95 % interval]),
    then for candidates with several seeds the seed-averaged line."""

    def cell(v: dict[str, Any]) -> str:
        return f"{v['average']:.1f} [{v['interval'][0]:.1f}, {v['interval'][1]:.1f}]"

    lines = [
        "| candidate | seed | " + " | ".join(COLUMNS) + " | gain (paired) |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for name, row in record["candidates"].items():
        for seed, run in sorted(row["runs"].items(), key=lambda kv: int(kv[0])):
            cells = [cell(run["mmvp"][c]) for c in COLUMNS]
            lines.append(
                f"| {name} | {seed} | "
                + " | ".join(cells)
                + f" | {cell(run['gain'] | {'average': run['gain']['mean']})} |"
            )
        if len(row["runs"]) > 1:
            summary = row["summary"]
            cells = [cell(summary[c]) for c in COLUMNS]
            seeds = ",".join(str(s) for s in summary["seeds"])
            lines.append(
                f"| {name} | mean {seeds} | " + " | ".join(cells) + f" | {summary['gain_mean']:.1f} "
                f"(sd over seeds {summary.get('gain_seed_sd') or float('nan'):.1f}; target met: "
                f"{summary['meets_target']}) |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", action="append", default=[], choices=sorted(CANDIDATES))
    parser.add_argument("--seed", type=int, action="append", default=[])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "data" / "clip_search.json")
    parser.add_argument("--table", action="store_true", help="print the record as a markdown table and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    torch.set_num_threads(1)
    threadpool_limits(1)
    command = search_command(__file__)
    for name in args.only or list(CANDIDATES):
        for seed in args.seed or [0]:
            print(f"[search] {name}, seed {seed}", flush=True)
            stamp = {"command": command, "date": datetime.date.today().isoformat(), "cpu_threads": 1}
            measured = measure(name, seed, args.device) | stamp
            short = {k: round(v["average"], 1) for k, v in measured["mmvp"].items()}
            print(json.dumps({**short, "gain": measured["gain"], "seconds": measured["seconds"]}), flush=True)
            with updating_record(args.out) as record:
                record.update(
                    target=TARGET,
                    benchmark={"pairs_per_pattern": BENCH_PAIRS, "seed": BENCH_SEED, "n_boot": N_BOOT},
                    base="the CLIP book preset (mclbook.clip_experiments.clip_preset('book'))",
                    device=args.device,
                )
                row = record["candidates"].setdefault(name, {"runs": {}})
                row["runs"][str(seed)] = measured
                row["summary"] = summarize(row["runs"])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
