"""ImageNet (ILSVRC2012) for paper-scale linear evaluation: a torchvision ``ImageFolder``.

Layout under the data root: ``imagenet/{train,val}/<wnid>/*.JPEG`` (the validation images sorted
into class folders, as torchvision's and most training scripts expect). There is no offline copy
and no automatic download; without the folders, :class:`~mcl.data.sources.DataNotFoundError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mcl.data import sources


def load_imagenet(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    transform: Callable[[Any], Any] | None = None,
):
    """``torchvision.datasets.ImageFolder`` over ``<root>/imagenet/<split>``: (PIL image or
    ``transform(image)``, class index) pairs, classes = the sorted wnid folder names.
    """
    sources.check_split(split, ("train", "val"))
    found = sources.find("imagenet", root, split=split)
    from torchvision.datasets import ImageFolder

    sources.record_found(f"imagenet-{split}", found)
    return ImageFolder(str(found.path / split), transform=transform)
