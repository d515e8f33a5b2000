"""One SimCLR training step in views per second, with and without channels_last.

A step: a batch of uint8 images -> two SimCLRAugment views -> ContrastiveNet (small_cnn; resnet18
with ``--resnet``) -> NT-Xent on the L2-normalised projections -> backward -> Adam step. The
"augment only" row times the two augmentation calls alone, to show their share of a step.
Usage: ``python bench/bench_train_step.py [--batch 256] [--size 32] [--steps 10] [--resnet]
[--resnet-steps 2] [--device auto] [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mcl.augment import SimCLRAugment
from mcl.device import autocast, resolve_device
from mcl.models import ContrastiveNet, build_encoder

try:
    from mcl.losses import nt_xent

    LOSS_SOURCE = "mcl.losses.nt_xent"
except ImportError:  # the loss module is written by another helper; keep the bench runnable without it

    def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
        """Local fallback: SimCLR's NT-Xent over the 2N L2-normalised views."""
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
        n = z1.shape[0]
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return F.cross_entropy(logits, targets)

    LOSS_SOURCE = "local fallback (mcl.losses missing)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds of ``step()`` over ``steps`` calls after
    ``warmup`` calls (CPU time shows the work done when other jobs share the machine)."""
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(steps):
        sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        sync(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def make_step(name: str, images: torch.Tensor, channels_last: bool, device: torch.device):
    """A closure running one full SimCLR step (augment x2, forward, loss, backward, Adam)."""
    torch.manual_seed(0)
    model = ContrastiveNet(build_encoder(name, images.shape[1]), proj_dim=128).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    augment = SimCLRAugment(tuple(images.shape[-2:]))
    generator = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        views = torch.cat([augment(images, generator), augment(images, generator)])
        views = views.contiguous(memory_format=fmt)
        with autocast(device):
            z = model(views)
        z = F.normalize(z.float(), dim=1)
        loss = nt_xent(*z.chunk(2), temperature=0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps for small_cnn")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--resnet", action="store_true", help="also time the CIFAR ResNet-18")
    parser.add_argument("--resnet-steps", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, generator=gen)
    images = images.to(device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}, "
        f"batch {args.batch} x 2 views at {args.size}px, loss: {LOSS_SOURCE}"
    )
    header = (
        f"{'model':<10} | {'memory format':<15} | {'steps':>5} | {'s/step':>7} | {'views/s':>8} | "
        f"{'views/CPU-s':>11}"
    )
    print(header)
    print("-" * len(header))

    augment = SimCLRAugment(args.size)
    generator = torch.Generator(device=device).manual_seed(0)
    views = 2 * args.batch

    def row(name: str, fmt: str, steps: int, wall: float, cpu: float) -> None:
        rate, cpu_rate = views / wall, views / max(cpu, 1e-9)
        print(f"{name:<10} | {fmt:<15} | {steps:>5} | {wall:>7.3f} | {rate:>8,.0f} | {cpu_rate:>11,.0f}")

    wall, cpu = time_steps(
        lambda: (augment(images, generator), augment(images, generator)), args.steps, args.warmup, device
    )
    row("(augment)", "-", args.steps, wall, cpu)

    runs = [("small_cnn", args.steps)] + ([("resnet18", args.resnet_steps)] if args.resnet else [])
    for name, steps in runs:
        rates = {}
        for channels_last in (False, True):
            step = make_step(name, images, channels_last, device)
            warmup = min(args.warmup, max(1, steps // 2))
            wall, cpu = time_steps(step, steps, warmup, device)
            rates[channels_last] = views / wall
            row(name, "channels_last" if channels_last else "contiguous", steps, wall, cpu)
        print(f"{name:<10} | channels_last speed-up {rates[True] / rates[False]:.2f}x")


if __name__ == "__main__":
    main()
