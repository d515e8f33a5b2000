"""MCL for CLIP (Zhang et al., ECCV 2024, Sec. 5.5): stage 0 is a pretrained (or trained) CLIP; every later
stage starts again from the stage-0 weights, locked as the authors do, and is fine-tuned with the
feature-aware batch sampler over the pseudo-labels of k-means (K = 10) on the image embeddings of the
earlier stages. The final representation concatenates all stages' features."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from torch import Tensor, nn

from mcl.clip.locking import image_groups, lock_clip
from mcl.clip.models import encode_images, tokenizer_for
from mcl.clip.train import ClipTrainConfig, train_clip
from mcl.distributed import embed_sharded, get_rank, get_world_size, unwrap
from mcl.fit import TrainHistory
from mcl.stages import MultistageResult, run_multistage


def mcl_clip(
    base: nn.Module,
    images: Tensor,
    captions: Sequence[str] | Sequence[Sequence[str]],
    config: ClipTrainConfig,
    *,
    n_stages: int = 4,
    k: int = 10,
    unlocked_groups: int | None = 6,
    init: str = "stage0",
    train_stage0: bool = False,
    combine: str = "product",
    small_groups: str = "drop",
    lock_text: bool = True,
    freeze_bn_stats: bool = True,
    embed_batch_size: int = 256,
    tokenizer: Callable | None = None,
    progress: bool = True,
) -> MultistageResult[nn.Module]:
    """MCL for CLIP (stages 0..n_stages-1) through :func:`mcl.stages.run_multistage`.

    base: the stage-0 model (pretrained, or trained by the caller); it is stage 0 as it is unless
    ``train_stage0`` (then it is fine-tuned like the other stages, with random batches, in place).
    Every later stage is a copy of the stage-0 weights (``init="stage0"``, the authors' choice) or of
    the previous stage (``init="previous"``), locked by :func:`lock_clip` (``unlocked_groups`` image
    groups trainable; text tower frozen when ``lock_text``), and fine-tuned by :func:`train_clip` with
    the feature-aware sampler over the pseudo-labels (product of the k-means ids, ``k`` clusters, of the
    L2-normalised image embeddings of the training images of every earlier stage). Under torchrun each
    rank embeds a shard and the embeddings are gathered for clustering. Checkpoints go to
    ``config.checkpoint_dir/stage<s>`` when set, so a rerun resumes (or skips finished stages).
    """
    if init not in ("stage0", "previous"):
        raise ValueError(
            f"init={init!r}; use 'stage0' (every stage starts from stage 0's weights) or 'previous'"
        )
    if not isinstance(k, bool) and isinstance(k, int) and k > len(images):
        raise ValueError(f"k={k} clusters for {len(images)} training images; k-means needs k <= N: lower k")
    if unlocked_groups is not None:  # checked now, not when stage 1 is built after stage 0's work
        n_groups = len(image_groups(unwrap(base).visual))
        if (
            isinstance(unlocked_groups, bool)
            or not isinstance(unlocked_groups, int)
            or not 0 <= unlocked_groups <= n_groups
        ):
            raise ValueError(
                f"unlocked_groups={unlocked_groups!r} must be an int in [0, {n_groups}] (the image tower's "
                "groups), or None to train the whole image tower"
            )
    tokenizer = tokenizer or tokenizer_for(base)
    models: list[nn.Module] = []

    def stage_config(stage: int) -> ClipTrainConfig:
        folder = str(Path(config.checkpoint_dir) / f"stage{stage}") if config.checkpoint_dir else None
        return ClipTrainConfig(
            **{
                **asdict(config),
                "seed": config.seed + stage,
                "checkpoint_dir": folder,
                "progress": config.progress and progress,
            }
        )

    def build(stage: int) -> nn.Module:
        if stage == 0:
            model = base
            if train_stage0:
                lock_clip(model, unlocked_groups, lock_text=lock_text, freeze_bn_stats=freeze_bn_stats)
        else:
            model = copy.deepcopy(unwrap(base if init == "stage0" else models[-1]))
            lock_clip(model, unlocked_groups, lock_text=lock_text, freeze_bn_stats=freeze_bn_stats)
        models.append(model)
        return model

    def train(model: nn.Module, sampler: object | None, stage: int) -> TrainHistory | None:
        if stage == 0 and not train_stage0:
            return None
        return train_clip(
            model, images, captions, stage_config(stage), batch_sampler=sampler, tokenizer=tokenizer
        )

    def embed_stage(model: nn.Module) -> Tensor:
        return embed_sharded(
            lambda x: encode_images(model, x, batch_size=embed_batch_size, device=config.device), images
        )

    return run_multistage(
        n_stages=n_stages,
        build=build,
        train=train,
        embed=embed_stage,
        batch_size=config.batch_size,
        k=k,
        combine=combine,
        small_groups=small_groups,
        seed=config.seed,
        rank=get_rank(),
        world_size=get_world_size(),
        progress=progress,
    )
