"""A loss applied per one-group block of a batch: MCL's feature-aware negatives when a batch holds
several pseudo-label groups (:class:`mcl.sampling.FeatureAwareBatchSampler` with ``groups_per_batch``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def grouped_loss(loss_fn: Callable[..., Tensor], n_groups: int) -> Callable[..., Tensor]:
    """``loss_fn(z1, z2, *args)`` applied to each of ``n_groups`` equal, contiguous blocks of the batch,
    averaged, so negatives stay within an anchor's block.

    Args:
        loss_fn: a two-view loss such as :func:`mcl.losses.nt_xent`.
        n_groups: blocks per batch (1 returns ``loss_fn`` itself).

    Returns:
        ``loss(z1, z2, *args)`` for ``z1``, ``z2`` ``[N, D]`` with N divisible by ``n_groups``; block b is
        rows ``[b N/G, (b+1) N/G)``. With equal blocks, the mean over blocks of NT-Xent's per-block mean is
        the mean over all 2N views.
    """
    if isinstance(n_groups, bool) or not isinstance(n_groups, int) or n_groups < 1:
        raise ValueError(f"n_groups={n_groups!r} must be an int >= 1")
    if n_groups == 1:
        return loss_fn

    def loss(z1: Tensor, z2: Tensor, *args, **kwargs) -> Tensor:
        if z1.shape[0] % n_groups:
            raise ValueError(
                f"the batch has {z1.shape[0]} rows, not divisible into n_groups={n_groups} blocks; use a "
                "batch size divisible by groups_per_batch"
            )
        blocks = zip(z1.chunk(n_groups), z2.chunk(n_groups), strict=True)
        return torch.stack([loss_fn(a, b, *args, **kwargs) for a, b in blocks]).mean()

    loss.__name__ = f"grouped_{getattr(loss_fn, '__name__', 'loss')}"
    return loss
