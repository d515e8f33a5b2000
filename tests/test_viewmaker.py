"""The FD baseline's viewmaker (mcl.viewmaker): exact L1 budget, gradient reversal, training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mcl.losses import nt_xent
from mcl.viewmaker import Viewmaker, project_l1, reverse_grad


def _encoder():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8)
    )


@pytest.mark.parametrize(("channels", "budget", "size"), [(3, 0.05, 16), (1, 0.2, 10), (3, 0.01, 7)])
def test_perturbation_meets_the_l1_budget_exactly_per_image(channels, budget, size):
    torch.manual_seed(0)
    vm = Viewmaker(channels, budget=budget, width=8)
    x = torch.rand(5, channels, size, size)
    delta = vm.perturbation(x, torch.Generator().manual_seed(3))
    l1 = delta.abs().sum(dim=(1, 2, 3))
    torch.testing.assert_close(l1, torch.full((5,), budget * channels * size * size), rtol=1e-5, atol=0)
    view = vm(x, torch.Generator().manual_seed(3))  # same noise as delta
    assert view.shape == x.shape and view.min() >= 0 and view.max() <= 1
    torch.testing.assert_close(view, (x + delta).clamp(0, 1))


def test_views_are_stochastic_and_reproducible_with_a_generator():
    torch.manual_seed(0)
    vm = Viewmaker(3, width=8)
    x = torch.rand(4, 3, 12, 12)
    a = vm(x, torch.Generator().manual_seed(5))
    b = vm(x, torch.Generator().manual_seed(5))
    c = vm(x, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_project_l1_closed_form():
    t = torch.tensor([[[1.0, -3.0]], [[0.0, 0.0]]])  # [2, 1, 2]
    out = project_l1(t, 0.5)
    torch.testing.assert_close(out[0], torch.tensor([[0.25, -0.75]]))  # mean |.| = 0.5, direction kept
    assert out[1].abs().sum() == 0


def test_reverse_grad_negates_only_the_gradient():
    x = torch.randn(4, requires_grad=True)
    w = torch.randn(4)
    y = reverse_grad(x)
    torch.testing.assert_close(y, x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -w)


def _loss(vm, encoder, x, seed):
    v1 = vm(x, torch.Generator().manual_seed(seed))
    v2 = vm(x, torch.Generator().manual_seed(seed + 1))
    return nt_xent(encoder(v1), encoder(v2), 0.5)


@pytest.mark.slow
def test_viewmaker_gradient_is_ascent_and_encoder_gradient_is_descent():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 12, 12)
    encoder = _encoder()
    vm = Viewmaker(3, budget=0.1, width=8)
    plain = Viewmaker(3, budget=0.1, width=8, reverse=False)
    plain.load_state_dict(vm.state_dict())

    loss = _loss(vm, encoder, x, 0)
    g_rev = torch.autograd.grad(loss, list(vm.parameters()) + list(encoder.parameters()))
    loss_plain = _loss(plain, encoder, x, 0)
    g_plain = torch.autograd.grad(-loss_plain, list(plain.parameters()) + list(encoder.parameters()))
    n_vm = len(list(vm.parameters()))
    torch.testing.assert_close(loss, loss_plain)
    for a, b in zip(g_rev[:n_vm], g_plain[:n_vm], strict=True):  # viewmaker: gradient of -loss
        torch.testing.assert_close(a, b)
    for a, b in zip(g_rev[n_vm:], g_plain[n_vm:], strict=True):  # encoder: gradient of +loss
        torch.testing.assert_close(a, -b)
    assert any(g.abs().sum() > 0 for g in g_rev[:n_vm])

    # One SGD step on the viewmaker with its own gradient (encoder fixed, same noise):
    # with reversal the loss goes up, without it goes down.
    def after_step(model):
        model.zero_grad()
        _loss(model, encoder, x, 0).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.05 * p.grad
        with torch.no_grad():
            return _loss(model, encoder, x, 0).item()

    before = loss.item()
    assert after_step(vm) > before
    assert after_step(plain) < before


def test_viewmaker_trains_with_train_simclr_without_nans():
    from mcl.augment import SimCLRAugment
    from mcl.fit import TrainConfig
    from mcl.simclr import train_simclr

    torch.manual_seed(0)
    encoder = _encoder()
    vm = Viewmaker(3, budget=0.05, width=8, blocks=1)
    before = [p.detach().clone() for p in vm.parameters()]
    images = torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8)
    config = TrainConfig(epochs=2, batch_size=16, progress=False, device="cpu")
    history = train_simclr(encoder, images, config, augment=SimCLRAugment(12), view_transform=vm)
    assert len(history.losses) == 2 and all(math.isfinite(v) for v in history.losses)
    assert all(torch.isfinite(p).all() for p in vm.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, vm.parameters(), strict=True))  # it was trained


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"in_channels": 0}, "in_channels"),
        ({"budget": 0.0}, "budget"),
        ({"budget": float("nan")}, "budget"),
        ({"width": 0}, "width"),
        ({"blocks": -1}, "blocks"),
    ],
)
def test_viewmaker_rejects_bad_arguments(kwargs, name):
    args = {"in_channels": 3, **kwargs}
    with pytest.raises(ValueError, match=name):
        Viewmaker(args.pop("in_channels"), **args)
    with pytest.raises(ValueError, match="x.shape"):
        Viewmaker(3)(torch.rand(2, 1, 8, 8))


def test_a_seed_fixes_the_initial_weights_and_leaves_the_global_rng_alone():
    torch.manual_seed(1)
    a = Viewmaker(3, width=8, seed=7)
    after_a = torch.rand(3)
    torch.manual_seed(1)
    torch.rand(100)  # another history before the viewmaker
    b = Viewmaker(3, width=8, seed=7)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    torch.manual_seed(1)
    Viewmaker(3, width=8, seed=8)
    assert torch.equal(torch.rand(3), after_a)  # the caller's RNG stream did not move
    c = Viewmaker(3, width=8, seed=8)
    assert not torch.equal(a.head.weight, c.head.weight)
    with pytest.raises(ValueError, match="seed=1.5"):
        Viewmaker(3, seed=1.5)
