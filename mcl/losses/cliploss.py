"""CLIP's symmetric image-text loss (Radford et al., "Learning Transferable Visual Models From Natural
Language Supervision", ICML 2021), as open_clip's ``ClipLoss`` on one device."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mcl.losses._checks import check_pair, check_temperature


def clip_loss(
    image: Tensor,
    text: Tensor,
    temperature: float = 0.07,
    *,
    logit_scale: Tensor | None = None,
) -> Tensor:
    """The mean of the image->text and text->image cross-entropies; a 0-dim tensor.

    Args:
        image, text: ``[N, D]`` embeddings of N matching pairs, expected L2-normalised (CLIP models return
            them so; they are not normalised here).
        temperature: t > 0; the logit scale is ``1 / t``.
        logit_scale: instead of ``temperature``, open_clip's learned ``logit_scale.exp()`` (a 0-dim or
            1-element tensor; gradients flow into it).

    ``logits = scale * image @ text.T`` (``[N, N]``), targets ``arange(N)``::

        loss = (CE(logits, arange N) + CE(logits.T, arange N)) / 2
    """
    check_pair(image, text, ("image", "text"))
    if logit_scale is None:
        scale: Tensor | float = 1.0 / check_temperature(temperature)
    else:
        if not isinstance(logit_scale, Tensor) or logit_scale.numel() != 1:
            raise ValueError(
                f"logit_scale must be a 1-element tensor (open_clip's logit_scale.exp()), got {logit_scale!r}"
            )
        if not bool(torch.isfinite(logit_scale.detach()).all()) or float(logit_scale.detach()) <= 0:
            raise ValueError(
                f"logit_scale={float(logit_scale.detach())} must be finite and > 0 (exp of open_clip's "
                "logit_scale; open_clip clamps it at 100): the model's logit_scale diverged"
            )
        scale = logit_scale.reshape(())
    logits = scale * (image @ text.T)
    targets = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
