"""The one training loop: epochs, batches, resuming, checkpoints, timing and loss bookkeeping.

Every method (SimCLR and its baselines in :mod:`mcl.simclr`, MoCo-v2 in :mod:`mcl.moco`, CLIP in
:mod:`mcl.clip.train`) supplies only a :class:`Step` (how one batch becomes a loss, and what happens
after the optimiser's step) and its config (a :class:`LoopConfig` with the method's own fields);
:func:`fit` owns the rest:

* seeding (``config.seed``), one generator per epoch derived from (seed, epoch), batches from a sampler
  or a seeded shuffle (:func:`epoch_batches`);
* a progress bar over the epochs, the mean loss of every epoch, wall time;
* a check of every step's loss: a NaN or infinite loss stops the run with an error that names the
  epoch, the step and the setting to change, before anything of that epoch is saved;
* a checkpoint after every epoch (``config.checkpoint_dir/last.pt``, written atomically, loaded with
  ``weights_only=True``), holding the run's settings; a rerun with the same settings resumes from it
  (a finished run is loaded, not retrained) and a rerun with other settings is refused.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from mcl.device import seed_everything
from mcl.files import atomic_write
from mcl.losses import check_temperature
from mcl.progress import progress as progress_bar


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} must be an int >= {low}")
    return value


def check_positive(name: str, value: object, hint: str = "") -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name}={value!r} must be a finite number > 0{hint}")
    return float(value)


@dataclass
class LoopConfig:
    """What every training run has: epochs, batch size, learning rate, seed, device, progress bar and
    the checkpoint folder. Each method's config extends it with its own fields."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(
                f"batch_size={self.batch_size!r} must be an int >= 2: a contrastive batch needs negatives"
            )
        check_positive("lr", self.lr, "; e.g. 1e-3")
        _check_int("seed", self.seed, 0)

    def settings(self) -> dict[str, Any]:
        """The fields that decide what the run trains (not where, how visibly, or for how many epochs):
        stored in every checkpoint and compared on resume."""
        skip = {"epochs", "device", "progress", "checkpoint_dir"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass
class TrainConfig(LoopConfig):
    """The config of the unimodal methods (SimCLR, its baselines, MoCo-v2): Adam with ``lr`` and
    ``weight_decay``, and the loss's ``temperature`` (SimCLR's; MoCo keeps its own)."""

    weight_decay: float = 1e-6
    temperature: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay!r} must be a finite number >= 0")
        check_positive("temperature", self.temperature, "; e.g. 0.5 (SimCLR) or 0.2 (MoCo-v2)")
        check_temperature(self.temperature)  # and not so small that the logits overflow


@dataclass
class TrainHistory:
    """Mean loss per epoch, the temperature of each epoch, and the wall time."""

    losses: list[float] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    seconds: float = 0.0


class Step(Protocol):
    """What a method gives :func:`fit`. ``begin_epoch`` prepares an epoch (generators, the temperature);
    ``loss`` turns one batch of data-set indices into a 0-dim loss (its ``step`` counts all batches from
    the first epoch); ``after_step`` runs after the optimiser's step (a momentum update, a clamp);
    ``temperature`` is what the epoch records when it ends."""

    def begin_epoch(self, epoch: int) -> None: ...

    def loss(self, index: Sequence[int], step: int) -> Tensor: ...

    def after_step(self) -> None: ...

    def temperature(self) -> float: ...


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, holding more than data, or made by other settings."""


class NonFiniteLossError(FloatingPointError):
    """A training step produced a NaN or infinite loss."""


def epoch_generator(seed: int, epoch: int, device: torch.device, stream: int = 0) -> torch.Generator:
    """A generator for one epoch, derived from (seed, epoch): resuming reproduces the same epochs.
    ``stream`` gives a step's other random draws (e.g. FD's viewmaker noise) a sequence of their own."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch + stream * 2**40)


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
    """Batches per epoch of :func:`epoch_batches`."""
    return len(batch_sampler) if batch_sampler is not None else n // batch_size


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
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, KeyError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or truncated: {str(err).splitlines()[0][:120]}). "
            "Delete the file (or its run folder) to retrain."
        ) from None


def save_checkpoint(
    path: Path,
    epoch: int,
    modules: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    history: TrainHistory,
    settings: Mapping[str, Any],
) -> None:
    """Write atomically (temp file, then rename), so an interrupted save never leaves a broken file."""
    state = {
        "epoch": epoch,
        "modules": {name: m.state_dict() for name, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "history": asdict(history),
        "settings": dict(settings),
    }
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(
    path: Path,
    modules: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    settings: Mapping[str, Any],
    epochs: int,
) -> tuple[int, TrainHistory]:
    """Restore modules and optimizer from ``path``; return (next epoch, history so far). A checkpoint made
    with other ``settings``, or with more epochs done than ``epochs``, is refused naming the differences."""
    state = load_file(path, map_location=device)
    saved = state.get("settings")
    if saved is not None and saved != _plain(settings):
        diff = {k: (saved.get(k), v) for k, v in _plain(settings).items() if saved.get(k) != v}
        diff |= {k: (v, None) for k, v in saved.items() if k not in settings}
        changes = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"{path} was trained with other settings ({changes}); its weights are not this run's. Pass "
            "another checkpoint_dir, or delete the folder to retrain."
        )
    if state["epoch"] + 1 > epochs:
        raise CheckpointError(
            f"{path} holds {state['epoch'] + 1} trained epochs, more than epochs={epochs}; pass another "
            "checkpoint_dir, or delete the folder to retrain"
        )
    try:
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"{path} does not fit this model ({str(err).splitlines()[0][:200]}); pass another "
            "checkpoint_dir, or delete the folder to retrain"
        ) from None
    return state["epoch"] + 1, TrainHistory(**state["history"])


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as they come back from a checkpoint (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def fit(
    step: Step,
    modules: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    config: LoopConfig,
    *,
    n: int,
    device: torch.device,
    batch_sampler: object | None = None,
    settings: Mapping[str, Any] | None = None,
    desc: str = "train",
    main_process: bool = True,
    after_checkpoint=None,
) -> TrainHistory:
    """Train ``modules`` with ``optimizer`` for ``config.epochs`` epochs over ``n`` samples.

    Args:
        step: the method's :class:`Step`.
        modules: what the checkpoint holds (``name -> module``); all are put in train mode every epoch.
        optimizer: over the trainable parameters of ``modules``.
        config: epochs, batch size, seed, progress and checkpoint folder (see :class:`LoopConfig`).
        n: the data set's size; device: where training runs.
        batch_sampler: batches of indices (e.g. :class:`mcl.sampling.FeatureAwareBatchSampler`), or None for a
            seeded shuffle with ``config.batch_size``.
        settings: what identifies the run in its checkpoint (default ``config.settings()``).
        desc: the progress bar's label. main_process: False on the other ranks of a distributed run (no
            bar, no checkpoint writing). after_checkpoint: called after each epoch's checkpoint is written
            (a barrier when distributed).

    Returns:
        The :class:`TrainHistory` (earlier epochs included when resumed). The modules end in eval mode.
    """
    settings = dict(config.settings() if settings is None else settings)
    seed_everything(config.seed)
    checkpoint = Path(config.checkpoint_dir) / "last.pt" if config.checkpoint_dir else None
    if checkpoint is not None and checkpoint.parent.exists() and not checkpoint.parent.is_dir():
        raise CheckpointError(
            f"checkpoint_dir={str(checkpoint.parent)!r} is a file, not a folder; pass a folder (created if "
            "missing) or None for no checkpoints"
        )
    start, history = 0, TrainHistory()
    if checkpoint is not None and checkpoint.exists():
        start, history = load_checkpoint(checkpoint, modules, optimizer, device, settings, config.epochs)
    bar = progress_bar(
        range(start, config.epochs),
        desc=desc,
        disable=not (config.progress and main_process),
        initial=start,
        total=config.epochs,
    )
    try:
        per_epoch = n_batches(n, config.batch_size, batch_sampler)
    except TypeError:  # a sampler without a length: steps count within the epoch
        per_epoch = 0
    clock = time.perf_counter()
    for epoch in bar:
        step.begin_epoch(epoch)
        for module in modules.values():
            module.train()
        total, count = torch.zeros((), device=device), 0
        for index in epoch_batches(n, config.batch_size, epoch, config.seed, batch_sampler):
            loss = step.loss(index, epoch * per_epoch + count)
            if not bool(torch.isfinite(loss.detach())):
                raise NonFiniteLossError(
                    f"the loss is {loss.item()} at epoch {epoch}, step {count}: training diverged "
                    f"(lr={config.lr}); lower the learning rate (or raise the temperature). Nothing of this "
                    "epoch was saved."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step.after_step()
            total += loss.detach()
            count += 1
        if count == 0:
            raise ValueError(
                "the epoch had no batches: the data set or the sampler's groups are smaller "
                "than batch_size; lower batch_size"
            )
        history.losses.append((total / count).item())
        history.temperatures.append(step.temperature())
        bar.set_postfix(loss=f"{history.losses[-1]:.3f}")
        history.seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        if checkpoint is not None:
            if main_process:
                save_checkpoint(checkpoint, epoch, modules, optimizer, history, settings)
            if after_checkpoint is not None:
                after_checkpoint()
    history.seconds += time.perf_counter() - clock
    for module in modules.values():
        module.eval()
    return history
