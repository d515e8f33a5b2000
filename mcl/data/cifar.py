"""CIFAR-10 (Krizhevsky 2009): 50,000 train and 10,000 test colour photos, 32x32, 10 classes.

Two on-disk layouts are read: the official python batches (``cifar-10-batches-py/``, exact
pixels, original order) and class folders of images (``cifar10/{train,test}/<class>/*.jpg``, the
offline mirror's JPEG copy at quality 75, so slightly lossy; order: class by class, files sorted).
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mcl.data import cache, sources
from mcl.data.base import LabeledImages
from mcl.data.sources import CIFAR10_CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# What the official python batches pickle besides plain values (dict, list, bytes, int): one numpy array.
# Python 3 pickles bytes through _codecs.encode, and numpy >= 1.16 arrays at protocol 5 through _frombuffer.
_BATCH_GLOBALS = {
    (f"numpy.{core}.{module}", name)
    for core in ("core", "_core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _Refused(pickle.UnpicklingError):
    """A pickle names a callable outside :data:`_BATCH_GLOBALS`."""


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain values and numpy arrays: a batch file whose pickle names any other
    callable (which could run code) is refused instead of executed."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _BATCH_GLOBALS:
            raise _Refused(f"it refers to {module}.{name}, which a CIFAR-10 batch never holds")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official CIFAR-10 python batch: uint8 images ``[n, 3, 32, 32]`` and int64 labels ``[n]``.

    Read with :class:`_BatchUnpickler` (plain values and numpy arrays only); ValueError naming the file when
    it is truncated, not a batch, or would run code."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
        images = np.asarray(data, np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(labels, np.int64).reshape(-1)
    except _Refused as err:
        raise ValueError(
            f"{path} was refused: {err}; loading it could run code. Replace it with the official file "
            "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        IndexError,
    ) as err:
        raise ValueError(
            f"{path} is not a readable CIFAR-10 batch (truncated or corrupt: {type(err).__name__}: {err}); "
            "replace it with the official file (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)"
        ) from None
    if len(images) != len(labels):
        raise ValueError(f"{path} holds {len(images)} images but {len(labels)} labels; replace the file")
    return images, labels


def _read_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = zip(*(read_batch(folder / name) for name in names), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def decode_images(blobs: list[bytes]) -> list[torch.Tensor]:
    """Decode encoded images (JPEG, PNG, ...) to uint8 RGB ``[3, H, W]`` tensors.

    JPEGs go through torchvision's batched ``decode_jpeg`` (faster than PIL, bench/RESULTS.md;
    same pixels on the mirror's JPEGs), everything else, and everything once torchvision drops its
    deprecated decoders, through PIL.
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        decode_jpeg = None
    out: list[torch.Tensor | None] = [None] * len(blobs)
    jpeg = [i for i, b in enumerate(blobs) if b[:3] == b"\xff\xd8\xff"]
    if jpeg and decode_jpeg is not None:
        data = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpeg]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 deprecates its decoders
            decoded = decode_jpeg(data, mode=ImageReadMode.RGB)
        for i, image in zip(jpeg, decoded, strict=True):
            out[i] = image
    for i, image in enumerate(out):
        if image is None:
            with Image.open(io.BytesIO(blobs[i])) as pil:
                out[i] = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1).contiguous()
    return out


def _decode_named(blobs: dict[str, bytes], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images named ``.../<split>/<class>/<file>``: decoded, ordered class by class, files sorted."""
    items = []
    for name in sorted(blobs):
        parts = name.split("/")
        if len(parts) >= 3 and parts[-3] == split and Path(name).suffix.lower() in IMAGE_SUFFIXES:
            if parts[-2] not in CIFAR10_CLASSES:
                raise ValueError(f"{name}: folder {parts[-2]!r} is not a CIFAR-10 class {CIFAR10_CLASSES}")
            items.append((CIFAR10_CLASSES.index(parts[-2]), name))
    items.sort()
    images = np.empty((len(items), 3, 32, 32), np.uint8)
    chunk = 5000
    for start in range(0, len(items), chunk):
        names = [name for _, name in items[start : start + chunk]]
        for i, image in enumerate(decode_images([blobs[n] for n in names]), start):
            if image.shape != (3, 32, 32):
                raise ValueError(f"{items[i][1]} is {tuple(image.shape)}, expected a 32x32 RGB image")
            images[i] = image.numpy()
    return images, np.asarray([label for label, _ in items], np.int64)


def _read_folders(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    blobs = {
        f"{split}/{c}/{p.name}": p.read_bytes()
        for c in CIFAR10_CLASSES
        for p in (folder / split / c).iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
    }
    return _decode_named(blobs, split)


def load_cifar10(split: str = "train", *, root: str | os.PathLike | None = None) -> LabeledImages:
    """CIFAR-10 as uint8 ``[N, 3, 32, 32]`` RGB in 0..255, label ``"cifar"`` in 0..9.

    Class names (label order): airplane automobile bird cat deer dog frog horse ship truck.
    N = 50,000 for ``"train"``, 10,000 for ``"test"``. Decoded arrays are cached under
    ``<root>/cache/cifar10-<split>.*``; the mirror's archive is decoded once for both splits.
    """
    sources.check_split(split, ("train", "test"))
    base = sources.data_root(root)

    def decode(found: sources.Found) -> tuple[dict[str, np.ndarray], dict]:
        if found.path.is_file():  # the mirror's archive, read in place: decode both splits in one pass
            blobs = sources.read_archive(found.path, "cifar10/")
            other = "test" if split == "train" else "train"
            images, labels = _decode_named(blobs, other)
            meta = {"layout": "class folders", "source": found.source, "origin": str(found.path)}
            cache.save(base, f"cifar10-{other}", {"images": images, "labels": labels}, meta)
            images, labels = _decode_named(blobs, split)
            layout = "class folders"
        elif (found.path / "test_batch").is_file():
            images, labels = _read_batches(found.path, split)
            layout = "python batches"
        else:
            images, labels = _read_folders(found.path, split)
            layout = "class folders"
        if len(images) == 0:
            raise ValueError(f"no CIFAR-10 {split} images in {found.path}")
        return {"images": images, "labels": labels}, {"layout": layout}

    entry = sources.load_cached(f"cifar10-{split}", base, "cifar10", decode)
    return LabeledImages(
        torch.from_numpy(np.asarray(entry.arrays["images"])),
        {"cifar": torch.from_numpy(np.asarray(entry.arrays["labels"]))},
        {"cifar": list(CIFAR10_CLASSES)},
    )
