"""Batched SimCLRAugment vs torchvision.transforms.v2 applied image by image (as a Dataset would).

Both run SimCLR's recipe (random resized crop, flip 0.5, colour jitter 0.4/0.4/0.4/0.1 with p=0.8,
grayscale 0.2) on uint8 images [3, S, S] -> float [3, S, S]; the peer is measured in the same run.
Usage: ``python bench/bench_augment.py [--batch 256] [--sizes 32 64] [--repeats 5] [--device auto]
[--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.transforms import v2

from mcl.augment import SimCLRAugment
from mcl.device import resolve_device


def per_sample_pipeline(size: int) -> v2.Compose:
    """The same recipe as torchvision transforms on one image, uint8 in, float32 in [0, 1] out."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(0.2),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_seconds(fns: list, repeats: int, device: torch.device) -> list[float]:
    """Median wall time of each of ``fns`` over ``repeats`` rounds, after a warm-up round.

    The functions take turns within each round, so a machine shared with other jobs slows them alike.
    """
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(repeats + 1):
        for fn, record in zip(fns, times, strict=True):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if round_:
                record.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", help="device of the batched version (auto|cpu|cuda)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batched on {device}, "
        f"batch {args.batch}, median of {args.repeats} interleaved rounds"
    )
    header = f"{'size':>5} | {'batched img/s':>14} | {'per-sample img/s':>17} | {'ratio':>6}"
    print(header)
    print("-" * len(header))
    gen = torch.Generator().manual_seed(0)
    for size in args.sizes:
        images = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8, generator=gen)
        batched = SimCLRAugment(size)
        on_device = images.to(device)
        device_gen = torch.Generator(device=device).manual_seed(0)
        pipeline = per_sample_pipeline(size)
        t_batched, t_loop = interleaved_seconds(
            [
                lambda: batched(on_device, device_gen),  # noqa: B023
                lambda: torch.stack([pipeline(img) for img in images]),  # noqa: B023
            ],
            args.repeats,
            device,
        )
        rate_b, rate_l = args.batch / t_batched, args.batch / t_loop
        print(f"{size:>5} | {rate_b:>14,.0f} | {rate_l:>17,.0f} | {rate_b / rate_l:>5.1f}x")


if __name__ == "__main__":
    main()
