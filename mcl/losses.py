"""Contrastive losses: SimCLR's NT-Xent and CLIP's symmetric loss.

MCL (Zhang et al., ECCV 2024) leaves the loss unchanged: feature-aware negative sampling is done by the
batch sampler (``mcl.sampling``), so these are the standard losses, vectorised and validated;
``grouped_loss`` applies one to each one-group block of a batch that holds several groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float; ValueError unless it is finite and > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"temperature={temperature!r} is not a number; pass a positive float such as 0.5"
        ) from err
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"temperature={temperature!r} must be finite and > 0; pass e.g. 0.5 (SimCLR) or 0.07 (CLIP)"
        )
    return value


def _check_pair(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    for name, t in zip(names, (a, b), strict=True):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape [N, D], got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(
                f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}; flatten the features first"
            )
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; pass one row per sample in both"
        )
    if a.shape[0] < 2:
        raise ValueError(f"{names[0]} has N={a.shape[0]} rows; a contrastive loss needs N >= 2 (negatives)")


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR's NT-Xent loss (Chen et al., ICML 2020), mean over the 2N views.

    ``z1``, ``z2``: [N, D], row i of each is one augmented view of sample i (any float dtype, any device).
    The 2N views are L2-normalised, ``s = z @ z.T / temperature`` ([2N, 2N]); for view i with positive
    p(i) (its pair) the loss is ``-log(exp(s[i, p(i)]) / sum_{k != i} exp(s[i, k]))``, so the other
    2N - 2 views are negatives and the self-similarity is excluded. Returns a 0-dim tensor.
    """
    temperature = check_temperature(temperature)
    _check_pair(z1, z2, ("z1", "z2"))
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])
    return F.cross_entropy(logits, targets)


def grouped_loss(loss_fn: Callable[..., Tensor], n_groups: int) -> Callable[..., Tensor]:
    """``loss_fn(z1, z2, *args)`` applied to each of ``n_groups`` equal, contiguous blocks of the batch,
    averaged: negatives stay within an anchor's block (one pseudo-label group of
    :class:`mcl.sampling.FeatureAwareBatchSampler` with ``groups_per_batch=n_groups``).

    ``z1``, ``z2``: [N, D] with N divisible by ``n_groups``; block b is rows ``[b N/G, (b+1) N/G)``. With
    equal blocks the mean over blocks of NT-Xent's per-block mean is the mean over all 2N views.
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


def clip_loss(
    image: Tensor,
    text: Tensor,
    temperature: float = 0.07,
    *,
    logit_scale: Tensor | None = None,
) -> Tensor:
    """Symmetric CLIP loss (Radford et al., ICML 2021), as open_clip's ``ClipLoss`` on one device.

    ``image``, ``text``: [N, D] embeddings of N matching pairs, expected L2-normalised (CLIP models return
    them so; they are not normalised here). ``logits = scale * image @ text.T`` ([N, N]) with
    ``scale = 1 / temperature``, or ``scale = logit_scale`` when given (open_clip's learned
    ``logit_scale.exp()``, a 0-dim or 1-element tensor; gradients flow into it and ``temperature`` is
    then ignored). The loss is the mean of the image->text and text->image cross-entropies with
    targets ``arange(N)``. Returns a 0-dim tensor.
    """
    _check_pair(image, text, ("image", "text"))
    if logit_scale is None:
        scale: Tensor | float = 1.0 / check_temperature(temperature)
    else:
        if not isinstance(logit_scale, Tensor) or logit_scale.numel() != 1:
            raise ValueError(
                f"logit_scale must be a 1-element tensor (open_clip's logit_scale.exp()), got {logit_scale!r}"
            )
        scale = logit_scale.reshape(())
    logits = scale * (image @ text.T)
    targets = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
