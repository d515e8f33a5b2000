"""Two of the baselines MCL is compared with: IFM's loss and TS's temperature schedule.

* IFM, implicit feature modification (Robinson et al., "Can contrastive learning avoid shortcut
  solutions?", NeurIPS 2021): perturb the logits adversarially in closed form, the positive cosine
  lowered by ``eps`` and every negative cosine raised by ``eps`` *before* dividing by the
  temperature, and train on ``(L + alpha * L_ifm) / (1 + alpha)`` (the paper's a = 1, eps = 0.1).
  :func:`ifm_loss` makes a ``loss_fn`` for :func:`mcl.train.train_contrastive`;
  :func:`ifm_info_nce` is the MoCo form (see :mod:`mcl.moco`).
* TS, temperature schedules (Kukleva et al., "Temperature Schedules for Self-Supervised
  Contrastive Methods on Long-Tail Data", ICLR 2023): a cosine oscillation of the temperature,
  ``tau(t) = tau_min + 0.5 (tau_max - tau_min) (1 + cos(2 pi t / T))``. :class:`TemperatureSchedule`
  plugs in as ``temperature_schedule``.

FD (feature dropout with viewmaker networks) is :mod:`mcl.viewmaker`; MoCo-v2 is :mod:`mcl.moco`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mcl.losses import check_temperature


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_ifm(eps: float, alpha: float) -> tuple[float, float]:
    """Validate IFM's hyper-parameters: ``eps`` finite and >= 0, ``alpha`` finite and >= 0."""
    for name, value in (("eps", eps), ("alpha", alpha)):
        if not _is_number(value) or value < 0:
            raise ValueError(
                f"{name}={value!r} must be a finite number >= 0; Robinson et al. use eps=0.1, alpha=1.0"
            )
    return float(eps), float(alpha)


def _nt_xent_logits(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cosine matrix [2N, 2N] of the 2N views (self entries -inf), targets [2N], positive mask."""
    if z1.dim() != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(
            f"z1 and z2 must be [N, D] with the same shape and N >= 2, got "
            f"{tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    cos = z @ z.T
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])
    positive = F.one_hot(targets, 2 * n).bool()
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    return cos.masked_fill(self_mask, float("-inf")), targets, positive


def ifm_nt_xent(
    z1: Tensor, z2: Tensor, temperature: float = 0.5, *, eps: float = 0.1, alpha: float = 1.0
) -> Tensor:
    """NT-Xent with implicit feature modification (Robinson et al., NeurIPS 2021), a 0-dim tensor.

    ``z1``, ``z2``: [N, D] projections of two views (L2-normalised here, as :func:`mcl.losses.nt_xent`
    does). With cosines ``s`` between the 2N views, view i, its positive p(i) and negatives k (the
    other 2N - 2 views)::

        L_ifm(i) = -log( exp((s_ip - eps)/t) / (exp((s_ip - eps)/t) + sum_k exp((s_ik + eps)/t)) )

    and the objective is ``(L + alpha * L_ifm) / (1 + alpha)``, L the plain NT-Xent, both means over
    the 2N views. ``eps = 0`` gives the plain loss.
    """
    temperature = check_temperature(temperature)
    eps, alpha = check_ifm(eps, alpha)
    cos, targets, positive = _nt_xent_logits(z1, z2)
    plain = F.cross_entropy(cos / temperature, targets)
    if eps == 0 or alpha == 0:
        return plain
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
    """MoCo's InfoNCE with implicit feature modification, a 0-dim tensor.

    ``q``, ``k``: [B, D] L2-normalised queries and their positive keys; ``queue``: [Q, D] L2-normalised
    negative keys; ``negative_mask``: optional bool [B, Q] or [Q], False drops that negative for that
    query (see :func:`mcl.moco.info_nce`). Logits ``[q.k - eps, q.queue + eps] / t``, cross-entropy
    with target 0; the objective is ``(L + alpha * L_ifm) / (1 + alpha)``.
    """
    from mcl.moco import info_nce  # local import: mcl.moco imports this module

    eps, alpha = check_ifm(eps, alpha)
    plain = info_nce(q, k, queue, temperature, negative_mask=negative_mask)
    if eps == 0 or alpha == 0:
        return plain
    shifted = info_nce(q, k, queue, temperature, negative_mask=negative_mask, shift=eps)
    return (plain + alpha * shifted) / (1 + alpha)


class IFMLoss:
    """``loss_fn(z1, z2, temperature)`` for :func:`mcl.train.train_contrastive`: :func:`ifm_nt_xent`."""

    def __init__(self, eps: float = 0.1, alpha: float = 1.0) -> None:
        self.eps, self.alpha = check_ifm(eps, alpha)

    def __call__(self, z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
        return ifm_nt_xent(z1, z2, temperature, eps=self.eps, alpha=self.alpha)

    def __repr__(self) -> str:
        return f"IFMLoss(eps={self.eps}, alpha={self.alpha})"


class IFMQueueLoss:
    """``loss_fn(q, k, queue, temperature, negative_mask=None)`` for :func:`mcl.moco.train_moco`."""

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
    """The IFM objective as a ``loss_fn(z1, z2, temperature)`` (a picklable callable object)."""
    return IFMLoss(eps, alpha)


def cosine_temperature(
    epoch: float, *, tau_min: float = 0.1, tau_max: float = 1.0, period: float = 400
) -> float:
    """Kukleva et al.'s (ICLR 2023) cosine temperature schedule, the temperature at ``epoch``.

    ``tau(t) = tau_min + 0.5 * (tau_max - tau_min) * (1 + cos(2 * pi * t / period))``.

    Phase: it starts at ``tau_max`` (t = 0), reaches the midpoint at period/4, ``tau_min`` at period/2
    and ``tau_max`` again at ``period``. This is the paper's equation (tau- = 0.1, tau+ = 1, T = 400
    epochs in MCL's baseline); the authors' code writes it as ``cos(pi * t / t_max)`` with
    ``t_max = T / 2`` and counts epochs from 1, here ``epoch`` counts from 0 as
    :func:`mcl.train.train_contrastive` does. The schedule is periodic (not annealed): training for
    fewer than ``period / 2`` epochs never reaches ``tau_min``.
    """
    check_schedule(tau_min, tau_max, period)
    if not _is_number(epoch) or epoch < 0:
        raise ValueError(f"epoch={epoch!r} must be a finite number >= 0 (epochs count from 0)")
    return tau_min + 0.5 * (tau_max - tau_min) * (1.0 + math.cos(2.0 * math.pi * epoch / period))


def check_schedule(tau_min: float, tau_max: float, period: float) -> None:
    """ValueError unless 0 < tau_min <= tau_max (both finite) and period > 0."""
    check_temperature(tau_min)
    check_temperature(tau_max)
    if tau_min > tau_max:
        raise ValueError(f"tau_min={tau_min} > tau_max={tau_max}; swap them (e.g. tau_min=0.1, tau_max=1.0)")
    if not _is_number(period) or period <= 0:
        raise ValueError(f"period={period!r} must be a finite number > 0 of epochs; the paper uses 400")


class TemperatureSchedule:
    """Callable ``epoch -> temperature`` for ``train_contrastive(temperature_schedule=...)``.

    ``TemperatureSchedule(tau_min=0.1, tau_max=1.0, period=400)`` is :func:`cosine_temperature`
    with these arguments. At book scale (a handful of epochs) pass a shorter ``period`` so the
    schedule oscillates within the run.
    """

    def __init__(self, *, tau_min: float = 0.1, tau_max: float = 1.0, period: float = 400) -> None:
        check_schedule(tau_min, tau_max, period)
        self.tau_min, self.tau_max, self.period = float(tau_min), float(tau_max), float(period)

    def __call__(self, epoch: int) -> float:
        return cosine_temperature(epoch, tau_min=self.tau_min, tau_max=self.tau_max, period=self.period)

    def __repr__(self) -> str:
        return f"TemperatureSchedule(tau_min={self.tau_min}, tau_max={self.tau_max}, period={self.period})"
