"""mcl.losses against naive loop implementations written from the formulas (values and gradients)."""

import math

import pytest
import torch

from mcl.losses import check_temperature, clip_loss, grouped_loss, nt_xent

SIZES = [(2, 3), (5, 4), (8, 16)]
TEMPERATURES = [0.07, 0.5, 1.0, 2.0]


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """Chen et al. 2020, eq. (1): l(i, j) = -log exp(sim(i,j)/t) / sum_{k != i} exp(sim(i,k)/t)."""
    views = [v for v in z1] + [v for v in z2]
    n2 = len(views)
    n = n2 // 2

    def sim(a, b):
        return (a * b).sum() / (a.norm() * b.norm())

    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        denom = 0.0
        for k in range(n2):
            if k != i:
                denom = denom + torch.exp(sim(views[i], views[k]) / t)
        total = total - torch.log(torch.exp(sim(views[i], views[pos]) / t) / denom)
    return total / n2


def naive_grouped_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float, groups: list[int]) -> torch.Tensor:
    """NT-Xent in which view i's denominator only sums over views k != i of samples in i's group."""
    n = z1.shape[0]
    views = [v for v in z1] + [v for v in z2]

    def sim(a, b):
        return (a * b).sum() / (a.norm() * b.norm())

    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = sum(
            torch.exp(sim(views[i], views[k]) / t)
            for k in range(2 * n)
            if k != i and groups[k % n] == groups[i % n]
        )
        total = total - torch.log(torch.exp(sim(views[i], views[pos]) / t) / denom)
    return total / (2 * n)


def naive_clip(image: torch.Tensor, text: torch.Tensor, scale) -> torch.Tensor:
    """Radford et al. 2021: mean of image->text and text->image softmax cross-entropy."""
    n = image.shape[0]
    logit = [[scale * (image[i] * text[j]).sum() for j in range(n)] for i in range(n)]
    i2t = 0.0
    t2i = 0.0
    for i in range(n):
        i2t = i2t - torch.log(torch.exp(logit[i][i]) / sum(torch.exp(logit[i][j]) for j in range(n)))
        t2i = t2i - torch.log(torch.exp(logit[i][i]) / sum(torch.exp(logit[j][i]) for j in range(n)))
    return (i2t / n + t2i / n) / 2


def _pair(n: int, d: int, seed: int, normalise: bool = False):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = torch.randn(n, d, generator=g, dtype=torch.float64)
    if normalise:
        a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    return a.requires_grad_(), b.requires_grad_()


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_nt_xent_matches_naive_value_and_gradient(n, d, t):
    z1, z2 = _pair(n, d, seed=n * 100 + d)
    ours = nt_xent(z1, z2, temperature=t)
    ref = naive_nt_xent(z1, z2, t)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (z1, z2))
    g_ref = torch.autograd.grad(ref, (z1, z2))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n,n_groups", [(6, 2), (12, 3), (8, 4), (5, 1)])
def test_grouped_loss_keeps_negatives_within_each_block(n, n_groups):
    z1, z2 = _pair(n, 4, seed=n + n_groups)
    groups = [i // (n // n_groups) for i in range(n)]
    ours = grouped_loss(nt_xent, n_groups)(z1, z2, 0.3)
    ref = naive_grouped_nt_xent(z1, z2, 0.3, groups)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, (z1, z2)), torch.autograd.grad(ref, (z1, z2)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    if n_groups > 1:  # fewer negatives than the whole batch: a different value
        assert not torch.isclose(ours, nt_xent(z1, z2, 0.3))


def test_grouped_loss_validation():
    z1, z2 = _pair(6, 3, seed=0)
    with pytest.raises(ValueError, match="n_groups"):
        grouped_loss(nt_xent, 0)
    with pytest.raises(ValueError, match="groups_per_batch"):
        grouped_loss(nt_xent, 4)(z1, z2, 0.5)
    assert grouped_loss(nt_xent, 1) is nt_xent


def test_nt_xent_is_scale_invariant_and_symmetric():
    z1, z2 = _pair(6, 5, seed=1)
    base = nt_xent(z1, z2)
    torch.testing.assert_close(nt_xent(3.0 * z1, 0.5 * z2), base)
    torch.testing.assert_close(nt_xent(z2, z1), base)


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_clip_loss_matches_naive_value_and_gradient(n, d, t):
    image, text = _pair(n, d, seed=7 * n + d, normalise=True)
    ours = clip_loss(image, text, temperature=t)
    ref = naive_clip(image, text, 1.0 / t)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (image, text))
    g_ref = torch.autograd.grad(ref, (image, text))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_clip_loss_with_learned_logit_scale_is_differentiable():
    image, text = _pair(6, 8, seed=3, normalise=True)
    log_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    ours = clip_loss(image, text, temperature=123.0, logit_scale=log_scale.exp())
    ref = naive_clip(image, text, log_scale.exp())
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (image, text, log_scale))
    g_ref = torch.autograd.grad(ref, (image, text, log_scale))
    assert g_ours[2].abs() > 0
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # logit_scale = 1/t gives the same value as temperature=t
    inv_t = torch.tensor(1 / 0.07, dtype=torch.float64)
    torch.testing.assert_close(
        clip_loss(image, text, logit_scale=inv_t), clip_loss(image, text, temperature=0.07)
    )


@pytest.mark.parametrize("n", [2, 3, 10])
@pytest.mark.parametrize("t", [0.1, 0.5, 3.0])
def test_closed_forms_when_all_embeddings_are_equal(n, t):
    z = torch.ones(n, 4, dtype=torch.float64)
    # every logit equal: NT-Xent picks 1 of 2N-1 candidates, CLIP 1 of N
    torch.testing.assert_close(
        nt_xent(z, z.clone(), temperature=t), torch.tensor(math.log(2 * n - 1), dtype=torch.float64)
    )
    u = z / z.norm(dim=1, keepdim=True)
    torch.testing.assert_close(
        clip_loss(u, u.clone(), temperature=t), torch.tensor(math.log(n), dtype=torch.float64)
    )


def test_float32_and_bfloat16_inputs_run():
    z1, z2 = _pair(8, 16, seed=5)
    ref = nt_xent(z1, z2).item()
    assert nt_xent(z1.float(), z2.float()).item() == pytest.approx(ref, rel=1e-5)
    assert nt_xent(z1.bfloat16(), z2.bfloat16()).float().item() == pytest.approx(ref, rel=5e-2)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "warm", None])
def test_temperature_validation(bad):
    with pytest.raises(ValueError, match="temperature"):
        check_temperature(bad)
    z1, z2 = _pair(4, 3, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z1, z2, temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        clip_loss(z1, z2, temperature=bad)


def test_check_temperature_returns_float():
    assert check_temperature(1) == 1.0 and isinstance(check_temperature(1), float)


def test_shape_validation():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(a, torch.randn(5, 3))
    with pytest.raises(ValueError, match="2-D"):
        nt_xent(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="N >= 2"):
        nt_xent(a[:1], a[:1])
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(a, torch.randn(4, 2))
    with pytest.raises(ValueError, match="logit_scale"):
        clip_loss(a, a, logit_scale=torch.ones(2))
