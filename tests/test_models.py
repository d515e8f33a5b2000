"""Tests for mcl.models: shapes, parameter counts against torchvision, memory-format parity, gradients."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from mcl.models import (
    ContrastiveNet,
    ProjectionHead,
    ResNet18Cifar,
    SmallCNN,
    build_encoder,
    prepare_for_device,
)

SIZES = [(32, 32), (32, 64), (64, 64)]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("channels", [1, 3])
def test_small_cnn_net_shapes(channels: int) -> None:
    torch.manual_seed(0)
    net = ContrastiveNet(build_encoder("small_cnn", channels), proj_dim=16).eval()
    assert net.feature_dim == net.encoder.feature_dim == 256 and net.proj_dim == 16
    with torch.no_grad():
        for h, w in SIZES:
            x = torch.rand(2, channels, h, w)
            assert net.features(x).shape == (2, 256)
            assert net(x).shape == (2, 16)


@pytest.mark.slow
def test_resnet18_net_shapes() -> None:
    # eval mode and batch 1: a ResNet-18 forward at 64x64 costs ~2 GFLOP on the shared 2-core CPU
    torch.manual_seed(0)
    nets = {c: ContrastiveNet(build_encoder("resnet18", c), proj_dim=16).eval() for c in (1, 3)}
    assert nets[3].feature_dim == nets[3].encoder.feature_dim == 512 and nets[3].proj_dim == 16
    with torch.no_grad():
        for channels, (h, w) in zip((3, 1, 3), SIZES, strict=True):
            x = torch.rand(1, channels, h, w)
            assert nets[channels].features(x).shape == (1, 512)
            assert nets[channels](x).shape == (1, 16)


def test_small_cnn_width_blocks_and_downsampling() -> None:
    enc = SmallCNN(in_channels=3, width=8, n_blocks=3)
    assert enc.feature_dim == 32
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32]
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in convs)
    # Closed-form parameter count: conv weights + BN (2 per channel).
    expected = (3 * 8 * 9 + 2 * 8) + (8 * 16 * 9 + 2 * 16) + (16 * 32 * 9 + 2 * 32)
    assert n_params(enc) == expected
    # Resolution halves per block: 32 -> 16 -> 8 -> 4 before the pool.
    assert enc.blocks(torch.rand(1, 3, 32, 32)).shape == (1, 32, 4, 4)


def test_resnet18_cifar_parameter_count_matches_torchvision() -> None:
    """torchvision's ImageNet ResNet-18 minus its fc layer, with the 7x7 stem swapped for a 3x3 one."""
    tv = torchvision.models.resnet18(weights=None)
    for channels in (3, 1):
        expected = n_params(tv) - n_params(tv.fc) - tv.conv1.weight.numel() + 3 * 3 * channels * 64
        assert n_params(ResNet18Cifar(channels)) == expected
    net = ResNet18Cifar()
    assert n_params(net) == 11_168_832  # ~11.2M, as usually quoted for CIFAR ResNet-18
    assert net.stem[0].kernel_size == (3, 3) and net.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())


def test_projection_head_structure() -> None:
    head = ProjectionHead(10, 20, 5)
    kinds = [type(m) for m in head.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head(torch.rand(4, 10)).shape == (4, 5)
    net = ContrastiveNet(SmallCNN(width=4, n_blocks=2), proj_dim=8, hidden_dim=12)
    assert net.head.net[0].out_features == 12 and net.head.net[0].in_features == 8
    # forward is the raw projection of the features: head(features(x)), not normalised
    net.eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.head(net.features(x)))
        assert not torch.allclose(net(x).norm(dim=1), torch.ones(3))


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_channels_last_matches_contiguous(name: str) -> None:
    torch.manual_seed(0)
    net = ContrastiveNet(build_encoder(name, 3), proj_dim=8)
    x = torch.rand(3, 3, 16, 16)
    net.train()
    with torch.no_grad():
        net(x)  # non-trivial BN running statistics
    net.eval()
    with torch.no_grad():
        ref = net(x)
        fast = prepare_for_device(net, "cpu")
        conv_weight = next(p for p in fast.parameters() if p.dim() == 4)
        assert conv_weight.is_contiguous(memory_format=torch.channels_last)
        out = fast(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    net = ContrastiveNet(build_encoder(name, 1), proj_dim=8).train()
    z = net(torch.rand(3, 1, 12, 12))
    (z**2).sum().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_build_encoder_kwargs_and_errors() -> None:
    enc = build_encoder("small_cnn", 1, width=4, n_blocks=2)
    assert isinstance(enc, SmallCNN) and enc.feature_dim == 8
    assert isinstance(build_encoder("resnet18"), ResNet18Cifar)
    with pytest.raises(ValueError, match="resnet50.*resnet18.*small_cnn"):
        build_encoder("resnet50")
    with pytest.raises(ValueError, match="width"):
        SmallCNN(width=0)
    with pytest.raises(ValueError, match="n_blocks"):
        SmallCNN(n_blocks=0)
    with pytest.raises(ValueError, match="in_channels"):
        ResNet18Cifar(0)
    with pytest.raises(ValueError, match="feature_dim"):
        ContrastiveNet(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="out_dim"):
        ProjectionHead(4, 4, 0)
