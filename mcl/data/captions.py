"""Image-caption retrieval sets: COCO captions and Flickr30k (Karpathy's json).

Both return :class:`ImageCaptions`: image *file paths* with their captions (several per image),
plus a loader that decodes them on demand. Paths rather than decoded pixels, because CLIP models
come with their own preprocessing (open_clip's transforms take PIL images) and the full sets are
too big to hold decoded (COCO val2017: 5,000 images; uint8 at 224 px is 750 MB).

Layouts (under the data root, see :mod:`mcl.data.sources`):

* COCO: ``coco/<split>/*.jpg`` + ``coco/annotations/captions_<split>.json`` (the official format:
  ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``). The offline
  mirror holds 79 val2017 images with their 395 captions.
* Flickr30k: ``flickr30k/images/*.jpg`` (or ``flickr30k/flickr30k-images/``) +
  ``flickr30k/dataset_flickr30k.json`` in Karpathy's layout:
  ``{"images": [{"filename", "split", "sentences": [{"raw"}]}]}`` (splits train/val/test; test
  is the usual 1,000-image retrieval set).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from mcl.data import sources


@dataclass
class ImageCaptions:
    """Images with their captions, in the order of the annotation file.

    paths: one image file per sample; captions: the captions of each image (``len(captions[i]) >= 1``);
    size: the side of the square images :meth:`load_images` returns.
    """

    paths: list[Path]
    captions: list[list[str]]
    size: int = 224

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.captions):
            raise ValueError(f"{len(self.paths)} paths but {len(self.captions)} caption lists")

    def __len__(self) -> int:
        return len(self.paths)

    def open(self, i: int):
        """Image ``i`` as an RGB ``PIL.Image`` at full size (for e.g. open_clip's preprocessing)."""
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            return image.convert("RGB")

    def load_images(self, index: list[int] | None = None) -> torch.Tensor:
        """uint8 ``[N, 3, size, size]`` of images ``index`` (default: all), centre-cropped and resized.

        The crop is the largest centred square; the resize is bilinear with antialiasing.
        """
        from mcl.data.celeba import center_square
        from mcl.data.cifar import decode_images

        chosen = list(range(len(self))) if index is None else list(index)
        out = torch.empty((len(chosen), 3, self.size, self.size), dtype=torch.uint8)
        for start in range(0, len(chosen), 256):
            blobs = [self.paths[i].read_bytes() for i in chosen[start : start + 256]]
            out[start : start + len(blobs)] = center_square(decode_images(blobs), self.size)
        return out

    def flat(self) -> tuple[list[str], torch.Tensor]:
        """All captions in one list, and int64 ``[M]``: the image each caption belongs to."""
        texts = [c for caps in self.captions for c in caps]
        counts = torch.tensor([len(c) for c in self.captions], dtype=torch.int64)
        owner = torch.repeat_interleave(torch.arange(len(self)), counts)
        return texts, owner


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r} must be a positive int (pixels of the square images)")


def _missing_images(paths: list[Path], where: Path) -> None:
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images named in the annotations are missing from {where}, e.g. {missing[:3]}"
        )


def load_coco_captions(
    *, root: str | os.PathLike | None = None, split: str = "val2017", size: int = 224
) -> ImageCaptions:
    """COCO images of ``split`` with their captions (usually 5 per image), in the json's image order."""
    _check_size(size)
    if not re.fullmatch(r"(train|val|test)20\d\d", split):
        raise ValueError(f"split={split!r} must name a COCO image folder such as 'val2017' or 'train2017'")
    found = sources.find("coco", root, split=split)
    doc = json.loads((found.path / "annotations" / f"captions_{split}.json").read_text())
    captions: dict[int, list[str]] = {image["id"]: [] for image in doc["images"]}
    for ann in doc["annotations"]:
        captions[ann["image_id"]].append(ann["caption"].strip())
    images = [image for image in doc["images"] if captions[image["id"]]]
    paths = [found.path / split / image["file_name"] for image in images]
    _missing_images(paths, found.path / split)
    sources.record_found(f"coco-{split}", found)
    return ImageCaptions(paths, [captions[image["id"]] for image in images], size)


def load_flickr30k(
    *, root: str | os.PathLike | None = None, split: str = "test", size: int = 224
) -> ImageCaptions:
    """Flickr30k images of Karpathy's ``split`` ("train", "val", "test") with their captions (5 each)."""
    _check_size(size)
    sources.check_split(split, ("train", "val", "test"))
    found = sources.find("flickr30k", root, split=split)
    folder = next(found.path / d for d in sources.FLICKR_IMAGE_DIRS if (found.path / d).is_dir())
    doc = json.loads((found.path / "dataset_flickr30k.json").read_text())
    images = [image for image in doc["images"] if image["split"] == split]
    if not images:
        raise ValueError(f"{found.path / 'dataset_flickr30k.json'} has no image in split {split!r}")
    paths = [folder / image["filename"] for image in images]
    _missing_images(paths, folder)
    captions = [[s["raw"].strip() for s in image["sentences"]] for image in images]
    sources.record_found(f"flickr30k-{split}", found)
    return ImageCaptions(paths, captions, size)
