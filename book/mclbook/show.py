"""A grid of images for the book's figures (matplotlib is imported only when a grid is drawn)."""

from __future__ import annotations

import math

import numpy as np
import torch


def _to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """One ``[C, H, W]`` image (uint8 0..255 or float 0..1) as ``[H, W, C]`` or ``[H, W]`` for imshow."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(array.astype(np.float32), 0.0, 1.0)
    array = array.transpose(1, 2, 0)
    return array[..., 0] if array.shape[2] == 1 else array


def image_grid(images, *, nrow: int = 8, titles: list[str] | None = None, ax=None):
    """Draw images ``[N, C, H, W]`` (uint8 in 0..255, or float in 0..1; C = 1 or 3) in a grid.

    ``nrow`` images per row; ``titles`` (one per image) are written above them. With ``ax`` (one
    matplotlib Axes) the images are tiled into one picture drawn on it (titles then go into the
    axes' title, joined); otherwise a new figure with one small axes per image is made.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, C, H, W] with C = 1 or 3, got shape {tuple(images.shape)}")
    if nrow < 1:
        raise ValueError(f"nrow={nrow} must be at least 1")
    n = len(images)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries for {n} images; give one per image or None")
    cols = min(nrow, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    cmap = "gray" if images.shape[1] == 1 else None
    if ax is not None:
        h, w = images.shape[2:]
        tiles = [_to_hwc(image) for image in images]
        canvas = np.ones((rows * (h + 2), cols * (w + 2)) + tiles[0].shape[2:], dtype=tiles[0].dtype)
        canvas *= 255 if canvas.dtype == np.uint8 else 1
        for i, tile in enumerate(tiles):
            r, c = divmod(i, cols)
            canvas[r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = tile
        ax.imshow(canvas, cmap=cmap, vmin=0, vmax=255 if canvas.dtype == np.uint8 else 1)
        ax.set_axis_off()
        if titles:
            ax.set_title(" | ".join(titles), fontsize=8)
        return ax.figure
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.3 * cols, 1.3 * rows + (0.25 * rows if titles else 0)), squeeze=False
    )
    for i, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if i < n:
            tile = _to_hwc(images[i])
            axis.imshow(tile, cmap=cmap, vmin=0, vmax=255 if tile.dtype == np.uint8 else 1)
            if titles is not None:
                axis.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig
