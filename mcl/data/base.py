"""The common in-memory form of an image data set with one or more labelled attributes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LabeledImages:
    """Images with several attributes, e.g. Trifeature's shape, texture and colour.

    images: uint8 ``[N, C, H, W]``, values 0..255.
    labels: attribute name -> int64 ``[N]`` with values in ``0..len(label_names[name])-1``.
    label_names: attribute name -> class names, in label order.
    """

    images: torch.Tensor
    labels: dict[str, torch.Tensor]
    label_names: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}"
            )
        n = len(self.images)
        for name, y in self.labels.items():
            if y.shape != (n,):
                raise ValueError(f"labels[{name!r}] has shape {tuple(y.shape)}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def attributes(self) -> list[str]:
        return list(self.labels)

    def subset(self, index: torch.Tensor | slice) -> LabeledImages:
        """The samples at ``index`` (a slice, bool mask or int64 index tensor)."""
        return LabeledImages(
            self.images[index], {k: v[index] for k, v in self.labels.items()}, self.label_names
        )

    def float_images(self) -> torch.Tensor:
        """float32 ``[N, C, H, W]`` in [0, 1]."""
        return self.images.float().div_(255)
