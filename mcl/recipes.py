"""SimCLR / MCL experiments as plain functions: what the unimodal chapters call.

A :class:`SimCLRRecipe` holds every choice the paper leaves open (backbone, epochs, batch size,
temperature, K, number of stages, ...); :mod:`mcl.scales` has one preset per data set and scale.
The functions here only wire the library's parts together: models, augmentations, the training
loop, the multistage driver, embeddings and probes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from mcl.augment import AugmentColumns, SimCLRAugment
from mcl.data.base import LabeledImages
from mcl.evaluate import probe_attributes
from mcl.losses import grouped_loss, nt_xent
from mcl.models import ContrastiveNet, build_encoder
from mcl.stages import MultistageResult, concat_features, run_multistage
from mcl.train import TrainConfig, TrainHistory, embed, train_contrastive


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
        if self.stage_init not in ("fresh", "previous", "first"):
            raise ValueError(f"stage_init={self.stage_init!r}; use 'fresh', 'previous' or 'first'")
        if self.groups_per_batch < 1 or self.batch_size % self.groups_per_batch:
            raise ValueError(
                f"groups_per_batch={self.groups_per_batch} must be >= 1 and divide "
                f"batch_size={self.batch_size}"
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
        if self.rest_shift and not self.augment_width:
            raise ValueError(f"rest_shift={self.rest_shift} needs augment_width > 0 (the columns it shifts)")
        return AugmentColumns(simclr, self.augment_width, self.rest_shift) if self.augment_width else simclr


def build_model(recipe: SimCLRRecipe, in_channels: int, seed: int) -> ContrastiveNet:
    """A freshly initialised encoder + projection head, seeded."""
    torch.manual_seed(seed)
    kwargs = {"width": recipe.width} if recipe.encoder == "small_cnn" else {}
    return ContrastiveNet(build_encoder(recipe.encoder, in_channels, **kwargs), proj_dim=recipe.proj_dim)


def train_config(
    recipe: SimCLRRecipe, *, seed: int, device: str, progress: bool = True, checkpoint_dir: str | None = None
) -> TrainConfig:
    return TrainConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        temperature=recipe.temperature,
        seed=seed,
        device=str(device),
        progress=progress,
        checkpoint_dir=checkpoint_dir,
    )


def train_simclr(
    data: LabeledImages,
    recipe: SimCLRRecipe,
    *,
    seed: int = 0,
    device: str = "auto",
    model: ContrastiveNet | None = None,
    batch_sampler: object | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    **train_kwargs,
) -> tuple[ContrastiveNet, TrainHistory]:
    """Train a SimCLR model on ``data.images`` (extra keywords go to :func:`train_contrastive`).

    With ``checkpoint_dir``, every epoch is checkpointed there and a finished run is loaded, not retrained.
    """
    model = model if model is not None else build_model(recipe, data.images.shape[1], seed)
    config = train_config(
        recipe,
        seed=seed,
        device=device,
        progress=progress,
        checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
    )
    history = train_contrastive(
        model,
        data.images,
        config,
        augment=recipe.augment(tuple(data.images.shape[2:])),
        batch_sampler=batch_sampler,
        **train_kwargs,
    )
    return model, history


def features(
    model: nn.Module,
    data: LabeledImages,
    *,
    device: str = "auto",
    part: str = "features",
    normalize: bool = True,
) -> torch.Tensor:
    """Frozen embeddings ``[N, D]``: the backbone's (``part="features"``) or the projection's."""
    if part not in ("features", "projection"):
        raise ValueError(f"part={part!r}; use 'features' or 'projection'")
    encode = model.features if part == "features" else model
    return embed(encode, data.images, device=device, normalize=normalize)


def train_mcl(
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
    """MCL with SimCLR: ``recipe.n_stages`` stages, each freshly initialised (seed + stage) or, with
    ``recipe.stage_init="previous"``, starting from the previous stage's trained weights (``"first"``: from
    stage 0's, so that later stages diverge from each other rather than from the one before). Stages >= 1
    draw batches of ``recipe.groups_per_batch`` one-group blocks and keep negatives within a block
    (:func:`mcl.losses.grouped_loss` around ``loss_fn``, NT-Xent unless given).

    ``checkpoint_dir(stage)``, when given, is the folder stage ``stage`` checkpoints into (and is loaded
    from when finished); ``stage_lock(stage)``, when given, is held while stage ``stage`` trains (e.g. a
    cross-process lock on that folder, so another process can use a finished stage meanwhile)."""
    in_channels = data.images.shape[1]
    loss_fn = train_kwargs.pop("loss_fn", nt_xent)

    def train(model: ContrastiveNet, sampler, stage: int) -> TrainHistory:
        with stage_lock(stage) if stage_lock else nullcontext():
            return train_simclr(
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


def seed_ensemble(
    data: LabeledImages,
    recipe: SimCLRRecipe,
    n_models: int,
    *,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> list[ContrastiveNet]:
    """``n_models`` independently seeded SimCLR models: MCL's equal-budget, equal-width control."""
    return [
        train_simclr(data, recipe, seed=seed + i, device=device, progress=progress)[0]
        for i in range(n_models)
    ]


def probe_models(
    models: list[nn.Module],
    train: LabeledImages,
    test: LabeledImages,
    *,
    device: str = "auto",
    combine: Callable[[list[torch.Tensor]], torch.Tensor] = concat_features,
) -> dict[str, float]:
    """Linear-probe accuracy per attribute of the concatenated raw backbone features of ``models``
    (concatenated, then L2-normalised once, by default: the authors' MCL representation)."""
    train_x = combine([features(m, train, device=device, normalize=False) for m in models])
    test_x = combine([features(m, test, device=device, normalize=False) for m in models])
    return probe_attributes(train_x, train.labels, test_x, test.labels)
