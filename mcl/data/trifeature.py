"""Trifeature (Hermann & Lampinen, NeurIPS 2020): 10 shapes x 10 textures x 10 colours, generated here.

Each image shows one shape, filled with one texture in one colour, at a random rotation in
[-45, 45) degrees and a random position, on a grey background. The three attributes are
independent by construction, so a representation can be probed for each of them separately
(the feature-suppression experiment of Zhang et al., ECCV 2024, Table 1).

The renderer is vectorised in torch and draws directly at the requested size (no drawing at 224
and downscaling): shape masks are point-in-polygon tests on a supersampled coordinate grid,
textures are functions of the shape's rotated coordinates, and the supersampled image is
average-pooled (``supersample`` x ``supersample`` samples per pixel) for antialiasing.

Geometry, in fractions of the image side: every shape fits in a circle of radius
``SHAPE_RADIUS`` (0.36, so shapes span ~50-72 % of the image), its centre is uniform in
``0.5 +- POSITION_JITTER`` (0.11) on both axes, so it always lies fully inside the image. The
texture period is ``TEXTURE_PERIOD`` (0.19 of the image side, 6 px at 32 px) and rotates with
the shape. A pixel of the shape has the colour times ``0.3 + 0.7 t`` where ``t`` in [0, 1] is the
texture's value there (the colour multiplies the texture).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mcl.data.base import LabeledImages

SHAPES: tuple[str, ...] = (
    "triangle",
    "square",
    "plus",
    "circle",
    "tee",
    "rhombus",
    "pentagon",
    "star",
    "fivesquare",
    "trapezoid",
)
TEXTURES: tuple[str, ...] = (
    "solid",
    "stripes",
    "grid",
    "hexgrid",
    "dots",
    "noise",
    "triangles",
    "zigzags",
    "rain",
    "pluses",
)
# Ten well-separated named colours (RGB, 0..255). No black or grey: the colour multiplies the
# texture, so the texture must stay visible, and the shape must stand out from the grey background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 230, 40),
    "green": (40, 170, 60),
    "cyan": (40, 210, 230),
    "blue": (30, 70, 220),
    "purple": (130, 50, 200),
    "pink": (245, 120, 190),
    "brown": (140, 80, 35),
    "white": (250, 250, 250),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
BACKGROUND: tuple[int, int, int] = (128, 128, 128)

SHAPE_RADIUS = 0.36  # radius of the circle every shape fits in, as a fraction of the image side
POSITION_JITTER = 0.11  # the shape's centre is uniform in 0.5 +- this, on each axis
TEXTURE_PERIOD = 0.19  # period of the textures, as a fraction of the image side
ROTATION_RANGE = (-45.0, 45.0)  # degrees, counter-clockwise as displayed, half-open
TEXTURE_FLOOR = 0.3  # brightness of a texture's dark parts, relative to the colour
TEST_SEED_OFFSET = 1_000_003  # the test split draws from seed + this, disjoint from the train stream

_LABEL_NAMES = {"shape": list(SHAPES), "texture": list(TEXTURES), "color": list(COLOR_NAMES)}


# --- shapes: polygons (or unions of polygons) in local coordinates, v pointing up, within the unit circle
def _regular(n: int, radius: float = 1.0, start_deg: float = 90.0) -> list[tuple[float, float]]:
    return [
        (
            radius * math.cos(math.radians(start_deg + 360.0 * k / n)),
            radius * math.sin(math.radians(start_deg + 360.0 * k / n)),
        )
        for k in range(n)
    ]


def _rect(x0: float, x1: float, y0: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _star(points: int = 5, outer: float = 1.0, inner: float = 0.45) -> list[tuple[float, float]]:
    verts = []
    for k in range(2 * points):
        r = outer if k % 2 == 0 else inner
        a = math.radians(90.0 + 180.0 * k / points)
        verts.append((r * math.cos(a), r * math.sin(a)))
    return verts


_W, _L = 0.3, 0.95  # plus: arm half-width and reach
_POLYGONS: dict[str, list[list[tuple[float, float]]]] = {
    "triangle": [_regular(3)],
    "square": [_rect(-0.7, 0.7, -0.7, 0.7)],
    "plus": [
        [
            (-_W, _L),
            (_W, _L),
            (_W, _W),
            (_L, _W),
            (_L, -_W),
            (_W, -_W),
            (_W, -_L),
            (-_W, -_L),
            (-_W, -_W),
            (-_L, -_W),
            (-_L, _W),
            (-_W, _W),
        ]
    ],
    "tee": [
        [
            (-0.8, 0.6),
            (0.8, 0.6),
            (0.8, 0.25),
            (0.22, 0.25),
            (0.22, -0.95),
            (-0.22, -0.95),
            (-0.22, 0.25),
            (-0.8, 0.25),
        ]
    ],
    "rhombus": [[(0.0, 1.0), (0.55, 0.0), (0.0, -1.0), (-0.55, 0.0)]],
    "pentagon": [_regular(5)],
    "star": [_star()],
    "fivesquare": [
        _rect(cx - 0.23, cx + 0.23, cy - 0.23, cy + 0.23)
        for cx, cy in ((0.0, 0.0), (0.47, 0.47), (-0.47, 0.47), (0.47, -0.47), (-0.47, -0.47))
    ],
    "trapezoid": [[(-0.85, -0.45), (0.85, -0.45), (0.4, 0.55), (-0.4, 0.55)]],
}
_CIRCLE_RADIUS = 0.85


def _inside_polygon(u: torch.Tensor, v: torch.Tensor, verts: list[tuple[float, float]]) -> torch.Tensor:
    """Even-odd (crossing number) point-in-polygon test, elementwise over ``u``, ``v``; bool."""
    inside = torch.zeros_like(u, dtype=torch.bool)
    for (x0, y0), (x1, y1) in zip(verts, verts[1:] + verts[:1], strict=True):
        if y0 == y1:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = ((y0 > v) != (y1 > v)) & (u < (x1 - x0) * (v - y0) / (y1 - y0) + x0)
        inside ^= crosses
    return inside


def shape_mask(name: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Float mask (1 inside) of shape ``name`` at local coordinates ``u``, ``v`` (unit-circle frame)."""
    if name == "circle":
        return (u * u + v * v <= _CIRCLE_RADIUS**2).float()
    if name not in _POLYGONS:
        raise ValueError(f"shape={name!r} is not a Trifeature shape; use one of {SHAPES}")
    inside = torch.zeros_like(u, dtype=torch.bool)
    for verts in _POLYGONS[name]:
        inside |= _inside_polygon(u, v, verts)
    return inside.float()


# --- textures: value t in [0, 1] (1 = full colour) as a function of texture coordinates a, b (periods)
def _frac(x: torch.Tensor) -> torch.Tensor:
    return x - torch.floor(x)


def _hex_edge(a: torch.Tensor, b: torch.Tensor, width: float = 0.14) -> torch.Tensor:
    """1 on the edges of a honeycomb whose hexagons are one period across (flat to flat), else 0."""
    # Hexagonal lattice with basis e1 = (1, 0), e2 = (1/2, sqrt(3)/2): the nearest lattice point is a
    # corner of the containing lattice parallelogram, and its Voronoi cell is a hexagon whose edges
    # are 1/2 away along the directions 0, 60 and 120 degrees.
    s3 = math.sqrt(3.0)
    j = b * 2.0 / s3
    i0, j0 = torch.floor(a - 0.5 * j), torch.floor(j)
    best = torch.full_like(a, float("inf"))
    off_x, off_y = torch.zeros_like(a), torch.zeros_like(a)
    for di in (0.0, 1.0):
        for dj in (0.0, 1.0):
            ci, cj = i0 + di, j0 + dj
            dx, dy = a - (ci + 0.5 * cj), b - cj * s3 / 2.0
            d = dx * dx + dy * dy
            closer = d < best
            best = torch.where(closer, d, best)
            off_x, off_y = torch.where(closer, dx, off_x), torch.where(closer, dy, off_y)
    hex_norm = torch.maximum(off_x.abs(), (0.5 * off_x + 0.5 * s3 * off_y).abs())
    hex_norm = torch.maximum(hex_norm, (0.5 * off_x - 0.5 * s3 * off_y).abs())
    return (hex_norm > 0.5 - width).float()


def texture_value(
    name: str, a: torch.Tensor, b: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Texture ``name`` at texture coordinates ``a``, ``b`` (in periods); float in [0, 1].

    ``noise`` (same shape, uniform in [0, 1]) is needed only for ``"noise"``.
    """
    fa, fb = _frac(a), _frac(b)
    if name == "solid":
        return torch.ones_like(a)
    if name == "stripes":
        return (fa < 0.5).float()
    if name == "grid":
        return 1.0 - ((fa < 0.28) | (fb < 0.28)).float()
    if name == "hexgrid":
        return 1.0 - _hex_edge(a, b)
    if name == "dots":
        return 1.0 - ((fa - 0.5) ** 2 + (fb - 0.5) ** 2 < 0.3**2).float()
    if name == "noise":
        if noise is None:
            raise ValueError("texture 'noise' needs the noise argument (uniform values, same shape as a)")
        return noise
    if name == "triangles":
        # one upward triangle per cell, apex at the top (b grows upwards)
        return 1.0 - ((fb > 0.15) & (fb < 0.85) & ((fa - 0.5).abs() < (0.85 - fb) * 0.55)).float()
    if name == "zigzags":
        tri = (fa - 0.5).abs() * 2.0  # triangle wave in a, 0..1
        return (_frac(b - 0.8 * tri) < 0.5).float()
    if name == "rain":
        # short slanted dashes on a staggered lattice
        row = torch.floor(b)
        fa2 = _frac(a + 0.5 * torch.remainder(row, 2.0))
        dash = ((fa2 - 0.5) - 0.35 * (fb - 0.5)).abs() < 0.12
        return 1.0 - (dash & ((fb - 0.5).abs() < 0.38)).float()
    if name == "pluses":
        ca, cb = (fa - 0.5).abs(), (fb - 0.5).abs()
        return 1.0 - (((ca < 0.12) & (cb < 0.36)) | ((cb < 0.12) & (ca < 0.36))).float()
    raise ValueError(f"texture={name!r} is not a Trifeature texture; use one of {TEXTURES}")


def render_trifeature(
    shape: torch.Tensor,
    texture: torch.Tensor,
    color: torch.Tensor,
    angle: torch.Tensor,
    center: torch.Tensor,
    phase: torch.Tensor,
    *,
    size: int = 32,
    supersample: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Render Trifeature images from explicit parameters; uint8 ``[N, 3, size, size]`` on the inputs' device.

    shape, texture, color: int64 ``[N]`` indices into ``SHAPES``, ``TEXTURES``, ``COLOR_NAMES``.
    angle: float ``[N]`` degrees, counter-clockwise as displayed (the convention of
    ``torchvision.transforms.functional.rotate``). center: float ``[N, 2]`` (x, y) in fractions of
    the image side, y pointing down. phase: float ``[N, 2]`` texture offset in periods.
    generator: draws the per-pixel values of the ``"noise"`` texture (CPU generator).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size={size!r} must be an int >= 8 to draw a shape (32, 64 or 224)")
    if supersample < 1:
        raise ValueError(f"supersample={supersample} must be >= 1 (1 = no antialiasing, 2 or 4 typical)")
    n = shape.shape[0]
    for name, t in (("texture", texture), ("color", color), ("angle", angle)):
        if t.shape != (n,):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({n},) like shape")
    for name, t in (("center", center), ("phase", phase)):
        if t.shape != (n, 2):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({n}, 2)")
    device = shape.device
    big = size * supersample
    chunk = max(1, 3_000_000 // (big * big))
    out = torch.empty(n, 3, size, size, dtype=torch.uint8, device=device)
    palette = torch.tensor(list(COLORS.values()), dtype=torch.float32, device=device)
    background = torch.tensor(BACKGROUND, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    grid = (torch.arange(big, dtype=torch.float32, device=device) + 0.5) / big
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        m = sl.stop - sl.start
        theta = torch.deg2rad(angle[sl].float()).view(m, 1, 1)
        cos, sin = torch.cos(theta), torch.sin(theta)
        dx = grid.view(1, 1, big) - center[sl, 0].float().view(m, 1, 1)
        dy_up = -(grid.view(1, big, 1) - center[sl, 1].float().view(m, 1, 1))  # math frame: y up
        # rotating the shape counter-clockwise by theta = rotating the sample points by -theta
        u = (dx * cos + dy_up * sin) / SHAPE_RADIUS
        v = (-dx * sin + dy_up * cos) / SHAPE_RADIUS
        mask = torch.zeros(m, big, big, device=device)
        tex = torch.zeros(m, big, big, device=device)
        scale = SHAPE_RADIUS / TEXTURE_PERIOD  # local units -> periods
        a = u * scale + phase[sl, 0].float().view(m, 1, 1)
        b = v * scale + phase[sl, 1].float().view(m, 1, 1)
        for k, name in enumerate(SHAPES):
            sel = (shape[sl] == k).nonzero().squeeze(1)
            if len(sel):
                mask[sel] = shape_mask(name, u[sel], v[sel])
        for k, name in enumerate(TEXTURES):
            sel = (texture[sl] == k).nonzero().squeeze(1)
            if not len(sel):
                continue
            noise = None
            if name == "noise":  # one value per output pixel, shared by its supersamples
                noise = torch.rand(len(sel), size, size, generator=generator).to(device)
                noise = noise.repeat_interleave(supersample, 1).repeat_interleave(supersample, 2)
            tex[sel] = texture_value(name, a[sel], b[sel], noise)
        rgb = palette[color[sl]].view(m, 3, 1, 1)
        fg = rgb * (TEXTURE_FLOOR + (1.0 - TEXTURE_FLOOR) * tex.unsqueeze(1))
        img = background + mask.unsqueeze(1) * (fg - background)
        if supersample > 1:
            img = F.avg_pool2d(img, supersample)
        out[sl] = img.round_().clamp_(0, 255).to(torch.uint8)
    return out


def sample_trifeature_params(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random rotation (uniform in ``ROTATION_RANGE``), centre and texture phase for ``n`` images (CPU)."""
    lo, hi = ROTATION_RANGE
    return {
        "angle": lo + (hi - lo) * torch.rand(n, generator=generator),
        "center": 0.5 + POSITION_JITTER * (2.0 * torch.rand(n, 2, generator=generator) - 1.0),
        "phase": torch.rand(n, 2, generator=generator),
    }


def make_trifeature(
    n_per_combination: int = 1,
    *,
    size: int = 32,
    seed: int = 0,
    supersample: int = 2,
    device: str | torch.device = "cpu",
    one_color: str | None = None,
) -> LabeledImages:
    """Every (shape, texture, colour) combination ``n_per_combination`` times, shuffled; deterministic
    per seed.

    Returns :class:`LabeledImages` with uint8 images ``[1000 n, 3, size, size]`` (on the CPU) and
    labels ``"shape"``, ``"texture"``, ``"color"`` (int64, 0..9; names in ``label_names``).
    ``device`` is where the rendering runs. ``one_color`` (a name in ``COLORS``): the same renders
    (shapes, textures, rotations, positions) all drawn in that colour, labels ``"shape"`` and
    ``"texture"`` only: the control in which colour cannot suppress anything.
    """
    if not isinstance(n_per_combination, int) or n_per_combination < 1:
        raise ValueError(f"n_per_combination={n_per_combination!r} must be a positive int")
    if one_color is not None and one_color not in COLORS:
        raise ValueError(f"one_color={one_color!r} is not a Trifeature colour; use one of {COLOR_NAMES}")
    g = torch.Generator().manual_seed(seed)
    k = len(SHAPES) * len(TEXTURES) * len(COLORS)
    combo = torch.arange(k).repeat(n_per_combination)
    combo = combo[torch.randperm(len(combo), generator=g)]
    shape = combo // (len(TEXTURES) * len(COLORS))
    texture = (combo // len(COLORS)) % len(TEXTURES)
    color = combo % len(COLORS)
    params = sample_trifeature_params(len(combo), g)
    dev = torch.device(device)
    drawn = color if one_color is None else torch.full_like(color, COLOR_NAMES.index(one_color))
    images = render_trifeature(
        shape.to(dev),
        texture.to(dev),
        drawn.to(dev),
        params["angle"].to(dev),
        params["center"].to(dev),
        params["phase"].to(dev),
        size=size,
        supersample=supersample,
        generator=g,
    ).cpu()
    labels = {"shape": shape, "texture": texture, "color": color}
    if one_color is not None:
        del labels["color"]
    return LabeledImages(images, labels, {name: list(_LABEL_NAMES[name]) for name in labels})


def load_trifeature(
    split: str = "train",
    *,
    n_per_combination: int | None = None,
    size: int = 32,
    seed: int = 0,
    supersample: int = 2,
    device: str | torch.device = "cpu",
    one_color: str | None = None,
) -> LabeledImages:
    """The train or test split: independent renders from disjoint random streams.

    ``train`` draws from ``seed``, ``test`` from ``seed + TEST_SEED_OFFSET``, so no render is
    shared. ``n_per_combination`` defaults to 10 for train (10,000 images) and 2 for test (2,000).
    ``one_color``: see :func:`make_trifeature`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} must be 'train' or 'test'")
    if n_per_combination is None:
        n_per_combination = 10 if split == "train" else 2
    stream = seed if split == "train" else seed + TEST_SEED_OFFSET
    return make_trifeature(
        n_per_combination, size=size, seed=stream, supersample=supersample, device=device, one_color=one_color
    )
