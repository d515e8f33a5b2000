"""What MCL costs a CLIP training run: a step on feature-aware batches against a step on plain batches,
and the one-off clustering of a stage, all on the same tiny CLIP in the same run.

A step: uint8 scenes of one batch -> resized and standardised -> the CLIP model (both towers training)
-> symmetric CLIP loss -> backward -> AdamW step. "plain" batches are a seeded shuffle; "MCL" batches
come from :class:`mcl.sampling.FeatureAwareBatchSampler` over k-means pseudo-labels (one group per
batch). The two kinds of step are timed alternately (median of each), so machine load hits both alike.
The one-off cost per MCL stage is embedding the training set, k-means and building the sampler; it is
reported in seconds, in steps, and as a share of one stage of ``--epochs`` epochs.
Usage: ``python bench/bench_clip_step.py [--n 2000] [--batch 128] [--steps 8] [--k 10] [--epochs 6]
[--arch mcl-tiny-vit] [--device auto] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mcl.clip import (
    ClipTrainConfig,
    clip_batch_loss,
    create_clip,
    encode_images,
    lock_clip,
    make_optimizer,
    normalize_images,
    tokenizer_for,
)
from mcl.clip.train import tokenize_captions
from mcl.cluster import kmeans
from mcl.data.scenes import make_captioned_scenes
from mcl.device import autocast, resolve_device
from mcl.sampling import FeatureAwareBatchSampler


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, images: torch.Tensor, tokens: torch.Tensor, optimizer, device: torch.device):
    """A closure running one CLIP training step on the rows ``index`` (int64 ``[B]``)."""

    def step(index: torch.Tensor) -> None:
        x = images[index].to(device).float().div_(255)
        x = normalize_images(model, x).contiguous(memory_format=torch.channels_last)
        with autocast(device):
            loss = clip_batch_loss(model, x, tokens[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="training scenes (clustered once)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--k", type=int, default=10, help="k-means clusters")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of one stage, for the share")
    parser.add_argument("--arch", default="mcl-tiny-vit")
    parser.add_argument("--size", type=int, default=64, help="scene side in px")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n < 2 * args.batch:
        parser.error(f"--n {args.n} must be at least 2 x --batch ({2 * args.batch})")
    device = resolve_device(args.device)
    images, captions = make_captioned_scenes(args.n, size=args.size, seed=0)
    model = create_clip(args.arch, device=device, seed=0)
    lock_clip(model, None, lock_text=False)
    model.to(memory_format=torch.channels_last).train()
    tokens, offsets = tokenize_captions(captions, tokenizer_for(model))
    tokens = tokens[offsets[:-1]]  # one caption per scene
    optimizer = make_optimizer(model, ClipTrainConfig(lr=1e-4, device=str(device)))
    step = make_step(model, images, tokens, optimizer, device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}, {args.arch}, "
        f"{args.n} scenes at {args.size}px, batch {args.batch}, k = {args.k}"
    )

    # the one-off cost of a stage: embed the training set, cluster, build the sampler
    sync(device)
    start = time.perf_counter()
    features = encode_images(model, images, device=device)
    sync(device)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    labels = kmeans(features, args.k, seed=0).labels.cpu()
    sync(device)
    kmeans_s = time.perf_counter() - start
    start = time.perf_counter()
    sampler = FeatureAwareBatchSampler(labels, args.batch, seed=0, small_groups="merge")
    mcl_batches = [torch.as_tensor(b) for b in sampler]
    sampler_s = time.perf_counter() - start
    model.train()

    generator = torch.Generator().manual_seed(0)
    plain_batches = list(torch.randperm(args.n, generator=generator).split(args.batch))
    plain_batches = [b for b in plain_batches if len(b) == args.batch]
    mcl_batches = [b for b in mcl_batches if len(b) == args.batch]
    for i in range(args.warmup):
        step(plain_batches[i % len(plain_batches)])
        step(mcl_batches[i % len(mcl_batches)])
    times: dict[str, list[float]] = {"plain": [], "MCL": []}
    for i in range(args.steps):
        for name, batches in (("plain", plain_batches), ("MCL", mcl_batches)):
            sync(device)
            start = time.perf_counter()
            step(batches[i % len(batches)])
            sync(device)
            times[name].append(time.perf_counter() - start)

    plain = statistics.median(times["plain"])
    header = f"{'batches':<28} | {'steps':>5} | {'s/step':>7} | {'samples/s':>9} | {'x plain':>7}"
    print(header)
    print("-" * len(header))
    for name, label in (("plain", "plain (random)"), ("MCL", "MCL (feature-aware)")):
        median = statistics.median(times[name])
        print(
            f"{label:<28} | {len(times[name]):>5} | {median:>7.4f} | {args.batch / median:>9.0f} | "
            f"{median / plain:>7.2f}"
        )
    one_off = embed_s + kmeans_s + sampler_s
    steps_per_stage = args.epochs * (args.n // args.batch)
    print()
    print(f"{'one-off per MCL stage':<28} | {'seconds':>7} | {'in steps':>8} | {'% of a stage':>12}")
    print("-" * 66)
    for label, seconds in (
        ("embed training set", embed_s),
        (f"k-means (k = {args.k})", kmeans_s),
        ("build sampler", sampler_s),
        ("total", one_off),
    ):
        print(
            f"{label:<28} | {seconds:>7.3f} | {seconds / plain:>8.1f} | "
            f"{100 * seconds / (steps_per_stage * plain):>11.1f}%"
        )
    print(f"(a stage: {args.epochs} epochs x {args.n // args.batch} steps = {steps_per_stage} plain steps)")
    print(
        f"sampler: {sampler.n_groups} groups, {sampler.n_homogeneous_batches} homogeneous batches per epoch"
    )


if __name__ == "__main__":
    main()
