"""Synthetic captioned scenes with the nine visual properties of MMVP (Tong et al., CVPR 2024).

A scene (64 px by default) shows, on a light background:

- a row of 1-3 identical objects (circle, square or triangle; one of six colours; filled or
  hollow; with or without a dot in the middle) beside a black star, on its left or right;
- the whole row seen up close (large) or from far away (small);
- below, a short word in Pillow's built-in bitmap font and an arrow pointing left, right, up or down.

Each property has a clause in a fixed vocabulary (``describe``); a caption joins the nine clauses
(``caption``), and an MMVP-style benchmark statement is the clause of the property a pair differs
in. Properties are drawn independently, so every combination can occur. Some are easy for a small
image encoder (colour is a large area of one hue), others are small details (the arrow's
direction, the dot, the count, the word): the setting where contrastive learning suppresses
features.

Rendering uses PIL at ``supersample`` times the size (default 4) and box-downsamples, so edges are
antialiased; the word is drawn with the bitmap font at its native size and scaled with nearest
neighbour, so no font file is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

PROPERTIES: tuple[str, ...] = (
    "orientation",
    "presence",
    "state",
    "quantity",
    "position",
    "color",
    "shape",
    "text",
    "viewpoint",
)
SCENE_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SCENE_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "blue": (35, 75, 215),
    "green": (35, 160, 55),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 190),
    "orange": (240, 130, 25),
}
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
WORDS: tuple[str, ...] = ("cat", "dog", "sun", "car", "hat", "box", "cup", "pen")
COUNTS: tuple[int, ...] = (1, 2, 3)
MENTION_STREAM = 6007  # caption_scenes draws which clauses to leave out from (seed, this)
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
_SHAPE_PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles"}

# layout, in fractions of the image side
_RADIUS = {True: 0.105, False: 0.065}  # object radius seen up close / from far away
_SPACING = {True: 0.225, False: 0.15}  # centre-to-centre distance of neighbouring items
_ROW_Y = 0.36
_BAND_Y = 0.80
_WORD_HEIGHT = 0.17
_ARROW_X, _ARROW_LENGTH = 0.76, 0.30
_INK = (20, 20, 20)


@dataclass(frozen=True)
class SceneSpec:
    """Everything that determines a scene's pixels.

    The nine properties: ``arrow`` (orientation), ``dot`` (presence), ``filled`` (state), ``count``
    (quantity), ``side`` (position of the objects relative to the star), ``color``, ``shape``,
    ``word`` (text), ``near`` (viewpoint). Then nuisance: ``background`` grey level and the jitter
    of the object row and of the bottom band (fractions of the image side).
    """

    arrow: str = "left"
    dot: bool = False
    filled: bool = True
    count: int = 1
    side: str = "left"
    color: str = "red"
    shape: str = "circle"
    word: str = "cat"
    near: bool = True
    background: int = 235
    row_offset: tuple[float, float] = (0.0, 0.0)
    band_offset: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        checks = (
            ("arrow", self.arrow, DIRECTIONS),
            ("count", self.count, COUNTS),
            ("side", self.side, ("left", "right")),
            ("color", self.color, tuple(SCENE_COLORS)),
            ("shape", self.shape, SCENE_SHAPES),
            ("word", self.word, WORDS),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not allowed; use one of {allowed}")

    def with_property(self, prop: str, value: object) -> SceneSpec:
        """A copy with one of the nine properties (named as in ``PROPERTIES``) set to ``value``."""
        return dataclasses.replace(self, **{_FIELD[prop]: value})

    def value(self, prop: str) -> object:
        return getattr(self, _FIELD[_check_property(prop)])


_FIELD = {
    "orientation": "arrow",
    "presence": "dot",
    "state": "filled",
    "quantity": "count",
    "position": "side",
    "color": "color",
    "shape": "shape",
    "text": "word",
    "viewpoint": "near",
}
# the values a benchmark pair may contrast, per property
PROPERTY_VALUES: dict[str, tuple[object, ...]] = {
    "orientation": DIRECTIONS,
    "presence": (True, False),
    "state": (True, False),
    "quantity": COUNTS,
    "position": ("left", "right"),
    "color": tuple(SCENE_COLORS),
    "shape": SCENE_SHAPES,
    "text": WORDS,
    "viewpoint": (True, False),
}


def _check_property(prop: str) -> str:
    if prop not in PROPERTIES:
        raise ValueError(f"property={prop!r} is not a scene property; use one of {PROPERTIES}")
    return prop


def describe(spec: SceneSpec, prop: str) -> str:
    """The clause that states property ``prop`` of ``spec``, e.g. ``"the arrow points left"``."""
    _check_property(prop)
    many = spec.count > 1
    subject = "the objects" if many else "the object"
    be, have = ("are", "have") if many else ("is", "has")
    if prop == "orientation":
        return f"the arrow points {spec.arrow}"
    if prop == "presence":
        return f"{subject} {have} {'a dot' if spec.dot else 'no dot'}"
    if prop == "state":
        return f"{subject} {be} {'filled' if spec.filled else 'hollow'}"
    if prop == "quantity":
        return f"there {be} {_NUMBER_WORDS[spec.count]} {'objects' if many else 'object'}"
    if prop == "position":
        return f"{subject} {be} {spec.side} of the star"
    if prop == "color":
        return f"{subject} {be} {spec.color}"
    if prop == "shape":
        return f"{subject} {be} {_SHAPE_PLURALS[spec.shape] if many else 'a ' + spec.shape}"
    if prop == "text":
        return f"the text says {spec.word}"
    return f"{subject} {be} seen {'up close' if spec.near else 'from far away'}"


def caption(spec: SceneSpec, properties: Sequence[str] = PROPERTIES) -> str:
    """The clauses of ``properties`` (default all nine), in the order of ``PROPERTIES``, joined by
    ``", "``."""
    chosen = {_check_property(p) for p in properties}
    return ", ".join(describe(spec, p) for p in PROPERTIES if p in chosen)


def caption_scenes(
    specs: Sequence[SceneSpec], *, mention: Mapping[str, float] | None = None, seed: int = 0
) -> list[str]:
    """One caption per scene: all nine clauses, or with ``mention`` each property's clause only with its
    probability (properties not named: 1), drawn independently per scene and property.

    The draws come from the random stream ``(seed, MENTION_STREAM)``, apart from the scenes' own, so
    ``make_captioned_scenes(n, seed=s, mention=m)`` has the images of ``make_captioned_scenes(n, seed=s)``;
    the same (specs, mention, seed) always give the same captions. A caption may be empty when every
    clause is left out.
    """
    if mention is None:
        return [caption(spec) for spec in specs]
    unknown = set(mention) - set(PROPERTIES)
    if unknown:
        raise ValueError(f"mention names {sorted(unknown)}, which are not scene properties; use {PROPERTIES}")
    bad = {p: q for p, q in mention.items() if not 0.0 <= q <= 1.0}
    if bad:
        raise ValueError(f"mention={bad} must be probabilities in [0, 1]")
    probability = np.array([mention.get(p, 1.0) for p in PROPERTIES])
    keep = np.random.default_rng([seed, MENTION_STREAM]).random((len(specs), len(PROPERTIES))) < probability
    return [
        caption(spec, [p for p, k in zip(PROPERTIES, row, strict=True) if k])
        for spec, row in zip(specs, keep, strict=True)
    ]


def sample_scene(rng: np.random.Generator) -> SceneSpec:
    """A scene with every property drawn uniformly and independently, plus nuisance jitter."""
    return SceneSpec(
        arrow=DIRECTIONS[rng.integers(len(DIRECTIONS))],
        dot=bool(rng.integers(2)),
        filled=bool(rng.integers(2)),
        count=COUNTS[rng.integers(len(COUNTS))],
        side=("left", "right")[rng.integers(2)],
        color=tuple(SCENE_COLORS)[rng.integers(len(SCENE_COLORS))],
        shape=SCENE_SHAPES[rng.integers(len(SCENE_SHAPES))],
        word=WORDS[rng.integers(len(WORDS))],
        near=bool(rng.integers(2)),
        background=int(rng.integers(215, 251)),
        row_offset=(float(rng.uniform(-0.035, 0.035)), float(rng.uniform(-0.04, 0.04))),
        band_offset=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.03, 0.03))),
    )


# --- drawing
@lru_cache(maxsize=64)
def _word_mask(word: str, size: int) -> Image.Image:
    """The word in Pillow's bitmap font for an image of side ``size`` ("L" mask).

    Scaled by a whole factor (nearest neighbour) so a line of text is about ``_WORD_HEIGHT`` of
    the image: native size at 64 px, doubled at 128 px, and so on.
    """
    font = ImageFont.load_default_imagefont()
    # one vertical extent for every word (ascenders and descenders included), so all words share a scale
    _, top, _, bottom = font.getbbox("Abdgpqy" + "".join(WORDS))
    left, _, right, _ = font.getbbox(word)
    im = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(im).text((-left, -top), word, fill=255, font=font)
    scale = max(1, round(_WORD_HEIGHT * size / im.height))
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def _polygon_points(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if kind == "triangle":
        return [(cx + r * np.cos(a), cy - r * np.sin(a)) for a in np.radians([90.0, 210.0, 330.0])]
    if kind == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else 0.45 * r
            a = np.radians(90.0 + 36.0 * k)
            pts.append((cx + rr * np.cos(a), cy - rr * np.sin(a)))
        return pts
    raise ValueError(f"kind={kind!r} has no polygon")


def _arrow_points(direction: str, cx: float, cy: float, length: float) -> list[tuple[float, float]]:
    """An arrow along +x (shaft then head), rotated to ``direction``; image coordinates (y down)."""
    half, shaft, head = length / 2.0, 0.11 * length, 0.26 * length
    neck = half - 0.42 * length
    pts = [
        (-half, -shaft),
        (neck, -shaft),
        (neck, -head),
        (half, 0.0),
        (neck, head),
        (neck, shaft),
        (-half, shaft),
    ]
    rot = {"right": (1, 0, 0, 1), "left": (-1, 0, 0, -1), "down": (0, -1, 1, 0), "up": (0, 1, -1, 0)}[
        direction
    ]
    a, b, c, d = rot
    return [(cx + a * x + b * y, cy + c * x + d * y) for x, y in pts]


def _draw_object(draw: ImageDraw.ImageDraw, spec: SceneSpec, cx: float, cy: float, r: float) -> None:
    rgb = SCENE_COLORS[spec.color]
    width = max(1, round(0.22 * r))
    fill = rgb if spec.filled else None
    if spec.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=rgb, width=width)
    else:
        pts = _polygon_points(spec.shape, cx, cy, r)
        if spec.filled:
            draw.polygon(pts, fill=rgb)
        else:
            draw.line(pts + pts[:2], fill=rgb, width=width, joint="curve")
    if spec.dot:
        d = 0.3 * r  # fits inside the triangle's incircle (radius r / 2) and inside the outlines
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], fill=_INK)


def render_scene(spec: SceneSpec, size: int = 64, supersample: int = 4) -> np.ndarray:
    """One scene as uint8 ``[size, size, 3]`` (H, W, RGB)."""
    if size < 48:
        raise ValueError(
            f"size={size} is too small for the scene's word and arrow; use size >= 48 (64 typical)"
        )
    if supersample < 1:
        raise ValueError(f"supersample={supersample} must be >= 1 (1 = no antialiasing, 4 typical)")
    s = size * supersample
    im = Image.new("RGB", (s, s), (spec.background,) * 3)
    draw = ImageDraw.Draw(im)
    # the row of objects and the star
    r = _RADIUS[spec.near] * s
    step = _SPACING[spec.near] * s
    items = ["object"] * spec.count
    items = items + ["star"] if spec.side == "left" else ["star"] + items
    x0 = (0.5 + spec.row_offset[0]) * s - step * (len(items) - 1) / 2.0
    cy = (_ROW_Y + spec.row_offset[1]) * s
    for k, item in enumerate(items):
        cx = x0 + k * step
        if item == "star":
            draw.polygon(_polygon_points("star", cx, cy, r), fill=_INK)
        else:
            _draw_object(draw, spec, cx, cy, r)
    # the bottom band: the word on the left, the arrow on the right
    by = (_BAND_Y + spec.band_offset[1]) * s
    word = _word_mask(spec.word, size)
    word = word.resize((word.width * supersample, word.height * supersample), Image.NEAREST)
    wx = round((0.07 + spec.band_offset[0]) * s)
    im.paste(_INK, (wx, round(by - word.height / 2)), word)
    draw.polygon(
        _arrow_points(spec.arrow, (_ARROW_X + spec.band_offset[0]) * s, by, _ARROW_LENGTH * s), fill=_INK
    )
    if supersample > 1:
        im = im.reduce(supersample)
    return np.asarray(im)


def render_scenes(specs: list[SceneSpec], size: int = 64, supersample: int = 4) -> torch.Tensor:
    """Scenes as uint8 ``[N, 3, size, size]``."""
    out = np.empty((len(specs), size, size, 3), dtype=np.uint8)
    for i, spec in enumerate(specs):
        out[i] = render_scene(spec, size, supersample)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def make_captioned_scenes(
    n: int, *, size: int = 64, seed: int = 0, mention: Mapping[str, float] | None = None
) -> tuple[torch.Tensor, list[str]]:
    """``n`` random scenes and their captions: uint8 ``[n, 3, size, size]`` and ``n`` strings.

    Every property is drawn independently (see ``sample_scene``); the caption joins one clause per
    property in the vocabulary of the synthetic MMVP statements (``describe``), or, with ``mention``
    (property -> probability), leaves clauses out at random (:func:`caption_scenes`; the images stay
    those of the full captions). Deterministic per seed.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be a non-negative int")
    rng = np.random.default_rng(seed)
    specs = [sample_scene(rng) for _ in range(n)]
    return render_scenes(specs, size), caption_scenes(specs, mention=mention, seed=seed)
