"""The contrastive training loop (SimCLR and its variants) used by every stage of MCL.

One loop serves SimCLR, MCL stages (pass a feature-aware ``batch_sampler``), IFM (pass its
``loss_fn``), temperature schedules (``temperature_schedule``) and feature dropout
(``view_transform``). It seeds everything, shows a progress bar, checkpoints every epoch and
resumes from the last checkpoint when rerun with the same ``checkpoint_dir``.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcl.device import autocast, resolve_device, seed_everything
from mcl.losses import check_temperature, nt_xent

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (one MCL stage)."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    temperature: float = 0.5
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs} must be >= 0")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size={self.batch_size} must be >= 2: a contrastive batch needs negatives"
            )
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        check_temperature(self.temperature)


@dataclass
class TrainHistory:
    """Mean loss per epoch, the temperature used in each epoch, and the wall time."""

    losses: list[float] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    seconds: float = 0.0


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """A generator for one epoch, derived from (seed, epoch): resuming reproduces the same epochs."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def epoch_batches(
    n: int, batch_size: int, epoch: int, seed: int, batch_sampler: object | None = None
) -> Sequence[Sequence[int]] | Iterator[Sequence[int]]:
    """Index batches for one epoch: the sampler's (after ``set_epoch``) or a seeded shuffle, drop_last."""
    if batch_sampler is not None:
        if hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(epoch)
        return batch_sampler
    if n < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the data set ({n} samples); lower it")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return order[: n - n % batch_size].view(-1, batch_size).tolist()


def n_batches(n: int, batch_size: int, batch_sampler: object | None) -> int:
    return len(batch_sampler) if batch_sampler is not None else n // batch_size


def save_checkpoint(path: Path, epoch: int, modules: dict[str, nn.Module], optimizer, history) -> None:
    """Write atomically (temp file, then rename), so an interrupted save never leaves a broken file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "epoch": epoch,
        "modules": {name: m.state_dict() for name, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "history": asdict(history),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded safely: corrupt, truncated, or holding more than data."""


def load_file(path: str | Path, map_location=None) -> dict:
    """``torch.load`` with ``weights_only=True``: tensors and plain Python values only, so a file whose
    pickle would run code is refused (:class:`CheckpointError`, naming the path) instead of executed."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values, and loading it could run code, so it "
            f"was refused ({str(err).splitlines()[0][:120]}). Delete the file (or its run folder) to retrain."
        ) from None
    except (RuntimeError, EOFError, KeyError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or truncated: {str(err).splitlines()[0][:120]}). "
            "Delete the file (or its run folder) to retrain."
        ) from None


def load_checkpoint(path: Path, modules: dict[str, nn.Module], optimizer, device) -> tuple[int, TrainHistory]:
    """Restore modules and optimizer; return (next epoch, history so far)."""
    state = load_file(path, map_location=device)
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"] + 1, TrainHistory(**state["history"])


def resume(
    config: TrainConfig,
    modules: dict[str, nn.Module],
    optimizer,
    device,
    *,
    desc: str = "train",
    show: bool = True,
) -> tuple[Path | None, TrainHistory, tqdm]:
    """Where a run starts: ``(checkpoint path or None, history so far, bar over the epochs left)``.

    With ``config.checkpoint_dir`` and a ``last.pt`` there, modules and optimizer are restored from it
    (a finished run then has no epochs left). The bar is a tqdm over the remaining epochs, shown when
    ``config.progress`` and ``show``.
    """
    checkpoint = Path(config.checkpoint_dir) / "last.pt" if config.checkpoint_dir else None
    start, history = 0, TrainHistory()
    if checkpoint is not None and checkpoint.exists():
        start, history = load_checkpoint(checkpoint, modules, optimizer, device)
    bar = tqdm(
        range(start, config.epochs),
        desc=desc,
        disable=not (config.progress and show),
        initial=start,
        total=config.epochs,
    )
    return checkpoint, history, bar


def record_epoch(
    history: TrainHistory, total: torch.Tensor, count: int, temperature: float, bar: tqdm
) -> None:
    """Append an epoch's mean loss ``total / count`` and its temperature to ``history``; show it on ``bar``.
    An epoch without batches (``count == 0``) raises, naming the fix."""
    if count == 0:
        raise ValueError(
            "the epoch had no batches: the data set or the sampler's groups are smaller "
            "than batch_size; lower batch_size"
        )
    history.losses.append((total / count).item())
    history.temperatures.append(temperature)
    bar.set_postfix(loss=f"{history.losses[-1]:.3f}")


def train_contrastive(
    model: nn.Module,
    images: torch.Tensor,
    config: TrainConfig,
    *,
    augment: nn.Module,
    batch_sampler: object | None = None,
    loss_fn: LossFn = nt_xent,
    temperature_schedule: Callable[[int], float] | None = None,
    view_transform: nn.Module | None = None,
) -> TrainHistory:
    """Train ``model`` (images -> projections z) with a two-view contrastive loss.

    images: uint8 ``[N, C, H, W]``. Each step takes a batch of indices (from ``batch_sampler``,
    e.g. :class:`mcl.sampling.FeatureAwareBatchSampler`, or a seeded shuffle), makes two views
    with ``augment``, optionally passes each through ``view_transform`` (whose parameters join the
    optimiser; see :mod:`mcl.viewmaker`), and minimises ``loss_fn(z1, z2, temperature)`` on the
    L2-normalised projections. Adam with ``config.lr`` and ``config.weight_decay``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    data = images.to(device)
    model.to(device=device, memory_format=torch.channels_last)
    modules = {"model": model}
    if view_transform is not None:
        modules["view_transform"] = view_transform.to(device=device, memory_format=torch.channels_last)
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)

    checkpoint, history, epochs = resume(config, modules, optimizer, device)
    clock = time.perf_counter()
    for epoch in epochs:
        temperature = check_temperature(
            temperature_schedule(epoch) if temperature_schedule else config.temperature
        )
        generator = epoch_generator(config.seed, epoch, device)
        for m in modules.values():
            m.train()
        total, count = torch.zeros((), device=device), 0
        for index in epoch_batches(len(data), config.batch_size, epoch, config.seed, batch_sampler):
            x = data[torch.as_tensor(index, device=device)].float().div_(255)
            views = torch.cat([augment(x, generator), augment(x, generator)])
            views = views.contiguous(memory_format=torch.channels_last)  # ~1.4x faster convolutions on a CPU
            if view_transform is not None:
                views = view_transform(views).contiguous(memory_format=torch.channels_last)
            with autocast(device):
                z = model(views)
            z = F.normalize(z.float(), dim=1)
            loss = loss_fn(*z.chunk(2), temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            count += 1
        record_epoch(history, total, count, temperature, epochs)
        if checkpoint is not None:
            history.seconds += time.perf_counter() - clock
            clock = time.perf_counter()
            save_checkpoint(checkpoint, epoch, modules, optimizer, history)
    history.seconds += time.perf_counter() - clock
    model.eval()
    return history


@torch.no_grad()
def embed(
    encode: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: str | torch.device = "auto",
    normalize: bool = True,
) -> torch.Tensor:
    """Embed uint8 images ``[N, C, H, W]`` without augmentation: float32 ``[N, D]`` on the CPU.

    ``encode`` maps a float batch in [0, 1] to features, e.g. ``model.features`` (backbone) or
    ``model`` (projection). Rows are L2-normalised when ``normalize`` (what MCL clusters).
    The module behind ``encode`` is put in eval mode for the pass and restored afterwards.
    """
    device = resolve_device(device)
    module = encode if isinstance(encode, nn.Module) else getattr(encode, "__self__", None)
    was_training = isinstance(module, nn.Module) and module.training
    if isinstance(module, nn.Module):
        module.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255)
        with autocast(device):
            h = encode(x.contiguous(memory_format=torch.channels_last))
        out.append(h.float().cpu())
    if was_training:
        module.train()
    features = torch.cat(out)
    return F.normalize(features, dim=1) if normalize else features
