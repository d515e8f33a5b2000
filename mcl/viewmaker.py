"""FD baseline: adversarially learned views from a viewmaker network (Tamkin et al.).

Viewmaker networks (Tamkin, Wu, Goodman, "Viewmaker Networks: Learning Views for Unsupervised
Representation Learning", ICLR 2021) are small image-to-image nets that add a stochastic
perturbation to each view; feature dropout (Tamkin et al., NeurIPS 2023) is what their views do:
they erase one feature at a time. The viewmaker *maximises* the contrastive loss that the encoder
minimises, under a fixed L1 budget:

    t = tanh(net([x, noise]))                      # [B, C, H, W], noise ~ U(0, 1) channels
    delta = budget * t / mean(|t|)                 # per image: ||delta||_1 = budget * C * H * W
    view = clamp(x + delta, 0, 1)

(the viewmaker paper's "projection onto the L1 sphere": the mean absolute perturbation per
element equals the budget, 0.05 in their image experiments). The clamp to the image range can only
shrink the realised change; ``delta`` itself meets the budget exactly.

One optimiser: :class:`Viewmaker` plugs into :func:`mcl.simclr.train_simclr` as
``view_transform``. A gradient-reversal step sits on ``delta`` (identity forward, negated gradient
backward), so a single ``loss.backward()`` gives the viewmaker's parameters the gradient of
``-loss`` (ascent) and the encoder's the gradient of ``loss`` (descent); one Adam step then updates
both, as the two optimisers of the original code would with equal learning rates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _ReverseGrad(torch.autograd.Function):
    """Identity forward; the gradient is negated backward (Ganin & Lempitsky's gradient reversal)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return -grad


def reverse_grad(x: Tensor) -> Tensor:
    """``x`` unchanged; gradients flowing back through it are multiplied by -1."""
    return _ReverseGrad.apply(x)


def project_l1(t: Tensor, budget: float) -> Tensor:
    """Rescale each image of ``t`` [B, ...] so that ``mean(|delta|) == budget`` (L1 sphere).

    An image whose ``t`` is all zero stays zero (there is no direction to scale).
    """
    magnitude = t.abs().flatten(1).mean(dim=1).clamp_min(torch.finfo(t.dtype).tiny)
    return t * (budget / magnitude).view(-1, *([1] * (t.dim() - 1)))


class _Block(nn.Module):
    """Residual block: conv-IN-ReLU-conv-IN on [features, a fresh noise channel], plus the input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width + 1, width, 3, padding=1, padding_mode="reflect"),
            nn.InstanceNorm2d(width, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"),
            nn.InstanceNorm2d(width, affine=True),
        )

    def forward(self, h: Tensor, noise: Tensor) -> Tensor:
        return h + self.body(torch.cat([h, noise], dim=1))


class Viewmaker(nn.Module):
    """A small viewmaker: ``forward(x float [B, C, H, W] in [0, 1]) -> clamp(x + delta, 0, 1)``.

    Architecture (a reduced form of Tamkin et al.'s residual image-to-image net, which works at
    1/4 resolution behind 9x9 convolutions): [x, noise] -> conv3x3 stride 2 (C+1 -> width) +
    InstanceNorm + ReLU at half resolution, ``blocks`` residual blocks each fed a fresh
    uniform-noise channel, nearest upsampling to H x W, then conv3x3 on [features, x]
    (width + C -> C), tanh, L1 projection to ``budget`` (see the module doc). The noise makes the
    perturbation stochastic: two calls on the same image give two views. Working at half
    resolution keeps the net about as cheap as SimCLR's small CNN at ``width=16``; the default
    ``width=32`` costs a few times more (see bench/bench_baselines.py).

    budget: the mean absolute perturbation per element (``||delta||_1 = budget * C * H * W`` per
    image); reverse: put the gradient-reversal step on ``delta`` (True for training with one
    optimiser; False gives the plain gradient, e.g. for a separate viewmaker optimiser); seed: the
    initial weights' seed (None: drawn from torch's global RNG, whatever state the process left it in).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        budget: float = 0.05,
        width: int = 32,
        blocks: int = 2,
        reverse: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels={in_channels!r} must be a positive int (3 for RGB, 1 for gray)")
        if (
            isinstance(budget, bool)
            or not isinstance(budget, (int, float))
            or not math.isfinite(budget)
            or budget <= 0
        ):
            raise ValueError(f"budget={budget!r} must be a finite number > 0; the viewmaker paper uses 0.05")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width={width!r} must be a positive int, e.g. 32")
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
            raise ValueError(f"blocks={blocks!r} must be an int >= 0, e.g. 2")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed={seed!r} must be an int (or None: torch's global RNG draws the weights)")
        self.in_channels, self.budget, self.reverse = in_channels, float(budget), bool(reverse)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):  # the caller's RNG is left alone
            if seed is not None:
                torch.manual_seed(seed)
            self._build(in_channels, width, blocks)

    def _build(self, in_channels: int, width: int, blocks: int) -> None:
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels + 1, width, 3, stride=2, padding=1, padding_mode="reflect"),
            nn.InstanceNorm2d(width, affine=True),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.ModuleList(_Block(width) for _ in range(blocks))
        self.head = nn.Conv2d(width + in_channels, in_channels, 3, padding=1, padding_mode="reflect")

    def _noise(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        return torch.rand(b, 1, h, w, generator=generator, device=x.device, dtype=x.dtype)

    def perturbation(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The perturbation ``delta`` [B, C, H, W] (no gradient reversal), ``mean|delta| = budget``.

        ``generator`` (on x's device) draws the noise channels; None uses torch's global RNG.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x.shape={tuple(x.shape)} must be [B, {self.in_channels}, H, W]")
        if min(x.shape[-2:]) < 2:
            raise ValueError(f"x.shape={tuple(x.shape)}: images must be at least 2 x 2 pixels")
        h = self.stem(torch.cat([x, self._noise(x, generator)], dim=1))
        for block in self.blocks:
            h = block(h, self._noise(h, generator))
        h = F.interpolate(h, size=x.shape[-2:], mode="nearest")
        return project_l1(torch.tanh(self.head(torch.cat([h, x], dim=1))), self.budget)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The view ``clamp(x + delta, 0, 1)``; gradients reaching the viewmaker are reversed."""
        delta = self.perturbation(x, generator)
        if self.reverse:
            delta = reverse_grad(delta)
        return (x + delta).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, budget={self.budget}, reverse={self.reverse}"
