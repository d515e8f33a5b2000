"""Trifeature generator: balance, determinism, geometry against closed forms and torchvision,
recoverability."""

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from torchvision.transforms.functional import InterpolationMode, rotate

from mcl.data.trifeature import (
    _CIRCLE_RADIUS,
    _POLYGONS,
    BACKGROUND,
    COLOR_NAMES,
    COLORS,
    POSITION_JITTER,
    SHAPE_RADIUS,
    SHAPES,
    TEXTURES,
    load_trifeature,
    make_trifeature,
    render_trifeature,
    shape_mask,
    texture_value,
)

ATTRS = ("shape", "texture", "color")
WHITE = COLOR_NAMES.index("white")


@pytest.fixture(scope="module")
def train():
    return load_trifeature("train", n_per_combination=2)


@pytest.fixture(scope="module")
def test_split():
    return load_trifeature("test", n_per_combination=1)


def render_one(shape, angle=0.0, center=(0.5, 0.5), texture="solid", color=WHITE, size=64, supersample=4):
    return render_trifeature(
        torch.tensor([SHAPES.index(shape)]),
        torch.tensor([TEXTURES.index(texture)]),
        torch.tensor([color]),
        torch.tensor([float(angle)]),
        torch.tensor([center]),
        torch.zeros(1, 2),
        size=size,
        supersample=supersample,
        generator=torch.Generator().manual_seed(0),
    )


def foreground(images: torch.Tensor) -> torch.Tensor:
    """bool [N, H, W]: pixels that differ clearly from the grey background."""
    bg = torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.float() - bg).abs().amax(1) > 24


def test_types_shapes_and_label_ranges(train):
    assert train.images.dtype == torch.uint8 and train.images.shape == (2000, 3, 32, 32)
    assert set(train.labels) == set(ATTRS)
    for name, values in (("shape", SHAPES), ("texture", TEXTURES), ("color", COLOR_NAMES)):
        y = train.labels[name]
        assert y.dtype == torch.int64 and int(y.min()) == 0 and int(y.max()) == len(values) - 1
        assert train.label_names[name] == list(values)
    assert len(SHAPES) == len(TEXTURES) == len(COLORS) == 10


def test_every_combination_exactly_n_times(train, test_split):
    for data, n in ((train, 2), (test_split, 1)):
        code = data.labels["shape"] * 100 + data.labels["texture"] * 10 + data.labels["color"]
        assert torch.equal(torch.bincount(code, minlength=1000), torch.full((1000,), n))


@pytest.mark.slow
def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b, c = (make_trifeature(1, size=16, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.images, b.images) and all(torch.equal(a.labels[k], b.labels[k]) for k in ATTRS)
    assert not torch.equal(a.images, c.images)


def test_train_and_test_renders_are_disjoint(train, test_split):
    def digests(images):
        return {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in images}

    assert not digests(train.images) & digests(test_split.images)


@pytest.mark.parametrize("shape", SHAPES)
def test_area_matches_the_closed_form(shape):
    """Solid white shape: per-pixel coverage summed over the image = the polygon's (shoelace) area."""
    img = render_one(shape, angle=17.0, size=64, supersample=4).float()
    coverage = (img[0, 0] - BACKGROUND[0]) / (COLORS["white"][0] - BACKGROUND[0])
    if shape == "circle":
        unit_area = math.pi * _CIRCLE_RADIUS**2
    else:  # the pieces of every shape are disjoint
        unit_area = sum(
            0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(p, p[1:] + p[:1], strict=True)))
            for p in _POLYGONS[shape]
        )
    expected = unit_area * SHAPE_RADIUS**2
    assert coverage.sum().item() / 64**2 == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("shape", ["tee", "triangle", "fivesquare"])
def test_rotation_is_counter_clockwise_like_torchvision(shape):
    base, turned = render_one(shape, 0.0), render_one(shape, 30.0)

    def iou(a, b):  # of the pixels at least half covered by the (white) shape
        ma, mb = a[:, 0].float() > 189, b[:, 0].float() > 189
        return ((ma & mb).sum() / (ma | mb).sum()).item()

    fill = [float(v) for v in BACKGROUND]
    same = iou(rotate(base, 30.0, InterpolationMode.BILINEAR, fill=fill), turned)
    opposite = iou(rotate(base, -30.0, InterpolationMode.BILINEAR, fill=fill), turned)
    assert same > 0.9 and opposite < same - 0.2


def test_translation_shifts_shape_and_texture_together():
    a = render_one("star", 20.0, center=(0.5, 0.5), texture="stripes", color=COLOR_NAMES.index("red"))
    b = render_one(
        "star", 20.0, center=(0.5 + 4 / 64, 0.5 - 2 / 64), texture="stripes", color=COLOR_NAMES.index("red")
    )
    shifted = torch.roll(a, shifts=(-2, 4), dims=(2, 3))
    assert (shifted.int() - b.int()).abs().max() <= 1


def test_sizes_render_the_same_scene():
    """Rendered at 32, 64 and 224 px from the same parameters, the shape covers the same fraction."""
    fractions = []
    for size in (32, 64, 224):
        img = render_one("pentagon", 10.0, center=(0.45, 0.55), texture="grid", size=size, supersample=2)
        assert img.shape == (1, 3, size, size) and img.dtype == torch.uint8
        fractions.append(foreground(img).float().mean().item())
    assert max(fractions) - min(fractions) < 0.03


def test_rotation_and_position_vary_in_the_data(train):
    mask = foreground(train.images).float()
    n, h, w = mask.shape
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    area = mask.sum((1, 2))
    cx, cy = (mask * xs).sum((1, 2)) / area, (mask * ys).sum((1, 2)) / area
    # centres are uniform in +-POSITION_JITTER: std = jitter * size / sqrt(3) (= 2.0 px at 32 px)
    assert cx.std() > 0.5 * POSITION_JITTER * w / math.sqrt(
        3
    ) and cy.std() > 0.5 * POSITION_JITTER * h / math.sqrt(3)
    # the elongated rhombus shows its rotation in the orientation of its second moments
    rh = train.labels["shape"] == SHAPES.index("rhombus")
    dx, dy = xs - cx[rh].view(-1, 1, 1), ys - cy[rh].view(-1, 1, 1)
    m = mask[rh]
    mxx, myy, mxy = (m * dx * dx).sum((1, 2)), (m * dy * dy).sum((1, 2)), (m * dx * dy).sum((1, 2))
    axis = torch.rad2deg(0.5 * torch.atan2(2 * mxy, mxx - myy))  # major axis, degrees from the x axis
    tilt = (axis.abs() - 90.0).abs()  # distance from vertical: the rhombus stands upright at angle 0
    assert tilt.max() > 35.0 and tilt.min() < 5.0 and tilt.std() > 8.0


def features(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Simple hand-made features: shape from the foreground mask, colour from the bright pixels, texture
    from random-filter energies of the brightness inside the shape (all rotation-invariant)."""
    x = images.float()
    mask = foreground(images).float()
    n, h, w = mask.shape
    area = mask.sum((1, 2)).clamp_min(1)
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    cx, cy = (mask * xs).sum((1, 2)) / area, (mask * ys).sum((1, 2)) / area
    dx, dy = xs - cx.view(n, 1, 1), ys - cy.view(n, 1, 1)
    r = (dx**2 + dy**2).sqrt() / area.sqrt().view(n, 1, 1)
    radial = torch.zeros(n, 12).scatter_add_(1, (r * 8).long().clamp(max=11).view(n, -1), mask.view(n, -1))
    sector = ((torch.atan2(dy, dx) + math.pi) / (2 * math.pi) * 36).long().clamp(max=35)
    profile = torch.zeros(n, 36).scatter_reduce_(1, sector.view(n, -1), (r * mask).view(n, -1), "amax")
    harmonics = torch.fft.rfft(profile, dim=1).abs()[:, :10] / profile.mean(1, keepdim=True).clamp_min(1e-6)
    shape = torch.cat([area.view(n, 1) / (h * w), radial / area.view(n, 1), harmonics], 1)
    gray = x.mean(1)
    top = (gray * mask).view(n, -1).amax(1).clamp_min(1).view(n, 1, 1)
    bright = (mask > 0) & (gray > 0.7 * top)
    color = (x * bright.unsqueeze(1)).sum((2, 3)) / bright.sum((1, 2)).clamp_min(1).view(n, 1)
    t = gray / top * mask
    hist = torch.zeros(n, 8).scatter_add_(1, (t * 7.99).long().view(n, -1), mask.view(n, -1)) / area.view(
        n, 1
    )
    filters = torch.randn(24, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    resp = F.conv2d(t.unsqueeze(1), filters - filters.mean((2, 3), keepdim=True), padding=2)
    inner = (F.avg_pool2d(mask.unsqueeze(1), 5, 1, 2) > 0.99).float()
    count = inner.sum((2, 3)).clamp_min(1)
    texture = torch.cat(
        [hist, (resp.abs() * inner).sum((2, 3)) / count, (resp**2 * inner).sum((2, 3)) / count], 1
    )
    return {"shape": shape, "texture": texture, "color": color}


@pytest.mark.slow
def test_each_attribute_is_recoverable_by_a_linear_classifier(train, test_split):
    """Fisher's linear discriminant on simple features, fitted on train renders, scored on test renders.

    Chance is 1/10 for each attribute; "well above chance" is taken as five times chance (0.5).
    """
    f_train, f_test = features(train.images), features(test_split.images)
    accuracy = {}
    for attr in ATTRS:
        clf = LinearDiscriminantAnalysis().fit(f_train[attr].numpy(), train.labels[attr].numpy())
        accuracy[attr] = clf.score(f_test[attr].numpy(), test_split.labels[attr].numpy())
    print("held-out accuracy (chance 0.1):", accuracy)
    assert all(a > 5 * 0.1 for a in accuracy.values()), accuracy


def test_textures_are_distinct_patterns():
    """On the same coordinates, every pair of textures differs on a good share of points."""
    a, b = torch.meshgrid(torch.linspace(0, 4, 200), torch.linspace(0, 4, 200), indexing="ij")
    noise = torch.rand(a.shape, generator=torch.Generator().manual_seed(0))
    values = [texture_value(name, a, b, noise) for name in TEXTURES]
    for i in range(len(TEXTURES)):
        for j in range(i):
            assert (values[i] - values[j]).abs().mean() > 0.1, (TEXTURES[i], TEXTURES[j])


@pytest.mark.slow
def test_one_color_draws_the_same_renders_in_one_colour():
    coloured = make_trifeature(1, seed=3)
    white = make_trifeature(1, seed=3, one_color="white")
    assert set(white.labels) == {"shape", "texture"} and set(white.label_names) == {"shape", "texture"}
    for name in ("shape", "texture"):
        assert torch.equal(white.labels[name], coloured.labels[name])
    was_white = coloured.labels["color"] == WHITE
    assert torch.equal(white.images[was_white], coloured.images[was_white])  # those were white already
    assert (white.images[:, 0] == white.images[:, 1]).all() and (
        white.images[:, 1] == white.images[:, 2]
    ).all()


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="n_per_combination"):
        make_trifeature(0)
    with pytest.raises(ValueError, match="split"):
        load_trifeature("val")
    with pytest.raises(ValueError, match="one_color='grey'"):
        make_trifeature(1, one_color="grey")
    with pytest.raises(ValueError, match="size"):
        make_trifeature(1, size=4)
    with pytest.raises(ValueError, match="shape="):
        shape_mask("hexagon", torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="texture="):
        texture_value("waves", torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="center"):
        render_trifeature(
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2),
            torch.zeros(3, 2),
            torch.zeros(2, 2),
        )
