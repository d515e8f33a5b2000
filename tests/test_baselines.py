"""IFM losses (mcl.losses.ifm) and the TS temperature schedule (mcl.schedules) against naive formulas and
closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from mcl.losses import IFMQueueLoss, ifm_info_nce, ifm_loss, ifm_nt_xent, nt_xent
from mcl.schedules import TemperatureSchedule, cosine_temperature


def naive_ifm_nt_xent(z1, z2, t, eps, alpha):
    """(L + alpha L_ifm) / (1 + alpha) written view by view from Robinson et al.'s formula."""
    z = [v / v.norm() for v in list(z1) + list(z2)]
    n = len(z1)
    plain, shifted = 0.0, 0.0
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        s_pos = torch.dot(z[i], z[p])
        negs = [torch.dot(z[i], z[k]) for k in range(2 * n) if k not in (i, p)]
        pos = torch.exp(s_pos / t)
        plain = plain - torch.log(pos / (pos + sum(torch.exp(s / t) for s in negs)))
        num = torch.exp((s_pos - eps) / t)
        shifted = shifted - torch.log(num / (num + sum(torch.exp((s + eps) / t) for s in negs)))
    plain, shifted = plain / (2 * n), shifted / (2 * n)
    return (plain + alpha * shifted) / (1 + alpha)


def naive_info_nce(q, k, queue, t, eps=0.0, mask=None):
    total = 0.0
    for i in range(len(q)):
        pos = torch.exp((torch.dot(q[i], k[i]) - eps) / t)
        neg = sum(
            torch.exp((torch.dot(q[i], queue[j]) + eps) / t)
            for j in range(len(queue))
            if mask is None or mask[i, j]
        )
        total = total - torch.log(pos / (pos + neg))
    return total / len(q)


def _pair(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    return z1, z2


@pytest.mark.parametrize(("eps", "alpha", "t"), [(0.1, 1.0, 0.5), (0.3, 0.5, 0.2), (0.05, 2.0, 1.0)])
def test_ifm_nt_xent_matches_naive_values_and_gradients(eps, alpha, t):
    z1, z2 = _pair()
    got = ifm_nt_xent(z1, z2, t, eps=eps, alpha=alpha)
    g1, g2 = torch.autograd.grad(got, (z1, z2))
    want = naive_ifm_nt_xent(z1, z2, t, eps, alpha)
    w1, w2 = torch.autograd.grad(want, (z1, z2))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g1, w1)
    torch.testing.assert_close(g2, w2)


def test_ifm_with_eps_zero_or_alpha_zero_is_plain_nt_xent():
    z1, z2 = _pair(n=8, d=4, seed=1)
    plain = nt_xent(z1, z2, 0.5)
    p1, p2 = torch.autograd.grad(plain, (z1, z2))
    for kwargs in ({"eps": 0.0, "alpha": 1.0}, {"eps": 0.1, "alpha": 0.0}):
        got = ifm_nt_xent(z1, z2, 0.5, **kwargs)
        g1, g2 = torch.autograd.grad(got, (z1, z2))
        torch.testing.assert_close(got, plain, rtol=1e-12, atol=0)
        torch.testing.assert_close(g1, p1, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(g2, p2, rtol=1e-12, atol=1e-15)


def test_ifm_raises_the_loss_and_grows_with_eps():
    z1, z2 = _pair(n=16, d=8, seed=2)
    values = [ifm_nt_xent(z1, z2, 0.5, eps=e).item() for e in (0.0, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


def test_ifm_loss_factory_has_the_loss_fn_signature():
    z1, z2 = _pair(seed=3)
    fn = ifm_loss(eps=0.2, alpha=0.5)
    torch.testing.assert_close(fn(z1, z2, 0.3), ifm_nt_xent(z1, z2, 0.3, eps=0.2, alpha=0.5))
    assert "eps=0.2" in repr(fn)


@pytest.mark.parametrize(
    "bad",
    [
        {"eps": -0.1},
        {"eps": float("nan")},
        {"alpha": -1.0},
        {"alpha": "1"},
        {"eps": True},
        {"alpha": float("inf")},
    ],
)
def test_ifm_rejects_bad_hyper_parameters(bad):
    z1, z2 = _pair()
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        ifm_nt_xent(z1, z2, 0.5, **bad)
    with pytest.raises(ValueError, match=name):
        ifm_loss(**bad)
    with pytest.raises(ValueError, match="temperature"):
        ifm_nt_xent(z1, z2, 0.0)


def test_ifm_info_nce_matches_naive_with_and_without_mask():
    g = torch.Generator().manual_seed(4)
    q = torch.nn.functional.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    k = torch.nn.functional.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(7, 4, generator=g, dtype=torch.float64), dim=1)
    mask = torch.rand(5, 7, generator=g) > 0.3
    q.requires_grad_(True)
    for m in (None, mask):
        got = ifm_info_nce(q, k, queue, 0.2, eps=0.1, alpha=1.0, negative_mask=m)
        want = (naive_info_nce(q, k, queue, 0.2, mask=m) + naive_info_nce(q, k, queue, 0.2, 0.1, m)) / 2
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(torch.autograd.grad(got, q)[0], torch.autograd.grad(want, q)[0])
    fn = IFMQueueLoss(eps=0.1)
    torch.testing.assert_close(
        fn(q, k, queue, 0.2, negative_mask=mask), ifm_info_nce(q, k, queue, 0.2, negative_mask=mask)
    )


def test_cosine_temperature_at_known_epochs():
    lo, hi, period = 0.1, 1.0, 400
    assert cosine_temperature(0) == pytest.approx(hi)
    assert cosine_temperature(period / 4) == pytest.approx((lo + hi) / 2)
    assert cosine_temperature(period / 2) == pytest.approx(lo)
    assert cosine_temperature(period) == pytest.approx(hi)
    # cos(2 pi / 3) = -1/2: a quarter of the way up from tau_min.
    assert cosine_temperature(period / 3) == pytest.approx(lo + 0.25 * (hi - lo))
    assert cosine_temperature(10, tau_min=0.2, tau_max=0.5, period=40) == pytest.approx(0.35)


def test_cosine_temperature_is_periodic_symmetric_and_bounded():
    sched = TemperatureSchedule(tau_min=0.2, tau_max=0.8, period=30)
    for epoch in range(0, 60):
        assert sched(epoch) == pytest.approx(sched(epoch + 30))
        assert sched(epoch) == pytest.approx(cosine_temperature(epoch, tau_min=0.2, tau_max=0.8, period=30))
        assert 0.2 - 1e-12 <= sched(epoch) <= 0.8 + 1e-12
    for epoch in range(1, 15):
        assert sched(epoch) == pytest.approx(sched(30 - epoch))
        assert sched(epoch) < sched(epoch - 1)  # decreasing over the first half period


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"tau_min": 0.0}, "temperature"),
        ({"tau_min": 1.0, "tau_max": 0.5}, "tau_min"),
        ({"period": 0}, "period"),
        ({"period": float("inf")}, "period"),
        ({"tau_max": -1.0}, "temperature"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TemperatureSchedule(**kwargs)
    with pytest.raises(ValueError, match=name):
        cosine_temperature(0, **kwargs)


def test_cosine_temperature_rejects_bad_epochs():
    for epoch in (-1, float("nan"), "3"):
        with pytest.raises(ValueError, match="epoch"):
            cosine_temperature(epoch)


def test_schedule_and_ifm_plug_into_train_simclr():
    from mcl.augment import SimCLRAugment
    from mcl.fit import TrainConfig
    from mcl.simclr import train_simclr

    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8)
    )
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    sched = TemperatureSchedule(tau_min=0.1, tau_max=0.9, period=4)
    config = TrainConfig(epochs=3, batch_size=16, progress=False, device="cpu")
    history = train_simclr(
        net, images, config, augment=SimCLRAugment(16), loss_fn=ifm_loss(), temperature_schedule=sched
    )
    assert history.temperatures == pytest.approx([0.9, 0.5, 0.1])
    assert all(math.isfinite(v) for v in history.losses)
