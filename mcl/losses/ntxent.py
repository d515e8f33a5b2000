"""SimCLR's NT-Xent loss (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mcl.losses._checks import check_pair, check_temperature


def view_cosines(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """The cosines between the 2N views ``[2N, 2N]`` (each view's similarity with itself set to -inf) and
    each view's positive ``[2N]`` (view i's pair is i + N, and i - N for the second half)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    idx = torch.arange(n, device=z.device)
    return (z @ z.T).masked_fill(self_mask, float("-inf")), torch.cat([idx + n, idx])


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent, the mean over the 2N views; a 0-dim tensor.

    Args:
        z1, z2: ``[N, D]``, row i of each is one augmented view of sample i (any float dtype and device;
            N >= 2, finite).
        temperature: t > 0.

    The 2N views are L2-normalised and ``s = z @ z.T / t`` (``[2N, 2N]``); for view i with positive
    p(i)::

        loss(i) = -log( exp(s[i, p(i)]) / sum_{k != i} exp(s[i, k]) )

    so the other 2N - 2 views are the negatives and the self-similarity is excluded.
    """
    temperature = check_temperature(temperature)
    check_pair(z1, z2, ("z1", "z2"))
    cosines, targets = view_cosines(z1, z2)
    return F.cross_entropy(cosines / temperature, targets)
