"""SimCLR (Chen et al., ICML 2020) and MCL with SimCLR: the method's step, a recipe, and MCL's stages.

* :func:`train_simclr` trains a model on two augmented views per image with NT-Xent through
  :func:`mcl.fit.fit`. The same step serves MCL's stages (a feature-aware ``batch_sampler``) and the
  baselines: IFM (``loss_fn``, :class:`mcl.losses.IFMLoss`), TS (``temperature_schedule``,
  :class:`mcl.schedules.TemperatureSchedule`) and FD (``view_transform``, :class:`mcl.viewmaker.Viewmaker`).
* :class:`SimCLRRecipe` holds every choice the paper leaves open (backbone, epochs, batch size,
  temperature, K, stages, ...); :func:`train_recipe` trains one model from it and :func:`mcl_simclr`
  runs MCL's stages (:func:`mcl.stages.run_multistage`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcl.augment import AugmentColumns, SimCLRAugment
from mcl.data.base import LabeledImages
from mcl.device import autocast, resolve_device
from mcl.evaluate import features
from mcl.fit import TrainConfig, TrainHistory, check_positive, epoch_generator, fit
from mcl.losses import check_temperature, grouped_loss, nt_xent
from mcl.losses._checks import is_number
from mcl.models import ENCODERS, ContrastiveNet, build_encoder
from mcl.stages import MultistageResult, run_multistage

LossFn = Callable[[Tensor, Tensor, float], Tensor]


class SimCLRStep:
    """One SimCLR batch: two augmented views of each image, their L2-normalised projections, the loss."""

    def __init__(
        self,
        model: nn.Module,
        data: Tensor,
        config: TrainConfig,
        device: torch.device,
        *,
        augment: nn.Module,
        loss_fn: LossFn,
        temperature_schedule: Callable[[int], float] | None,
        view_transform: nn.Module | None,
    ) -> None:
        self.model, self.data, self.config, self.device = model, data, config, device
        self.augment, self.loss_fn = augment, loss_fn
        self.schedule, self.view_transform = temperature_schedule, view_transform

    def begin_epoch(self, epoch: int) -> None:
        self.tau = check_temperature(self.schedule(epoch) if self.schedule else self.config.temperature)
        self.generator = epoch_generator(self.config.seed, epoch, self.device)
        # the view transform's own stream: its draws do not shift the augmentations', and resuming
        # reproduces them
        self.view_generator = epoch_generator(self.config.seed, epoch, self.device, stream=1)

    def loss(self, index: Sequence[int], step: int) -> Tensor:
        x = self.data[torch.as_tensor(index, device=self.device)].float().div_(255)
        views = torch.cat([self.augment(x, self.generator), self.augment(x, self.generator)])
        views = views.contiguous(memory_format=torch.channels_last)  # faster convolutions (bench/RESULTS.md)
        if self.view_transform is not None:
            views = self.view_transform(views, self.view_generator)
            views = views.contiguous(memory_format=torch.channels_last)
        with autocast(self.device):
            z = self.model(views)
        z = F.normalize(z.float(), dim=1)
        return self.loss_fn(*z.chunk(2), self.tau)

    def after_step(self) -> None:
        pass

    def temperature(self) -> float:
        return self.tau


def train_simclr(
    model: nn.Module,
    images: Tensor,
    config: TrainConfig,
    *,
    augment: nn.Module,
    batch_sampler: object | None = None,
    loss_fn: LossFn = nt_xent,
    temperature_schedule: Callable[[int], float] | None = None,
    view_transform: nn.Module | None = None,
) -> TrainHistory:
    """Train ``model`` (images -> projections z) with a two-view contrastive loss; return the history.

    Args:
        model: maps a float batch in [0, 1] to projections ``[B, P]``.
        images: uint8 ``[N, C, H, W]``.
        config: epochs, batch size, Adam's ``lr`` and ``weight_decay``, ``temperature``, seed, device,
            checkpoint folder (see :class:`mcl.fit.TrainConfig`).
        augment: ``augment(x, generator)`` makes one view of a float batch (e.g.
            :class:`mcl.augment.SimCLRAugment`).
        batch_sampler: batches of indices, e.g. :class:`mcl.sampling.FeatureAwareBatchSampler` (MCL), or
            None for a seeded shuffle.
        loss_fn: ``loss_fn(z1, z2, temperature)`` on the L2-normalised projections (NT-Xent by default).
        temperature_schedule: ``epoch -> temperature`` instead of ``config.temperature``.
        view_transform: a module applied to every view after ``augment``, ``view_transform(views,
            generator)`` (its random draws from ``generator``, seeded per epoch), whose parameters join the
            optimiser (FD's :class:`mcl.viewmaker.Viewmaker`; seed its initial weights, they are not
            the model's).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    device = resolve_device(config.device)
    data = images.to(device)
    model.to(device=device, memory_format=torch.channels_last)
    modules = {"model": model}
    if view_transform is not None:
        modules["view_transform"] = view_transform.to(device=device, memory_format=torch.channels_last)
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    step = SimCLRStep(
        model,
        data,
        config,
        device,
        augment=augment,
        loss_fn=loss_fn,
        temperature_schedule=temperature_schedule,
        view_transform=view_transform,
    )
    return fit(step, modules, optimizer, config, n=len(data), device=device, batch_sampler=batch_sampler)


# ------------------------------------------------------------------------------------------ the recipe
@dataclass(frozen=True)
class SimCLRRecipe:
    """One SimCLR (or MCL stage) training recipe. Every field is a knob a chapter exposes."""

    encoder: str = "small_cnn"  # small_cnn | resnet18
    width: int = 32  # channels of the first block (small_cnn)
    proj_dim: int = 64  # projection head output
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    temperature: float = 0.5
    crop_scale: float = 0.08  # lower bound of the random-resized-crop area
    jitter_strength: float = 1.0  # multiplies SimCLR's (0.4, 0.4, 0.4, 0.1) colour jitter
    augment_width: int = 0  # augment only the first columns, the rest shared by both views (0: all)
    n_stages: int = 3  # MCL stages, stage 0 included
    k: int = 10  # k-means clusters per stage
    combine: str = "product"  # product | latest
    cluster_on: str = "features"  # features (backbone) | projection
    small_groups: str = "drop"  # drop | merge
    # fresh (seed + stage) | previous (stage s starts from stage s-1's weights) | first (from stage 0's)
    stage_init: str = "fresh"
    groups_per_batch: int = 1  # MCL stages: one-group blocks per batch, negatives within a block (1: authors)
    rest_shift: int = 0  # with augment_width: each view shifts the other columns by up to this many pixels

    def __post_init__(self) -> None:
        # Every field is checked here, when the recipe is made: a bad value must not surface only after
        # stage 0 has trained (combine, cluster_on, small_groups are first used at stage 1).
        choices = {
            "encoder": tuple(ENCODERS),
            "stage_init": ("fresh", "previous", "first"),
            "combine": ("product", "latest"),
            "cluster_on": ("features", "projection"),
            "small_groups": ("drop", "merge"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(self, name)!r}; use one of {', '.join(map(repr, allowed))}"
                )
        for name in ("epochs", "batch_size", "n_stages", "k", "width", "proj_dim", "groups_per_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int")
        for name in ("augment_width", "rest_shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r} must be an int >= 0")
        check_positive("lr", self.lr, "; e.g. 1e-3")
        check_temperature(self.temperature)
        if not is_number(self.crop_scale) or not 0 < self.crop_scale <= 1:
            raise ValueError(f"crop_scale={self.crop_scale!r} must be in (0, 1]; SimCLR uses 0.08")
        if not is_number(self.jitter_strength) or self.jitter_strength < 0:
            raise ValueError(
                f"jitter_strength={self.jitter_strength!r} must be a finite number >= 0; SimCLR's is 1.0"
            )
        if self.rest_shift and not self.augment_width:
            raise ValueError(f"rest_shift={self.rest_shift} needs augment_width > 0 (the columns it shifts)")
        if self.groups_per_batch > 1 and self.small_groups != "drop":
            raise ValueError(f"small_groups={self.small_groups!r} needs groups_per_batch=1; use 'drop'")
        if self.n_stages < 2:
            raise ValueError(f"n_stages={self.n_stages} must be >= 2 for MCL (stage 0 and one MCL stage)")
        if self.k < 2:
            raise ValueError(f"k={self.k} must be >= 2 clusters per stage")
        if self.batch_size % self.groups_per_batch:
            raise ValueError(
                f"groups_per_batch={self.groups_per_batch} must divide batch_size={self.batch_size}"
            )

    def with_overrides(self, **overrides) -> SimCLRRecipe:
        """A copy with the non-None overrides applied (how a chapter's parameters cell lands here)."""
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown recipe fields {sorted(unknown)}; valid: {sorted(asdict(self))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def augment(self, image_size: tuple[int, int]) -> SimCLRAugment | AugmentColumns:
        """SimCLR's augmentation for images of ``image_size`` (H, W); with ``augment_width`` > 0 only the
        first ``augment_width`` columns are augmented (:class:`~mcl.augment.AugmentColumns`)."""
        s = self.jitter_strength
        height, width = image_size
        if not 0 <= self.augment_width < width:
            raise ValueError(
                f"augment_width={self.augment_width} must be in [0, {width}) for images {height}x{width} "
                "(e.g. CIFAR-MNIST overlays are 32x32); set augment_width=0 to augment the whole image"
            )
        simclr = SimCLRAugment(
            (height, self.augment_width or width),
            scale=(self.crop_scale, 1.0),
            brightness=0.4 * s,
            contrast=0.4 * s,
            saturation=0.4 * s,
            hue=min(0.1 * s, 0.5),
        )
        return AugmentColumns(simclr, self.augment_width, self.rest_shift) if self.augment_width else simclr

    def config(
        self, *, seed: int, device: str, progress: bool = True, checkpoint_dir: str | None = None
    ) -> TrainConfig:
        """The :class:`~mcl.fit.TrainConfig` of one run of this recipe."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            temperature=self.temperature,
            seed=seed,
            device=str(device),
            progress=progress,
            checkpoint_dir=checkpoint_dir,
        )


def build_model(recipe: SimCLRRecipe, in_channels: int, seed: int) -> ContrastiveNet:
    """A freshly initialised encoder + projection head, seeded."""
    torch.manual_seed(seed)
    kwargs = {"width": recipe.width} if recipe.encoder == "small_cnn" else {}
    return ContrastiveNet(build_encoder(recipe.encoder, in_channels, **kwargs), proj_dim=recipe.proj_dim)


def _check_data(data: object, recipe: SimCLRRecipe) -> None:
    """``data`` a :class:`~mcl.data.base.LabeledImages` and ``recipe`` a :class:`SimCLRRecipe`."""
    if not isinstance(data, LabeledImages):
        raise ValueError(
            f"data must be a mcl.data.base.LabeledImages, got {type(data).__name__}; wrap uint8 images "
            "[N, C, H, W] as LabeledImages(images, {})"
        )
    if not isinstance(recipe, SimCLRRecipe):
        raise ValueError(f"recipe must be a SimCLRRecipe, got {type(recipe).__name__}")


def train_recipe(
    data: LabeledImages,
    recipe: SimCLRRecipe,
    *,
    seed: int = 0,
    device: str = "auto",
    model: ContrastiveNet | None = None,
    batch_sampler: object | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    augment: nn.Module | None = None,
    **train_kwargs,
) -> tuple[ContrastiveNet, TrainHistory]:
    """Train the recipe's SimCLR model on ``data.images`` (extra keywords go to :func:`train_simclr`).

    ``augment`` replaces the recipe's augmentation (:meth:`SimCLRRecipe.augment`) when given. Returns
    ``(model, history)``. With ``checkpoint_dir``, every epoch is checkpointed there and a finished run is
    loaded, not retrained.
    """
    _check_data(data, recipe)
    model = model if model is not None else build_model(recipe, data.images.shape[1], seed)
    config = recipe.config(
        seed=seed,
        device=device,
        progress=progress,
        checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
    )
    history = train_simclr(
        model,
        data.images,
        config,
        augment=augment if augment is not None else recipe.augment(tuple(data.images.shape[2:])),
        batch_sampler=batch_sampler,
        **train_kwargs,
    )
    return model, history


def mcl_simclr(
    data: LabeledImages,
    recipe: SimCLRRecipe,
    *,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    checkpoint_dir: Callable[[int], Path] | None = None,
    stage_lock: Callable[[int], AbstractContextManager] | None = None,
    **train_kwargs,
) -> MultistageResult[ContrastiveNet]:
    """MCL with SimCLR: ``recipe.n_stages`` stages on ``data``.

    Stage 0 is plain SimCLR (seed ``seed``). Each later stage is freshly initialised (seed + stage) or, with
    ``recipe.stage_init="previous"``, starts from the previous stage's trained weights (``"first"``: from
    stage 0's, so that later stages diverge from each other rather than from the one before). Stages >= 1
    draw batches of ``recipe.groups_per_batch`` one-group blocks and keep negatives within a block
    (:func:`mcl.losses.grouped_loss` around ``loss_fn``, NT-Xent unless given).

    Args:
        checkpoint_dir: ``stage -> folder`` that stage checkpoints into (and is loaded from when finished).
        stage_lock: ``stage -> context manager`` held while that stage trains (e.g. a cross-process lock on
            its folder, so another process can use a finished stage meanwhile).
        train_kwargs: more keywords of :func:`train_simclr`.

    Returns:
        The :class:`~mcl.stages.MultistageResult` (models, cluster ids, pseudo-labels, samplers).
    """
    _check_data(data, recipe)
    if recipe.k > len(data):
        raise ValueError(
            f"k={recipe.k} clusters for {len(data)} training images; k-means needs k <= N: lower k"
        )
    in_channels = data.images.shape[1]
    loss_fn = train_kwargs.pop("loss_fn", nt_xent)

    def train(model: ContrastiveNet, sampler, stage: int) -> TrainHistory:
        with stage_lock(stage) if stage_lock else nullcontext():
            return train_recipe(
                data,
                recipe,
                seed=seed + stage,
                device=device,
                model=model,
                batch_sampler=sampler,
                progress=progress,
                checkpoint_dir=None if checkpoint_dir is None else checkpoint_dir(stage),
                loss_fn=loss_fn if sampler is None else grouped_loss(loss_fn, recipe.groups_per_batch),
                **train_kwargs,
            )[1]

    built: list[ContrastiveNet] = []

    def build(stage: int) -> ContrastiveNet:
        model = build_model(recipe, in_channels, seed + stage)
        if recipe.stage_init != "fresh" and built:
            model.load_state_dict(built[-1 if recipe.stage_init == "previous" else 0].state_dict())
        built.append(model)
        return model

    return run_multistage(
        n_stages=recipe.n_stages,
        build=build,
        train=train,
        embed=lambda model: features(model, data, device=device, part=recipe.cluster_on),
        batch_size=recipe.batch_size,
        k=recipe.k,
        combine=recipe.combine,
        small_groups=recipe.small_groups,
        groups_per_batch=recipe.groups_per_batch,
        seed=seed,
        progress=progress,
    )
