"""Implicit feature modification, IFM (Robinson et al., "Can contrastive learning avoid shortcut
solutions?", NeurIPS 2021): one of the baselines MCL is compared with.

The logits are perturbed adversarially in closed form, the positive cosine lowered by ``eps`` and every
negative cosine raised by ``eps`` *before* dividing by the temperature, and training uses
``(L + alpha * L_ifm) / (1 + alpha)`` (the paper's alpha = 1, eps = 0.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mcl.losses._checks import check_pair, check_temperature, is_number
from mcl.losses.infonce import info_nce
from mcl.losses.ntxent import view_cosines


def check_ifm(eps: float, alpha: float) -> tuple[float, float]:
    """Validate IFM's hyper-parameters: ``eps`` and ``alpha`` finite and >= 0; returns them as floats."""
    for name, value in (("eps", eps), ("alpha", alpha)):
        if not is_number(value) or value < 0:
            raise ValueError(
                f"{name}={value!r} must be a finite number >= 0; Robinson et al. use eps=0.1, alpha=1.0"
            )
    return float(eps), float(alpha)


def ifm_nt_xent(
    z1: Tensor, z2: Tensor, temperature: float = 0.5, *, eps: float = 0.1, alpha: float = 1.0
) -> Tensor:
    """NT-Xent with implicit feature modification; a 0-dim tensor.

    Args:
        z1, z2: ``[N, D]`` projections of two views (L2-normalised here, as :func:`mcl.losses.nt_xent`).
        temperature: t > 0. eps, alpha: IFM's perturbation and weight, both >= 0.

    With cosines ``s`` between the 2N views, view i, its positive p(i) and negatives k (the other 2N - 2
    views)::

        L_ifm(i) = -log( exp((s_ip - eps)/t) / (exp((s_ip - eps)/t) + sum_k exp((s_ik + eps)/t)) )

    and the objective is ``(L + alpha * L_ifm) / (1 + alpha)``, L the plain NT-Xent, both means over the
    2N views. ``eps = 0`` gives the plain loss.
    """
    temperature = check_temperature(temperature)
    eps, alpha = check_ifm(eps, alpha)
    check_pair(z1, z2, ("z1", "z2"))
    cos, targets = view_cosines(z1, z2)
    plain = F.cross_entropy(cos / temperature, targets)
    if eps == 0 or alpha == 0:
        return plain
    positive = F.one_hot(targets, len(targets)).bool()
    # -inf + eps stays -inf, so the self entries stay excluded.
    shifted = torch.where(positive, cos - eps, cos + eps)
    return (plain + alpha * F.cross_entropy(shifted / temperature, targets)) / (1 + alpha)


def ifm_info_nce(
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    temperature: float = 0.2,
    *,
    eps: float = 0.1,
    alpha: float = 1.0,
    negative_mask: Tensor | None = None,
) -> Tensor:
    """MoCo's InfoNCE with implicit feature modification; a 0-dim tensor.

    Args:
        q, k: ``[B, D]`` L2-normalised queries and their positive keys. queue: ``[Q, D]`` negative keys.
        negative_mask: optional bool ``[B, Q]`` or ``[Q]``; False drops that negative (see
            :func:`mcl.losses.info_nce`). temperature, eps, alpha: as :func:`ifm_nt_xent`.

    Logits ``[q.k - eps, q.queue + eps] / t``, cross-entropy with target 0; the objective is
    ``(L + alpha * L_ifm) / (1 + alpha)``.
    """
    eps, alpha = check_ifm(eps, alpha)
    plain = info_nce(q, k, queue, temperature, negative_mask=negative_mask)
    if eps == 0 or alpha == 0:
        return plain
    shifted = info_nce(q, k, queue, temperature, negative_mask=negative_mask, shift=eps)
    return (plain + alpha * shifted) / (1 + alpha)


class IFMLoss:
    """``loss_fn(z1, z2, temperature)`` for SimCLR training (:func:`ifm_nt_xent`); picklable."""

    def __init__(self, eps: float = 0.1, alpha: float = 1.0) -> None:
        self.eps, self.alpha = check_ifm(eps, alpha)

    def __call__(self, z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
        return ifm_nt_xent(z1, z2, temperature, eps=self.eps, alpha=self.alpha)

    def __repr__(self) -> str:
        return f"IFMLoss(eps={self.eps}, alpha={self.alpha})"


class IFMQueueLoss:
    """``loss_fn(q, k, queue, temperature, negative_mask=None)`` for MoCo training (:func:`ifm_info_nce`)."""

    def __init__(self, eps: float = 0.1, alpha: float = 1.0) -> None:
        self.eps, self.alpha = check_ifm(eps, alpha)

    def __call__(
        self, q: Tensor, k: Tensor, queue: Tensor, temperature: float, negative_mask: Tensor | None = None
    ) -> Tensor:
        return ifm_info_nce(
            q, k, queue, temperature, eps=self.eps, alpha=self.alpha, negative_mask=negative_mask
        )

    def __repr__(self) -> str:
        return f"IFMQueueLoss(eps={self.eps}, alpha={self.alpha})"


def ifm_loss(eps: float = 0.1, alpha: float = 1.0) -> IFMLoss:
    """The IFM objective as a ``loss_fn(z1, z2, temperature)``."""
    return IFMLoss(eps, alpha)
