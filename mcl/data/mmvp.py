"""MMVP-VLM (Tong et al., "Eyes Wide Shut?", CVPR 2024): the real benchmark's layout, and a synthetic
stand-in.

The real benchmark (Hugging Face ``MMVP/MMVP_VLM``, MIT licence) is 9 visual patterns x 15 image
pairs = 270 images. Its layout, as read by the authors' scoring script (``scripts/evaluate_vlm.py``
in github.com/tsb0601/MMVP) and by MCL's ``MMVP.ipynb``::

    <root>/Questions.csv                     columns: Question ID, Type, Statement
    <root>/MLLM_VLM Images/<Type>/<Question ID>.jpg

The script pairs consecutive rows (question ids 2k-1 and 2k, odd id = the pair's first image),
takes the image folder from the first row's ``Type``, prefixes each statement with
``"a photo of "``, and assigns pairs to patterns in blocks of 15 in the order of ``PATTERNS``.
The ``Type`` values (= folder names) are the nine of ``PATTERNS``; the script's category names
(``PATTERN_LONG_NAMES``) are display names only. The folder names agree with three public loaders of the
Hugging Face copy; the loader is tested on stand-ins written in the same layout.

``write_synthetic_mmvp`` writes a benchmark in exactly this layout from synthetic scenes
(``mcl.data.scenes``) in which each pair differs in one property, the pattern's own.
``make_captioned_scenes`` (re-exported from ``mcl.data.scenes``) makes the matching training set.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mcl.data.scenes import (
    PROPERTIES,
    PROPERTY_VALUES,
    SceneSpec,
    describe,
    make_captioned_scenes,
    render_scene,
    sample_scene,
)

__all__ = [
    "PATTERNS",
    "PATTERN_ABBREVIATIONS",
    "PATTERN_LONG_NAMES",
    "PATTERN_PROPERTY",
    "MMVPPair",
    "load_mmvp_vlm",
    "load_pair_images",
    "write_synthetic_mmvp",
    "make_captioned_scenes",
]

# The benchmark's Type values = image folder names, in the order of its question ids and of the
# paper's columns.
PATTERNS: tuple[str, ...] = (
    "Orientation",
    "Presence",
    "State",
    "Quantity",
    "Spatial",
    "Color",
    "Structural Character",
    "Text",
    "Camera Perspective",
)
PATTERN_ABBREVIATIONS: dict[str, str] = dict(
    zip(PATTERNS, ("O&D", "PSF", "S&C", "Q&C", "P&R", "C&A", "S&P", "Texts", "V&P"), strict=True)
)
PATTERN_LONG_NAMES: dict[str, str] = dict(
    zip(
        PATTERNS,
        (
            "Orientation and Direction",
            "Presence of Specific Features",
            "State and Condition",
            "Quantity and Count",
            "Positional and Relational Context",
            "Color and Appearance",
            "Structural Characteristics",
            "Texts",
            "Viewpoint and Perspective",
        ),
        strict=True,
    )
)
# which synthetic scene property each pattern's pairs contrast (scenes.PROPERTIES is in PATTERNS' order)
PATTERN_PROPERTY: dict[str, str] = dict(zip(PATTERNS, PROPERTIES, strict=True))

QUESTIONS_CSV = "Questions.csv"
IMAGES_DIR = "MLLM_VLM Images"
CSV_COLUMNS: tuple[str, str, str] = ("Question ID", "Type", "Statement")
SYNTHETIC_STREAM = (
    7919  # the synthetic benchmark draws from (seed, this): disjoint from make_captioned_scenes(seed)
)
_HOW_TO_GET = (
    "Get MMVP-VLM from https://huggingface.co/datasets/MMVP/MMVP_VLM (MIT licence), e.g. "
    "`huggingface-cli download MMVP/MMVP_VLM --repo-type dataset --local-dir <root>`, "
    "or write the synthetic stand-in with mcl.data.mmvp.write_synthetic_mmvp(<root>)."
)


@dataclass(frozen=True)
class MMVPPair:
    """One benchmark pair: ``statements[i]`` describes ``image_paths[i]`` and not the other image."""

    pattern: str
    image_paths: tuple[Path, Path]
    statements: tuple[str, str]


def _read_questions(csv_path: Path) -> list[tuple[int, str, str]]:
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        found = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in CSV_COLUMNS if c not in found]
        if missing:
            raise ValueError(
                f"{csv_path} lacks the column(s) {missing}; found {found}, expected {list(CSV_COLUMNS)}"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            try:
                qid = int(row["Question ID"])
            except ValueError as err:
                raise ValueError(
                    f"{csv_path}, line {line}: Question ID {row['Question ID']!r} is not an integer"
                ) from err
            rows.append((qid, row["Type"], row["Statement"]))
    return rows


def load_mmvp_vlm(root: str | Path) -> list[MMVPPair]:
    """Read MMVP-VLM (or the synthetic stand-in) from its layout; pairs in question-id order.

    Pairs are consecutive rows of ``Questions.csv`` (ids 2k-1, 2k, same ``Type``), as the authors'
    scoring script reads them; image ``i`` of a pair is ``MLLM_VLM Images/<Type>/<id_i>.jpg``.
    Raises FileNotFoundError naming the missing file or folder, ValueError on a malformed CSV.
    """
    root = Path(root)
    csv_path, images = root / QUESTIONS_CSV, root / IMAGES_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"MMVP-VLM root {root} does not exist. {_HOW_TO_GET}")
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} is missing. {_HOW_TO_GET}")
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} is missing. {_HOW_TO_GET}")
    rows = _read_questions(csv_path)
    if not rows or len(rows) % 2:
        raise ValueError(
            f"{csv_path} has {len(rows)} statements; MMVP-VLM needs an even, non-zero number (pairs)"
        )
    pairs = []
    for (q1, t1, s1), (q2, t2, s2) in zip(rows[0::2], rows[1::2], strict=True):
        if q1 % 2 != 1 or q2 != q1 + 1:
            raise ValueError(
                f"{csv_path}: rows with Question IDs {q1}, {q2} are not a pair (expected 2k-1, 2k)"
            )
        if t1 != t2:
            raise ValueError(f"{csv_path}: Question IDs {q1}, {q2} have different Types {t1!r}, {t2!r}")
        if t1 not in PATTERNS:
            raise ValueError(f"{csv_path}: Question ID {q1} has Type {t1!r}; expected one of {PATTERNS}")
        folder = images / t1
        if not folder.is_dir():
            raise FileNotFoundError(f"pattern folder {folder} is missing. {_HOW_TO_GET}")
        paths = (folder / f"{q1}.jpg", folder / f"{q2}.jpg")
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"image {p} (Question ID {p.stem}) is missing. {_HOW_TO_GET}")
        pairs.append(MMVPPair(t1, paths, (s1, s2)))
    return pairs


def _load_square(path: Path, size: int) -> torch.Tensor:
    """RGB image resized (bicubic) so its shorter side is ``size``, centre-cropped; uint8 ``[3, size,
    size]``."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous()


def load_pair_images(pair: MMVPPair, *, size: int = 224) -> torch.Tensor:
    """The pair's two images as uint8 ``[2, 3, size, size]`` (shorter side to ``size``, centre crop, as
    CLIP)."""
    if size < 1:
        raise ValueError(f"size={size} must be a positive number of pixels")
    return torch.stack([_load_square(p, size) for p in pair.image_paths])


def _contrast(prop: str, rng: np.random.Generator) -> tuple[object, object]:
    """Two different values of ``prop`` in random order (opposite directions for orientation)."""
    if prop == "orientation":
        a, b = (("left", "right"), ("up", "down"))[rng.integers(2)]
    else:
        values = PROPERTY_VALUES[prop]
        i, j = rng.choice(len(values), size=2, replace=False)
        a, b = values[i], values[j]
    return (a, b) if rng.integers(2) else (b, a)


def synthetic_pair_specs(
    pairs_per_pattern: int = 15, seed: int = 0
) -> list[tuple[str, SceneSpec, SceneSpec]]:
    """(pattern, spec 1, spec 2) for every synthetic pair, in question-id order; deterministic per seed."""
    rng = np.random.default_rng([seed, SYNTHETIC_STREAM])
    out = []
    for pattern in PATTERNS:
        prop = PATTERN_PROPERTY[pattern]
        for _ in range(pairs_per_pattern):
            base = sample_scene(rng)
            a, b = _contrast(prop, rng)
            out.append((pattern, base.with_property(prop, a), base.with_property(prop, b)))
    return out


def write_synthetic_mmvp(
    root: str | Path, *, size: int = 64, pairs_per_pattern: int = 15, seed: int = 0
) -> Path:
    """Write a synthetic MMVP-VLM in the real layout under ``root``; returns ``root``.

    9 patterns x ``pairs_per_pattern`` pairs; in each pair the two scenes differ only in the
    pattern's property (``PATTERN_PROPERTY``), and each statement is that property's clause of its
    own scene, in the vocabulary of ``make_captioned_scenes``'s captions. Scenes come from a random
    stream disjoint from ``make_captioned_scenes(seed=seed)``. JPEG at quality 95 without chroma
    subsampling, as the real benchmark is JPEG.
    """
    if not isinstance(pairs_per_pattern, int) or pairs_per_pattern < 1:
        raise ValueError(
            f"pairs_per_pattern={pairs_per_pattern!r} must be a positive int (15 in the real benchmark)"
        )
    root = Path(root)
    rows = []
    for k, (pattern, spec1, spec2) in enumerate(synthetic_pair_specs(pairs_per_pattern, seed)):
        folder = root / IMAGES_DIR / pattern
        folder.mkdir(parents=True, exist_ok=True)
        prop = PATTERN_PROPERTY[pattern]
        for qid, spec in ((2 * k + 1, spec1), (2 * k + 2, spec2)):
            Image.fromarray(render_scene(spec, size)).save(folder / f"{qid}.jpg", quality=95, subsampling=0)
            rows.append((qid, pattern, describe(spec, prop)))
    with (root / QUESTIONS_CSV).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    return root
