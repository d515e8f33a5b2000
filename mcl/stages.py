"""The multistage driver of MCL and the concatenated representation.

Stage 0 is ordinary contrastive training. For each later stage s: embed the training set with
stage s-1's model, cluster the embeddings with k-means, combine every stage's cluster ids into
pseudo-labels (:func:`mcl.sampling.combine_labels`), and train stage s with the feature-aware
batch sampler, so every batch comes from one pseudo-label group. The driver is model-agnostic:
it takes functions that build, train and embed a model, so SimCLR, MoCo-v2 and CLIP plug in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F

from mcl.cluster import kmeans
from mcl.progress import progress as progress_bar
from mcl.sampling import _MODES, _POLICIES, FeatureAwareBatchSampler, combine_labels

M = TypeVar("M")


def _check_int(name: str, value: object, low: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} must be an int >= {low} ({what})")


@dataclass
class MultistageResult(Generic[M]):
    """Everything MCL produced, one entry per stage.

    models[s]: stage s's model. cluster_ids[s]: int64 ``[N]`` k-means ids of stage s's embeddings
    (the last stage's only when ``cluster_last``). pseudo_labels[s]: the group ids stage s was
    trained with (None for stage 0). histories[s]: what ``train`` returned. samplers[s]: the
    batch sampler of stage s (None for stage 0), with its report of dropped/merged samples.
    """

    models: list[M] = field(default_factory=list)
    cluster_ids: list[torch.Tensor] = field(default_factory=list)
    pseudo_labels: list[torch.Tensor | None] = field(default_factory=list)
    histories: list[Any] = field(default_factory=list)
    samplers: list[FeatureAwareBatchSampler | None] = field(default_factory=list)


def run_multistage(
    *,
    n_stages: int,
    build: Callable[[int], M],
    train: Callable[[M, FeatureAwareBatchSampler | None, int], Any],
    embed: Callable[[M], torch.Tensor],
    batch_size: int,
    k: int = 10,
    combine: str = "product",
    spherical: bool = False,
    small_groups: str = "drop",
    groups_per_batch: int = 1,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    cluster_last: bool = True,
    progress: bool = True,
) -> MultistageResult[M]:
    """Train ``n_stages`` MCL stages (stage 0 included).

    build(stage) -> a new model (fresh initialisation by default; to start every stage from
    given weights, as the CLIP recipe does, let ``build`` load them). train(model, sampler,
    stage) trains in place and returns a history; ``sampler`` is None at stage 0 and a
    :class:`FeatureAwareBatchSampler` over the pseudo-labels afterwards (``batch_size`` is its
    per-rank batch size; ``groups_per_batch`` one-group blocks make a batch, and ``train`` must then
    keep negatives within a block, see :func:`mcl.losses.grouped_loss`). embed(model) -> float ``[N, D]``
    embeddings of the training set, in dataset order, L2-normalised (what is clustered, with ``k`` clusters).
    """
    # Every argument is checked here, before stage 0 trains: a bad one must not surface only at stage 1.
    _check_int("n_stages", n_stages, 1, "stage 0 is ordinary training")
    _check_int("k", k, 2, "clusters per stage")
    _check_int("batch_size", batch_size, 2, "a contrastive batch needs negatives")
    _check_int("groups_per_batch", groups_per_batch, 1, "one-group blocks per batch")
    _check_int("seed", seed, 0, "use a non-negative seed")
    if combine not in _MODES:
        raise ValueError(f"combine={combine!r} is not one of {_MODES}; 'product' is the paper's pseudo-label")
    if small_groups not in _POLICIES:
        raise ValueError(f"small_groups={small_groups!r} is not one of {_POLICIES}")
    if (batch_size * world_size) % groups_per_batch or batch_size * world_size // groups_per_batch < 2:
        raise ValueError(
            f"groups_per_batch={groups_per_batch} must divide the global batch {batch_size * world_size} "
            "into blocks of at least 2 samples; choose a divisor of it"
        )
    if groups_per_batch > 1 and small_groups != "drop":
        raise ValueError(f"small_groups={small_groups!r} needs groups_per_batch=1; use 'drop'")
    result: MultistageResult[M] = MultistageResult()
    for stage in progress_bar(range(n_stages), desc="MCL stages", disable=not progress):
        sampler = None
        labels = None
        if stage > 0:
            labels = combine_labels(result.cluster_ids[:stage], mode=combine)
            sampler = FeatureAwareBatchSampler(
                labels,
                batch_size,
                seed=seed + stage,
                rank=rank,
                world_size=world_size,
                small_groups=small_groups,
                groups_per_batch=groups_per_batch,
            )
            if len(sampler) == 0:
                raise ValueError(
                    f"stage {stage}: the {sampler.n_groups} pseudo-label groups (largest "
                    f"{int(sampler.group_sizes.max())} samples) fill no batch of {groups_per_batch} block(s) "
                    f"of {sampler.block_size}; "
                    "use a smaller batch_size or k, combine='latest', or more training data"
                )
        model = build(stage)
        result.histories.append(train(model, sampler, stage))
        result.models.append(model)
        result.pseudo_labels.append(labels)
        result.samplers.append(sampler)
        if stage < n_stages - 1 or cluster_last:
            features = embed(model)
            result.cluster_ids.append(
                kmeans(features, k, spherical=spherical, seed=seed + stage).labels.cpu()
            )
    return result


def concat_features(features: Sequence[torch.Tensor], *, normalize: str = "concat") -> torch.Tensor:
    """The MCL representation: every stage's features ``[N, D_s]`` side by side, ``[N, sum D_s]``.

    normalize="concat" (the authors'): concatenate the raw features, then L2-normalise once.
    normalize="per_stage": L2-normalise each stage, concatenate, divide by sqrt(#stages) (unit norm).
    normalize="none": raw concatenation.
    """
    if not features:
        raise ValueError("features is empty: pass one [N, D] tensor per stage")
    if normalize == "concat":
        return F.normalize(torch.cat(list(features), dim=1), dim=1)
    if normalize == "per_stage":
        return torch.cat([F.normalize(f, dim=1) for f in features], dim=1) / len(features) ** 0.5
    if normalize == "none":
        return torch.cat(list(features), dim=1)
    raise ValueError(f"normalize={normalize!r}; use 'concat', 'per_stage' or 'none'")
