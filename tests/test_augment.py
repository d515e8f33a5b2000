"""Tests for mcl.augment against torchvision's per-image functions, closed forms and invariants."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from mcl.augment import (
    BRIGHTNESS,
    CONTRAST,
    HUE,
    SATURATION,
    CropFlip,
    SimCLRAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    resized_crop_flip,
    rgb_to_grayscale,
)

TV_OPS = {
    BRIGHTNESS: ("brightness", TF.adjust_brightness),
    CONTRAST: ("contrast", TF.adjust_contrast),
    SATURATION: ("saturation", TF.adjust_saturation),
    HUE: ("hue", TF.adjust_hue),
}


def smooth_images(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth images in [0, 1]: low-frequency sinusoids with random phases (|gradient| <= 0.06 / px)."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(b, c, 2, generator=g) * 2 * math.pi
    y = torch.arange(h, dtype=torch.float32).reshape(1, 1, h, 1)
    x = torch.arange(w, dtype=torch.float32).reshape(1, 1, 1, w)
    img = torch.sin(y / 9.0 + phase[..., 0, None, None]) + torch.cos(x / 11.0 + phase[..., 1, None, None])
    return (img + 2.0) / 4.0 * 0.9 + 0.05  # in [0.05, 0.95]


def no_jitter_params(b: int, boxes: torch.Tensor, flip: torch.Tensor | None = None) -> dict:
    """Parameters with only a crop (and flip): jitter and grayscale off."""
    return {
        "boxes": boxes,
        "flip": torch.zeros(b, dtype=torch.bool) if flip is None else flip,
        "jitter": torch.zeros(b, dtype=torch.bool),
        "gray": torch.zeros(b, dtype=torch.bool),
        "brightness": torch.ones(b),
        "contrast": torch.ones(b),
        "saturation": torch.ones(b),
        "hue": torch.zeros(b),
        "order": torch.arange(4).expand(b, 4).clone(),
    }


# ---------------------------------------------------------------- determinism, shapes, dtypes


def test_same_seed_same_output_different_seed_different() -> None:
    aug = SimCLRAugment(24)
    x = torch.rand(16, 3, 32, 32)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)


@pytest.mark.parametrize("size", [32, (32, 64), (16, 24)])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_range_dtype_device(size: int | tuple[int, int], channels: int) -> None:
    aug = SimCLRAugment(size)
    x = (torch.rand(8, channels, 32, 64) * 255).to(torch.uint8)
    out = aug(x, torch.Generator().manual_seed(0))
    h, w = (size, size) if isinstance(size, int) else size
    assert out.shape == (8, channels, h, w)
    assert out.dtype == torch.float32 and out.device == x.device
    assert out.min() >= 0.0 and out.max() <= 1.0
    x64 = torch.rand(4, channels, 20, 30, dtype=torch.float64) * 1.5 - 0.25  # also out of range input
    out64 = aug(x64, torch.Generator().manual_seed(0))
    assert out64.dtype == torch.float64 and out64.min() >= 0.0 and out64.max() <= 1.0


def test_uint8_equals_float_input() -> None:
    aug = SimCLRAugment(16)
    x = (torch.rand(6, 3, 20, 20) * 255).to(torch.uint8)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x.float() / 255, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_global_rng_used_without_generator() -> None:
    aug = SimCLRAugment(16)
    x = torch.rand(4, 3, 20, 20)
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    assert torch.equal(a, aug(x))


# ---------------------------------------------------------------- parameter distributions


def _binomial_ok(hits: torch.Tensor, p: float) -> None:
    n = hits.numel()
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(hits.float().mean().item() - p) < 4.5 * sd, (hits.float().mean().item(), p)


def test_probabilities_match_binomial() -> None:
    n = 40_000
    params = SimCLRAugment(32).sample_params(n, torch.Generator().manual_seed(0), image_size=(32, 32))
    _binomial_ok(params["flip"], 0.5)
    _binomial_ok(params["jitter"], 0.8)
    _binomial_ok(params["gray"], 0.2)
    other = SimCLRAugment(32, flip_p=0.1, jitter_p=0.3, gray_p=0.6)
    params = other.sample_params(n, torch.Generator().manual_seed(1), image_size=(32, 32))
    _binomial_ok(params["flip"], 0.1)
    _binomial_ok(params["jitter"], 0.3)
    _binomial_ok(params["gray"], 0.6)


def test_jitter_factors_and_order() -> None:
    n = 40_000
    params = SimCLRAugment(32).sample_params(n, torch.Generator().manual_seed(0), image_size=(32, 32))
    for name in ("brightness", "contrast", "saturation"):
        f = params[name]
        assert f.min() >= 0.6 and f.max() <= 1.4
        assert abs(f.mean().item() - 1.0) < 4.5 * 0.8 / math.sqrt(12 * n)  # U(0.6, 1.4): sd 0.8/sqrt(12)
    hue = params["hue"]
    assert hue.abs().max() <= 0.1 and abs(hue.mean().item()) < 4.5 * 0.2 / math.sqrt(12 * n)
    order = params["order"]
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(n, 4))  # a permutation per row
    for op in range(4):
        _binomial_ok(order[:, 0] == op, 0.25)
    # brightness = 0.9 gives factors in [max(0, 1 - 0.9), 1.9]
    wide = SimCLRAugment(8, brightness=0.9)
    f = wide.sample_params(1000, torch.Generator().manual_seed(0), image_size=(8, 8))
    assert f["brightness"].min() >= 0.1 and f["brightness"].max() <= 1.9 and f["brightness"].min() < 0.2
    fixed = SimCLRAugment(8, random_order=False).sample_params(10, image_size=(8, 8))["order"]
    assert torch.equal(fixed, torch.arange(4).expand(10, 4))


def _ks_uniform(values: torch.Tensor, lo: float, hi: float) -> float:
    """Kolmogorov-Smirnov distance between the sample and U(lo, hi)."""
    v = ((values.double() - lo) / (hi - lo)).sort().values
    n = v.numel()
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n
    return max((upper - v).max().item(), (v - (upper - 1.0 / n)).max().item())


def test_crop_area_and_log_ratio_uniform_when_every_attempt_fits() -> None:
    # With scale <= 0.5 and ratio in (3/4, 4/3) every first attempt fits a square image, so the area
    # fraction is U(scale) and the log aspect ratio U(log ratio), up to integer rounding on 4096 px.
    n = 20_000
    aug = SimCLRAugment(32, scale=(0.08, 0.5))
    boxes = aug.sample_params(n, torch.Generator().manual_seed(0), image_size=(4096, 4096))["boxes"]
    top, left, h, w = boxes.unbind(1)
    crit = 1.63 / math.sqrt(n)  # KS critical value at the 1% level
    assert _ks_uniform(h * w / 4096**2, 0.08, 0.5) < crit
    assert _ks_uniform(torch.log(w / h), math.log(3 / 4), math.log(4 / 3)) < crit
    # offsets uniform over the valid range: relative position (top / (H - h)) ~ U(0, 1)
    assert _ks_uniform(top / (4096 - h), 0.0, 1.0) < crit + 1 / 1000
    assert _ks_uniform(left / (4096 - w), 0.0, 1.0) < crit + 1 / 1000


@pytest.mark.parametrize("image_size", [(32, 32), (32, 64), (64, 20), (7, 5)])
def test_crop_boxes_inside_image_and_within_ranges(image_size: tuple[int, int]) -> None:
    height, width = image_size
    aug = SimCLRAugment(16)
    boxes = aug.sample_params(2000, torch.Generator().manual_seed(0), image_size=image_size)["boxes"]
    top, left, h, w = boxes.unbind(1)
    assert torch.equal(boxes, boxes.round())  # integer pixel boxes
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    # Accepted attempts respect scale and ratio up to rounding by half a pixel per side; the fallback is
    # the largest centred crop with ratio in range.
    area = h * w / (height * width)
    slack_area = ((h + 0.5) * (w + 0.5) - h * w) / (height * width)
    assert (area <= 1.0).all() and (area + slack_area >= 0.08).all()
    ratio = w / h
    assert ((ratio * (1 + 0.5 / w) * (1 + 0.5 / h) >= 3 / 4) | (w == width)).all()
    assert ((ratio / (1 + 0.5 / w) / (1 + 0.5 / h) <= 4 / 3) | (h == height)).all()


def test_fallback_is_centre_crop_when_no_attempt_fits() -> None:
    # scale (2, 3) never fits: every sample takes the fallback, a centred crop with ratio clamped into range.
    aug = SimCLRAugment(8, scale=(2.0, 3.0))
    boxes = aug.sample_params(10, torch.Generator().manual_seed(0), image_size=(10, 40))["boxes"]
    assert torch.equal(boxes, torch.tensor([[0.0, 13.0, 10.0, 13.0]]).expand(10, 4))  # w = round(10 * 4/3)
    boxes = aug.sample_params(3, torch.Generator().manual_seed(0), image_size=(30, 30))["boxes"]
    assert torch.equal(boxes, torch.tensor([[0.0, 0.0, 30.0, 30.0]]).expand(3, 4))


# ---------------------------------------------------------------- crop, flip, resize


def test_crop_matches_torchvision_resized_crop() -> None:
    x = smooth_images(3, 3, 32, 40)
    boxes = torch.tensor([[3.0, 5.0, 20.0, 17.0], [0.0, 0.0, 32.0, 40.0], [10.0, 21.0, 8.0, 19.0]])
    size = (24, 28)
    out = resized_crop_flip(x, boxes, torch.zeros(3, dtype=torch.bool), size)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(x[i], top, left, h, w, list(size), antialias=False)
        diff = (out[i] - ref).abs()
        # Inside the crop both sample the same points; within half a source pixel of a crop edge that
        # is not an image edge, torchvision clamps to the crop while grid_sample reads the neighbour.
        assert diff[:, 2:-2, 2:-2].max() < 1e-5
        assert diff.max() < 0.5 * 0.06
    full = resized_crop_flip(x, boxes[1:2].expand(3, 4), torch.zeros(3, dtype=torch.bool), size)
    torch.testing.assert_close(full, TF.resize(x, list(size), antialias=False), atol=1e-5, rtol=0)


def test_identity_box_at_input_size_is_identity() -> None:
    x = torch.rand(4, 3, 17, 23)
    boxes = torch.tensor([[0.0, 0.0, 17.0, 23.0]]).expand(4, 4)
    out = resized_crop_flip(x, boxes, torch.zeros(4, dtype=torch.bool), (17, 23))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_flip_equals_torch_flip() -> None:
    x = torch.rand(4, 3, 20, 30)
    boxes = torch.tensor([[2.0, 3, 15, 20], [0.0, 0, 20, 30], [5.0, 9, 9, 11], [1.0, 1, 3, 3]])
    plain = resized_crop_flip(x, boxes, torch.zeros(4, dtype=torch.bool), (12, 16))
    flip = torch.tensor([True, False, True, True])
    flipped = resized_crop_flip(x, boxes, flip, (12, 16))
    expected = torch.where(flip.reshape(-1, 1, 1, 1), plain.flip(-1), plain)
    torch.testing.assert_close(flipped, expected, atol=1e-5, rtol=0)


def test_module_apply_crop_only_matches_torchvision() -> None:
    x = smooth_images(2, 1, 32, 64)
    boxes = torch.tensor([[4.0, 10.0, 24.0, 40.0], [0.0, 30.0, 32.0, 34.0]])
    aug = SimCLRAugment((32, 64))
    out = aug.apply(x, no_jitter_params(2, boxes, torch.tensor([False, True])))
    ref0 = TF.resized_crop(x[0], 4, 10, 24, 40, [32, 64], antialias=False)
    ref1 = TF.horizontal_flip(TF.resized_crop(x[1], 0, 30, 32, 34, [32, 64], antialias=False))
    assert (out[0] - ref0).abs().max() < 0.03 and (out[1] - ref1).abs().max() < 0.03


# ---------------------------------------------------------------- colour


def test_grayscale_uses_itu_r_601_and_equal_channels() -> None:
    x = torch.rand(5, 3, 9, 11)
    gray = rgb_to_grayscale(x)
    naive = torch.empty(5, 1, 9, 11)
    for b in range(5):
        for i in range(9):
            for j in range(11):
                r, g, bl = x[b, :, i, j].tolist()
                naive[b, 0, i, j] = 0.299 * r + 0.587 * g + 0.114 * bl
    torch.testing.assert_close(gray, naive)
    # through the module: identity crop, grayscale on samples 0 and 2 only
    params = no_jitter_params(5, torch.tensor([[0.0, 0.0, 9.0, 11.0]]).expand(5, 4))
    params["gray"] = torch.tensor([True, False, True, False, False])
    out = SimCLRAugment((9, 11)).apply(x, params)
    for b in (0, 2):
        torch.testing.assert_close(out[b], naive[b].expand(3, -1, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], x[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(x), atol=2e-4, rtol=0)  # torchvision: 0.2989


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (adjust_brightness, TF.adjust_brightness),
        (adjust_contrast, TF.adjust_contrast),
        (adjust_saturation, TF.adjust_saturation),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_contrast_saturation_match_torchvision(ours, theirs, channels: int) -> None:
    x = torch.rand(6, channels, 10, 12)
    factors = torch.tensor([0.0, 0.6, 1.0, 1.4, 2.5, 0.93])
    out = ours(x.clone(), factors)
    for i, f in enumerate(factors.tolist()):
        # torchvision's luma weight for red is 0.2989, ours 0.299: differences up to 1e-4 * |1 - f|
        torch.testing.assert_close(out[i], theirs(x[i], f), atol=3e-4, rtol=0)


def test_hue_matches_torchvision_and_closed_cases() -> None:
    x = torch.rand(8, 3, 10, 12)
    x[0] = 0.4  # gray: hue undefined, must stay unchanged
    x[1, 1] = x[1, 0]  # ties between channels
    x[2, :, :, :6] = 0.0  # black pixels
    shifts = torch.tensor([0.3, -0.1, 0.25, 0.5, -0.5, 0.05, -0.37, 0.0])
    out = adjust_hue(x, shifts)
    for i, s in enumerate(shifts.tolist()):
        torch.testing.assert_close(out[i], TF.adjust_hue(x[i], s), atol=1e-5, rtol=0)
    torch.testing.assert_close(adjust_hue(x, 0.0), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(adjust_hue(adjust_hue(x, 0.5), 0.5), x, atol=1e-5, rtol=0)
    # a hue shift of 1/3 turn permutes pure primaries: red -> green -> blue
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    torch.testing.assert_close(adjust_hue(red, 1 / 3), red.roll(1, dims=1), atol=1e-5, rtol=0)
    gray1 = torch.rand(2, 1, 4, 4)
    assert torch.equal(adjust_hue(gray1, 0.3), gray1) and torch.equal(adjust_saturation(gray1, 0.2), gray1)


def test_full_pipeline_matches_per_sample_torchvision_reference() -> None:
    """Sampled parameters applied by the module equal torchvision's functions applied image by image in
    the drawn order (crop box, flip, jitter in random order, grayscale)."""
    b = 24
    x = smooth_images(b, 3, 32, 32, seed=4)
    aug = SimCLRAugment(28)
    params = aug.sample_params(b, torch.Generator().manual_seed(7), image_size=(32, 32))
    assert params["jitter"].any() and params["gray"].any() and params["flip"].any()
    out = aug.apply(x, params)
    for i in range(b):
        top, left, h, w = params["boxes"][i].int().tolist()
        ref = TF.resized_crop(x[i], top, left, h, w, [28, 28], antialias=False)
        if params["flip"][i]:
            ref = TF.horizontal_flip(ref)
        if params["jitter"][i]:
            for op in params["order"][i].tolist():
                name, fn = TV_OPS[op]
                ref = fn(ref, params[name][i].item())
        if params["gray"][i]:
            ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        assert (out[i] - ref).abs().max() < 0.05, i  # crop-edge differences, amplified by contrast <= 1.4


def test_one_channel_jitter_is_brightness_and_contrast_only() -> None:
    x = torch.rand(3, 1, 12, 12)
    params = no_jitter_params(3, torch.tensor([[0.0, 0.0, 12.0, 12.0]]).expand(3, 4))
    params["jitter"][:] = True
    params["saturation"] = torch.tensor([0.2, 1.5, 0.7])
    params["hue"] = torch.tensor([0.1, -0.1, 0.05])
    params["gray"][:] = True
    aug = SimCLRAugment(12)
    torch.testing.assert_close(aug.apply(x, params), x, atol=1e-5, rtol=0)
    params["brightness"] = torch.tensor([0.5, 1.2, 1.0])
    params["contrast"] = torch.tensor([1.0, 1.0, 0.6])
    expected = torch.stack(
        [TF.adjust_brightness(x[0], 0.5), TF.adjust_brightness(x[1], 1.2), TF.adjust_contrast(x[2], 0.6)]
    )
    torch.testing.assert_close(aug.apply(x, params), expected, atol=1e-5, rtol=0)


def test_crop_flip_has_no_colour_change() -> None:
    x = torch.rand(32, 3, 16, 16)
    aug = CropFlip(16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = aug(x, torch.Generator().manual_seed(0))
    flipped = torch.isclose(out, x.flip(-1), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    assert (flipped | same).all() and flipped.any() and same.any()


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"size": 0}, "size"),
        ({"size": (32,)}, "size"),
        ({"size": 8, "scale": (0.5, 0.1)}, "scale"),
        ({"size": 8, "ratio": (0.0, 1.0)}, "ratio"),
        ({"size": 8, "flip_p": 1.5}, "flip_p"),
        ({"size": 8, "jitter_p": -0.1}, "jitter_p"),
        ({"size": 8, "gray_p": 2.0}, "gray_p"),
        ({"size": 8, "brightness": -0.4}, "brightness"),
        ({"size": 8, "hue": 0.6}, "hue"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SimCLRAugment(**kwargs)


def test_invalid_inputs_raise() -> None:
    aug = SimCLRAugment(8)
    with pytest.raises(ValueError, match="x.shape"):
        aug(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="dtype"):
        aug(torch.ones(2, 3, 8, 8, dtype=torch.int64))


def test_augment_columns_shares_the_right_part_and_augments_the_left():
    from mcl.augment import AugmentColumns
    from mcl.simclr import SimCLRRecipe

    x = torch.randint(0, 256, (6, 3, 32, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    augment = SimCLRRecipe(augment_width=32).augment((32, 64))
    assert isinstance(augment, AugmentColumns)
    one, two = augment(x, torch.Generator().manual_seed(1)), augment(x, torch.Generator().manual_seed(2))
    assert one.shape == two.shape == (6, 3, 32, 64)
    assert torch.equal(one[..., 32:], x[..., 32:].float() / 255) and torch.equal(one[..., 32:], two[..., 32:])
    assert not torch.equal(one[..., :32], two[..., :32])
    # the left part is exactly the wrapped augmentation of the left columns, with the same random draws
    reference = augment.augment(x[..., :32], torch.Generator().manual_seed(1))
    assert torch.equal(one[..., :32], reference)
    with pytest.raises(ValueError, match="width 16"):
        AugmentColumns(augment.augment, 16)
    with pytest.raises(ValueError, match="W > width"):
        augment(x[..., :32])
    with pytest.raises(ValueError, match="set augment_width=0"):
        SimCLRRecipe(augment_width=32).augment((32, 32))  # e.g. CIFAR-MNIST's overlay
    assert isinstance(SimCLRRecipe(augment_width=0).augment((32, 64)), SimCLRAugment)


def test_random_translate_equals_a_loop_over_images():
    from mcl.augment import random_translate

    x = torch.rand(6, 2, 5, 7, generator=torch.Generator().manual_seed(0))
    out = random_translate(x, 2, torch.Generator().manual_seed(1))
    dy, dx = torch.randint(-2, 3, (2, 6), generator=torch.Generator().manual_seed(1))
    for b in range(6):
        for i in range(5):
            for j in range(7):
                si, sj = i - int(dy[b]), j - int(dx[b])
                inside = 0 <= si < 5 and 0 <= sj < 7
                expected = x[b, :, si, sj] if inside else torch.zeros(2)
                assert torch.equal(out[b, :, i, j], expected)


def test_augment_columns_shifts_the_rest_per_view_and_only_with_rest_shift():
    from mcl.augment import AugmentColumns

    x = torch.randint(0, 256, (8, 3, 16, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    still = AugmentColumns(SimCLRAugment((16, 16)), 16)
    moved = AugmentColumns(SimCLRAugment((16, 16)), 16, rest_shift=2)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(still(x, g)[..., 16:], x[..., 16:].float() / 255)
    a, b = moved(x, torch.Generator().manual_seed(3)), moved(x, torch.Generator().manual_seed(4))
    assert not torch.equal(a[..., 16:], b[..., 16:])  # the two views' digits differ by their shifts
    with pytest.raises(ValueError, match="rest_shift=-1"):
        AugmentColumns(SimCLRAugment((16, 16)), 16, rest_shift=-1)
