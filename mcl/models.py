"""Encoders and the contrastive network: a small CNN for CPU (book) scale, a CIFAR ResNet-18 for paper scale.

Shapes: images ``[B, C, H, W]`` float -> features ``h`` ``[B, feature_dim]`` -> projections
``z = g(h)`` ``[B, proj_dim]`` (SimCLR, Chen et al. 2020: the loss sees ``z``, evaluation uses ``h``).
:func:`embed` runs any encoder over a whole data set without augmentation (what MCL clusters).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from mcl.device import autocast, memory_format, resolve_device


class SmallCNN(nn.Module):
    """``n_blocks`` of conv3x3(stride 2)-BN-ReLU with ``width * 2**i`` channels, then global average pool.

    Each block halves the resolution with its stride-2 convolution (32x32 -> 2x2 after 4 blocks),
    which keeps a training step cheap enough for a 2-core CPU. ``feature_dim = width * 2**(n_blocks-1)``.
    ``[B, in_channels, H, W] -> [B, feature_dim]``; any H, W >= 1 works.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, n_blocks: int = 4) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("width", width), ("n_blocks", n_blocks)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}={value!r} must be a positive int")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(n_blocks):
            out = width * 2**i
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(x)).flatten(1)


class ResNet18Cifar(nn.Module):
    """ResNet-18 for small images (He et al. 2016, CIFAR variant used by SimCLR): a 3x3 stride-1 stem
    without max-pool, four stages of two BasicBlocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2),
    global average pool. ``[B, in_channels, H, W] -> [B, 512]``; about 11.17M parameters.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        if not (isinstance(in_channels, int) and in_channels >= 1):
            raise ValueError(f"in_channels={in_channels!r} must be a positive int")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        channels = 64
        for out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            downsample = None
            if stride != 1 or channels != out:
                downsample = nn.Sequential(
                    nn.Conv2d(channels, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
                )
            stages.append(nn.Sequential(BasicBlock(channels, out, stride, downsample), BasicBlock(out, out)))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


ENCODERS: dict[str, type[nn.Module]] = {"small_cnn": SmallCNN, "resnet18": ResNet18Cifar}


def build_encoder(name: str, in_channels: int = 3, **kwargs: object) -> nn.Module:
    """An encoder by name (``"small_cnn"`` or ``"resnet18"``); ``kwargs`` go to its constructor."""
    if name not in ENCODERS:
        raise ValueError(f"encoder name={name!r} is unknown; use one of {sorted(ENCODERS)}")
    return ENCODERS[name](in_channels=in_channels, **kwargs)


class ProjectionHead(nn.Module):
    """SimCLR's MLP head g: Linear-BN-ReLU-Linear, ``[B, in_dim] -> [B, out_dim]``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}={value!r} must be a positive int")
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class ContrastiveNet(nn.Module):
    """An encoder f and a projection head g: ``forward(x) = g(f(x))`` (raw, not L2-normalised),
    ``features(x) = f(x)``. ``hidden_dim`` defaults to the encoder's ``feature_dim``.
    """

    def __init__(self, encoder: nn.Module, proj_dim: int = 128, hidden_dim: int | None = None) -> None:
        super().__init__()
        feature_dim = getattr(encoder, "feature_dim", None)
        if not isinstance(feature_dim, int):
            raise ValueError(
                f"encoder {type(encoder).__name__} has no int attribute feature_dim; set it to the width "
                "of the encoder's [B, feature_dim] output"
            )
        self.encoder = encoder
        self.feature_dim = feature_dim
        self.proj_dim = proj_dim
        self.head = ProjectionHead(feature_dim, feature_dim if hidden_dim is None else hidden_dim, proj_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``[B, feature_dim]`` (what linear probes and clustering use)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections ``[B, proj_dim]`` (what the contrastive loss uses, after L2 normalisation)."""
        return self.head(self.encoder(x))


def prepare_for_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in channels_last memory format (autocast is left to the loop)."""
    device = resolve_device(device)
    return model.to(device=device, memory_format=memory_format(device))


@torch.no_grad()
def embed(
    encode: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: str | torch.device = "auto",
    normalize: bool = True,
) -> torch.Tensor:
    """Embed uint8 images ``[N, C, H, W]`` without augmentation: float32 ``[N, D]`` on the CPU.

    ``encode`` maps a float batch in [0, 1] to features, e.g. ``model.features`` (backbone) or
    ``model`` (projection). Rows are L2-normalised when ``normalize`` (what MCL clusters).
    The module behind ``encode`` is put in eval mode for the pass and restored afterwards.
    """
    device = resolve_device(device)
    module = encode if isinstance(encode, nn.Module) else getattr(encode, "__self__", None)
    was_training = isinstance(module, nn.Module) and module.training
    if isinstance(module, nn.Module):
        module.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255)
        with autocast(device):
            h = encode(x.contiguous(memory_format=torch.channels_last))
        out.append(h.float().cpu())
    if was_training:
        module.train()
    features = torch.cat(out)
    return F.normalize(features, dim=1) if normalize else features
