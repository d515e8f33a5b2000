"""Image-caption pairs in the authors' "files" layout (img2dataset's ``--output_format files``).

The authors fine-tune CLIP on CC12M downloaded by img2dataset as plain files::

    <root>/00000/000000000.jpg   <root>/00000/000000000.txt   (<root>/00000/000000000.json ...)
    <root>/00000/000000001.jpg   ...
    <root>/00001/000010000.jpg   ...

one folder per shard, and in it one image and one caption file per sample, sharing a name. The data
set order is the authors': shard folders sorted by name, then samples sorted by name (the pseudo-labels
of MCL are indexed in that order). Here an image is paired with the caption file of the same stem;
files without a partner are an error (``missing="error"``) or skipped (``missing="skip"``). Captions
are read as UTF-8 and stripped of surrounding white space.

:class:`ImageTextFolder` decodes images lazily (a batch at a time, in threads), so a data set far
larger than memory can be trained on with :func:`mcl.clip.train_clip`; :func:`load_image_text` decodes
everything at once; :func:`write_image_text` writes in-memory images and captions (e.g. the generated
captioned scenes) into the layout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class ImageTextFiles:
    """The pairs found under a root, in data-set order: image files and their captions."""

    image_paths: list[Path]
    captions: list[str]

    def __len__(self) -> int:
        return len(self.image_paths)


def list_image_text_files(
    root: str | os.PathLike, *, missing: str = "error", extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> ImageTextFiles:
    """Every (image, caption) pair under ``root`` in the authors' order (see the module docstring)."""
    root = Path(root)
    if missing not in ("error", "skip"):
        raise ValueError(f"missing={missing!r}; use 'error' or 'skip'")
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is not a directory; pass the folder holding the shard folders "
            "(img2dataset --output_format files)"
        )
    shards = sorted(p for p in root.iterdir() if p.is_dir())
    if not shards:
        raise FileNotFoundError(f"{root} has no shard folders (expected e.g. {root}/00000/000000000.jpg)")
    exts = {e.lower() for e in extensions}
    paths, captions, unpaired = [], [], []
    for shard in shards:
        files = {}
        texts = {}
        for f in shard.iterdir():
            suffix = f.suffix.lower()
            if suffix in exts:
                files[f.stem] = f
            elif suffix == ".txt":
                texts[f.stem] = f
        for stem in sorted(set(files) | set(texts)):
            if stem in files and stem in texts:
                paths.append(files[stem])
                captions.append(texts[stem].read_text(encoding="utf-8").strip())
            else:
                unpaired.append(str(files.get(stem) or texts.get(stem)))
    if unpaired and missing == "error":
        raise ValueError(
            f"{len(unpaired)} files under {root} have no partner (image without caption or caption "
            f"without image), e.g. {unpaired[:3]}; pass missing='skip' to ignore them"
        )
    if not paths:
        raise FileNotFoundError(f"no image-caption pairs under {root}")
    return ImageTextFiles(paths, captions)


def decode_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """One image as uint8 ``[3, size, size]``: RGB, shortest side resized to ``size`` (bicubic), centre
    crop (the geometry of open_clip's evaluation transform)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


class ImageTextFolder:
    """The pairs under ``root`` with lazily decoded images, indexable like a uint8 ``[N, 3, S, S]`` tensor.

    ``folder[i]`` -> uint8 ``[3, S, S]``; ``folder[slice | list | int64 tensor]`` -> uint8 ``[n, 3, S, S]``
    (decoded in ``workers`` threads); ``folder.captions[i]`` its caption. It has ``shape``, ``dtype`` and
    ``ndim`` so :func:`mcl.clip.train_clip` and :func:`mcl.clip.encode_images` take it in place of a tensor.
    """

    dtype = torch.uint8
    ndim = 4

    def __init__(
        self, root: str | os.PathLike, size: int, *, missing: str = "error", workers: int = 8
    ) -> None:
        if size < 1:
            raise ValueError(f"size={size} must be a positive number of pixels")
        files = list_image_text_files(root, missing=missing)
        self.root, self.size, self.workers = Path(root), size, workers
        self.image_paths, self.captions = files.image_paths, files.captions

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), 3, self.size, self.size)

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> torch.Tensor:
        if isinstance(index, int | np.integer):
            return torch.from_numpy(decode_image(self.image_paths[index], self.size))
        if isinstance(index, slice):
            rows = range(len(self))[index]
        else:
            rows = torch.as_tensor(index).reshape(-1).tolist()
        paths = [self.image_paths[i] for i in rows]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            arrays = list(pool.map(lambda p: decode_image(p, self.size), paths))
        if not arrays:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays))


def load_image_text(
    root: str | os.PathLike, size: int, *, missing: str = "error", limit: int | None = None
) -> tuple[torch.Tensor, list[str]]:
    """All pairs under ``root`` decoded at once: uint8 ``[N, 3, size, size]`` and N captions (the first
    ``limit`` pairs when given)."""
    folder = ImageTextFolder(root, size, missing=missing)
    n = len(folder) if limit is None else min(limit, len(folder))
    return folder[slice(0, n)], folder.captions[:n]


def write_image_text(
    root: str | os.PathLike,
    images: torch.Tensor,
    captions: Sequence[str],
    *,
    shard_size: int = 10_000,
    quality: int = 95,
    extension: str = ".jpg",
) -> list[Path]:
    """Write uint8 ``[N, 3, H, W]`` images and their captions in the "files" layout: shard folders
    ``%05d`` of ``shard_size`` samples, files ``%09d.jpg`` + ``%09d.txt`` (img2dataset's naming). JPEG
    (``quality``) is lossy; pass ``extension=".png"`` for exact pixels. Returns the image paths."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    if len(captions) != len(images):
        raise ValueError(f"captions has {len(captions)} entries for {len(images)} images")
    if shard_size < 1:
        raise ValueError(f"shard_size={shard_size} must be >= 1")
    if extension.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"extension={extension!r}; use one of {IMAGE_EXTENSIONS}")
    root = Path(root)
    out = []
    array = images.cpu().numpy().transpose(0, 2, 3, 1)
    for i, caption in enumerate(captions):
        folder = root / f"{i // shard_size:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:09d}{extension}"
        kwargs = {"quality": quality} if extension.lower() in (".jpg", ".jpeg", ".webp") else {}
        Image.fromarray(array[i]).save(path, **kwargs)
        (folder / f"{i:09d}.txt").write_text(caption, encoding="utf-8")
        out.append(path)
    return out
