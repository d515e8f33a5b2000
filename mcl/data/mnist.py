"""MNIST (LeCun et al. 1998): 60,000 train and 10,000 test handwritten digits, 28x28 grey."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from mcl.data import sources
from mcl.data.base import LabeledImages

DIGITS = [str(d) for d in range(10)]
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (``*-ubyte`` or ``*-ubyte.gz``) as a uint8 array of the shape its header gives."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # a cut-off download, or not gzip at all
        raise ValueError(
            f"{path} is truncated or corrupt ({type(err).__name__}: {err}); delete it and let it be fetched "
            "again, or replace it with an intact copy"
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path} holds {len(data) - offset} values, its header says {shape}")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def _idx_file(raw: Path, name: str) -> Path:
    plain = raw / name
    return plain if plain.is_file() else raw / f"{name}.gz"


def load_mnist(split: str = "train", *, root: str | os.PathLike | None = None) -> LabeledImages:
    """MNIST as uint8 ``[N, 1, 28, 28]`` (0 = background, 255 = ink), label ``"digit"`` in 0..9.

    N = 60,000 for ``"train"``, 10,000 for ``"test"``. Sources: see :mod:`mcl.data.sources`;
    decoded arrays are cached under ``<root>/cache/mnist-<split>.*``.
    """
    sources.check_split(split, ("train", "test"))
    base = sources.data_root(root)

    def decode(found: sources.Found) -> tuple[dict[str, np.ndarray], dict]:
        prefix = _PREFIX[split]
        images = read_idx(_idx_file(found.path, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(found.path, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
            raise ValueError(f"MNIST files in {found.path} have shapes {images.shape} and {labels.shape}")
        return {"images": images[:, None].copy(), "labels": labels.astype(np.int64)}, {}

    entry = sources.load_cached(f"mnist-{split}", base, "mnist", decode)
    return LabeledImages(
        torch.from_numpy(np.asarray(entry.arrays["images"])),
        {"digit": torch.from_numpy(np.asarray(entry.arrays["labels"]))},
        {"digit": list(DIGITS)},
    )
