"""CelebA (Liu et al., ICCV 2015): aligned celebrity faces with 40 binary attributes.

Read from CelebA's own layout (``celeba/img_align_celeba/*.jpg``, ``celeba/list_attr_celeba.txt``
and, when present, ``celeba/list_eval_partition.txt``), whether it is the full data set (202,599
faces of 178x218) or the offline mirror's 10,000-face subset (89x109, all in the official train
partition). Faces are centre-cropped to a square (the full width, cut equally from top and
bottom) and resized to ``size`` (bilinear with antialiasing). Decoded arrays of all faces at one
size are cached under ``<root>/cache/celeba-<size>px.*``; labels and splits are derived on load.

The three attributes of the paper's table:

* ``"hair"``: the paper never says which attribute "hair" is. Here it is hair colour as a 4-way
  label over CelebA's ``Black_Hair``, ``Blond_Hair``, ``Brown_Hair`` and ``Gray_Hair``, keeping only
  faces with exactly one of the four set (one reasonable reading; others drop the colour or use
  ``Wavy_Hair``). This keeps 6,063 of the mirror's 10,000 faces; the other attributes are given for
  the same faces.
* ``"smiling"``: ``Smiling`` (0 = not smiling, 1 = smiling).
* ``"gender"``: ``Male`` (0 = female, 1 = male).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mcl.data import sources
from mcl.data.base import LabeledImages
from mcl.data.cifar import decode_images

HAIR_ATTRIBUTES = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"]
LABEL_NAMES = {
    "hair": ["black", "blond", "brown", "gray"],
    "smiling": ["not smiling", "smiling"],
    "gender": ["female", "male"],
}
PARTITIONS = {"train": 0, "valid": 1, "test": 2}
_CHUNK = 2048


def read_attributes(text: str) -> tuple[list[str], list[str], np.ndarray]:
    """Parse ``list_attr_celeba.txt``: (file names, attribute names, int8 ``[N, 40]`` of +1/-1)."""
    lines = text.splitlines()
    count, names = int(lines[0].split()[0]), lines[1].split()
    files, rows = [], []
    for line in lines[2:]:
        if line.strip():
            fields = line.split()
            if len(fields) != len(names) + 1:
                raise ValueError(
                    f"list_attr_celeba.txt: row {line[:40]!r}... has {len(fields) - 1} values, "
                    f"expected {len(names)}"
                )
            files.append(fields[0])
            rows.append([int(v) for v in fields[1:]])
    if len(files) != count:
        raise ValueError(f"list_attr_celeba.txt announces {count} faces but lists {len(files)}")
    return files, names, np.asarray(rows, np.int8).reshape(len(files), len(names))


def read_partition(text: str) -> dict[str, int]:
    """Parse ``list_eval_partition.txt``: file name -> 0 (train), 1 (valid) or 2 (test)."""
    return {f: int(p) for f, p in (line.split() for line in text.splitlines() if line.strip())}


def center_square(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """Centre-crop uint8 ``[3, H, W]`` images to squares and resize them: uint8 ``[N, 3, size, size]``.

    Images of one shape are resized together (bilinear, antialiased, rounded to the nearest value).
    """
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(tuple(image.shape), []).append(i)
    for (_, h, w), index in by_shape.items():
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        for start in range(0, len(index), _CHUNK):
            chunk = index[start : start + _CHUNK]
            batch = torch.stack([images[i][:, top : top + side, left : left + side] for i in chunk]).float()
            if side != size:
                batch = torch.nn.functional.interpolate(
                    batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False
                )
            out[chunk] = batch.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _celeba_files(found: sources.Found) -> tuple[dict[str, bytes | Path], str | None, str | None]:
    """(image file name -> bytes or path, attribute text, partition text or None) of a folder or archive."""
    if found.path.is_file():  # the mirror's archive, read in place
        blobs = sources.read_archive(found.path, "celeba/")
        texts = {n.rsplit("/", 1)[-1]: b.decode() for n, b in blobs.items() if n.endswith(".txt")}
        images = {n.rsplit("/", 1)[-1]: b for n, b in blobs.items() if "/img_align_celeba/" in n}
    else:
        texts = {p.name: p.read_text() for p in found.path.glob("list_*.txt")}
        images = {p.name: p for p in (found.path / "img_align_celeba").iterdir()}
    return images, texts.get("list_attr_celeba.txt"), texts.get("list_eval_partition.txt")


def _decode_faces(found: sources.Found, size: int) -> tuple[dict[str, np.ndarray], dict]:
    images, attr_text, part_text = _celeba_files(found)
    if attr_text is None:
        raise ValueError(f"{found.path} has no list_attr_celeba.txt")
    files, names, attrs = read_attributes(attr_text)
    missing = [f for f in files if f not in images]
    if missing:
        raise ValueError(
            f"{len(missing)} faces of list_attr_celeba.txt have no image in {found.path}, e.g. {missing[:3]}"
        )
    partition = np.full(len(files), -1, np.int8)
    if part_text is not None:
        table = read_partition(part_text)
        partition = np.asarray([table.get(f, -1) for f in files], np.int8)
    pixels = np.empty((len(files), 3, size, size), np.uint8)
    for start in range(0, len(files), _CHUNK):
        chunk = files[start : start + _CHUNK]
        blobs = [b if isinstance(b, bytes) else b.read_bytes() for b in (images[f] for f in chunk)]
        pixels[start : start + len(chunk)] = center_square(decode_images(blobs), size).numpy()
    arrays = {"images": pixels, "attributes": attrs, "partition": partition}
    return arrays, {"attribute_names": names, "files_first": files[0], "files_last": files[-1]}


def load_celeba(
    split: str = "train",
    *,
    size: int = 64,
    root: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> LabeledImages:
    """CelebA faces as uint8 ``[N, 3, size, size]``, labels ``"hair"`` (0..3), ``"smiling"``, ``"gender"``.

    Only faces with exactly one of the four hair colours are kept (see the module docstring).
    Split: the official partition (``"train"``, ``"valid"``, ``"test"``) when
    ``list_eval_partition.txt`` is present and the faces lie in more than one partition; otherwise
    an own split of the kept faces, seeded by ``seed``, with a ``test_fraction`` share in ``"test"``
    (``"valid"`` is then not available). Order: as in the attribute file.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r} must be a positive int (pixels of the square output)")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r} must lie strictly between 0 and 1")
    sources.check_split(split, tuple(PARTITIONS))
    base = sources.data_root(root)
    entry = sources.load_cached(f"celeba-{size}px", base, "celeba", lambda found: _decode_faces(found, size))
    attrs = np.asarray(entry.arrays["attributes"])
    partition = np.asarray(entry.arrays["partition"])
    names = entry.meta["attribute_names"]

    hair_bits = attrs[:, [names.index(a) for a in HAIR_ATTRIBUTES]] == 1
    kept = np.flatnonzero(hair_bits.sum(1) == 1)
    official = bool((partition[kept] >= 0).all() and len(np.unique(partition[kept])) > 1)
    if official:
        index = kept[partition[kept] == PARTITIONS[split]]
    else:
        if split == "valid":
            raise ValueError(
                "split='valid' needs CelebA's list_eval_partition.txt (absent here, or all "
                "faces in one partition); use 'train' or 'test'"
            )
        order = np.random.default_rng(seed).permutation(len(kept))
        n_test = int(round(test_fraction * len(kept)))
        chosen = order[:n_test] if split == "test" else order[n_test:]
        index = kept[np.sort(chosen)]

    t = torch.from_numpy
    labels = {
        "hair": t(hair_bits[index].argmax(1).astype(np.int64)),
        "smiling": t((attrs[index, names.index("Smiling")] == 1).astype(np.int64)),
        "gender": t((attrs[index, names.index("Male")] == 1).astype(np.int64)),
    }
    images = t(np.ascontiguousarray(np.asarray(entry.arrays["images"])[index]))
    return LabeledImages(images, labels, {k: list(v) for k, v in LABEL_NAMES.items()})
