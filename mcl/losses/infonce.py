"""MoCo's InfoNCE loss with a queue of negative keys (He et al., "Momentum Contrast for Unsupervised
Visual Representation Learning", CVPR 2020; Chen et al., MoCo-v2, arXiv 2003.04297)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mcl.losses._checks import check_finite, check_matrix, check_temperature


def info_nce(
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    temperature: float = 0.2,
    *,
    negative_mask: Tensor | None = None,
    shift: float = 0.0,
) -> Tensor:
    """InfoNCE, the mean over the B queries; a 0-dim tensor.

    Args:
        q, k: ``[B, D]`` queries and their positive keys, expected L2-normalised (not normalised here).
        queue: ``[Q, D]`` negative keys, L2-normalised; Q may be 0 (no negatives: loss 0).
        temperature: t > 0.
        negative_mask: bool ``[B, Q]`` (per query) or ``[Q]`` (for all); False removes that negative.
        shift: IFM's eps (:func:`mcl.losses.ifm_info_nce`); 0 for MoCo.

    ::

        logits = [q_i . k_i - shift, q_i . queue_j + shift for j] / t        [B, 1 + Q]
        loss = CE(logits, 0)
    """
    temperature = check_temperature(temperature)
    check_matrix(q, "q")
    check_matrix(k, "k")
    if q.shape != k.shape:
        raise ValueError(f"q and k must both be [B, D], got {tuple(q.shape)} and {tuple(k.shape)}")
    if not isinstance(queue, Tensor) or queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        got = tuple(queue.shape) if isinstance(queue, Tensor) else type(queue).__name__
        raise ValueError(f"queue must be a tensor [Q, D] with D={q.shape[1]}, got {got}")
    check_finite(queue, "queue")
    positive = (q * k).sum(dim=1, keepdim=True) - shift
    negatives = q @ queue.to(q.dtype).T + shift
    if negative_mask is not None:
        if negative_mask.dtype != torch.bool or negative_mask.shape[-1] != queue.shape[0]:
            raise ValueError(
                f"negative_mask must be bool [B, Q] or [Q] with Q={queue.shape[0]}, got "
                f"{negative_mask.dtype} {tuple(negative_mask.shape)}"
            )
        negatives = negatives.masked_fill(~negative_mask, float("-inf"))
    logits = torch.cat([positive, negatives], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
