"""Training-step time of MCL's baselines relative to plain SimCLR, measured in the same run.

Every variant trains the same network (SmallCNN + projection head, ``mcl.models``) on uint8 images
[3, S, S] with batch B through the library's own loops (``train_simclr``, ``train_moco``), so a
step includes the two batched augmentations, the forward/backward pass and the optimiser step:

* SimCLR: NT-Xent (t = 0.5);
* +IFM: ``ifm_loss(eps=0.1, alpha=1)`` (a second cross-entropy on shifted logits);
* +TS: ``TemperatureSchedule()`` (one float per epoch);
* +FD: a ``Viewmaker(3)`` on each view (width 32; also width 16), gradient reversal, one optimiser;
* MoCo-v2: queue 4096, m = 0.99, split BN in 8 chunks (shuffling-BN emulation), also without split BN
  and with MCL's per-group queues (3 pseudo-label groups, ``FeatureAwareBatchSampler``).

Timing: ``history.seconds / steps`` of one epoch of ``steps`` batches (random images: the cost does
not depend on the content), after a warm-up run of every variant; variants are interleaved and the
median over ``repeats`` is reported. Usage: ``python bench/bench_baselines.py [--batch 256]
[--size 32] [--steps 6] [--repeats 3] [--device auto] [--threads N]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable

import torch

from mcl.augment import SimCLRAugment
from mcl.device import resolve_device
from mcl.fit import TrainConfig
from mcl.losses import ifm_loss
from mcl.moco import MoCo, train_moco
from mcl.models import ContrastiveNet, build_encoder
from mcl.sampling import FeatureAwareBatchSampler
from mcl.schedules import TemperatureSchedule
from mcl.simclr import train_simclr
from mcl.viewmaker import Viewmaker


def make_net(seed: int = 0) -> ContrastiveNet:
    torch.manual_seed(seed)
    return ContrastiveNet(build_encoder("small_cnn", 3), proj_dim=128)


def variants(images: torch.Tensor, config: TrainConfig, size: int) -> dict[str, Callable[[], float]]:
    """name -> a function that trains one epoch and returns its seconds per step."""
    augment = SimCLRAugment(size)
    n = len(images)
    steps = n // config.batch_size
    groups = torch.arange(n) % 3

    def simclr(**kwargs) -> Callable[[], float]:
        def run() -> float:
            return train_simclr(make_net(), images, config, augment=augment, **kwargs).seconds / steps

        return run

    def moco(bn_splits: int, grouped: bool = False) -> Callable[[], float]:
        def run() -> float:
            model = MoCo(make_net(), queue_size=4096, momentum=0.99, bn_splits=bn_splits)
            if not grouped:
                return train_moco(model, images, config, augment=augment).seconds / steps
            sampler = FeatureAwareBatchSampler(groups, config.batch_size, seed=config.seed)
            history = train_moco(
                model, images, config, augment=augment, batch_sampler=sampler, group_of=groups
            )
            return history.seconds / len(sampler)

        return run

    return {
        "SimCLR": simclr(),
        "+IFM (eps 0.1, alpha 1)": simclr(loss_fn=ifm_loss(0.1, 1.0)),
        "+TS (cosine 0.1..1, T 400)": simclr(temperature_schedule=TemperatureSchedule()),
        "+FD (viewmaker, width 32)": lambda: simclr(view_transform=Viewmaker(3, width=32))(),
        "+FD (viewmaker, width 16)": lambda: simclr(view_transform=Viewmaker(3, width=16))(),
        "MoCo-v2 (split BN x8)": moco(8),
        "MoCo-v2 (plain BN)": moco(1),
        "MoCo-v2 + MCL per-group queues (x8)": moco(8, grouped=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="batches per timed epoch (a multiple of 3)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.steps < 3 or args.steps % 3:
        parser.error(f"--steps={args.steps} must be a positive multiple of 3 (three pseudo-label groups)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    images = torch.randint(
        0,
        256,
        (args.batch * args.steps, 3, args.size, args.size),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(0),
    )
    timed = TrainConfig(epochs=1, batch_size=args.batch, progress=False, device=str(device))
    runs = variants(images, timed, args.size)
    print(
        f"device {device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; SmallCNN, {args.size} px, batch {args.batch}, "
        f"{args.steps} steps per epoch, median of {args.repeats}"
    )
    for run in runs.values():  # warm-up: imports, allocator, kernels
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())
    base = statistics.median(times["SimCLR"])
    print(f"{'method':<38} {'ms/step':>9} {'x SimCLR':>9}")
    for name, values in times.items():
        ms = statistics.median(values) * 1000
        print(f"{name:<38} {ms:9.1f} {ms / (base * 1000):9.2f}")


if __name__ == "__main__":
    main()
