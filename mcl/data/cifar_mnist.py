"""CIFAR-MNIST: a CIFAR-10 photo and an MNIST digit in one image, with two independent labels.

The paper uses this data set to show feature suppression (SimCLR learns the digit and little of
the photo) but does not say how the two are composed; the composition is a parameter here.
Every CIFAR-10 image of a split gets one MNIST image of the same split, drawn at random (without
replacement while MNIST has enough images: train 50,000 of 60,000, test a permutation of 10,000),
so the two labels are independent; the pairing is fixed by ``seed``.

With ``digits_per_class=m`` the digits come instead from a small pool: ``m`` MNIST training images per
class, chosen once by ``seed`` and shared by both splits, and every CIFAR image gets a class and one of
its ``m`` templates drawn uniformly. The digit then has ``10 m`` values in the whole data set instead of
one per image: an easy feature with few values, like Trifeature's colour.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from mcl.data import sources
from mcl.data.base import LabeledImages
from mcl.data.cifar import load_cifar10
from mcl.data.mnist import load_mnist

COMPOSITIONS = ("side", "overlay")
_SPLIT_ID = {"train": 0, "test": 1}


def pairing(n_cifar: int, n_mnist: int, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(MNIST index for every CIFAR image ``[n_cifar]``, a permutation of the CIFAR images ``[n_cifar]``).

    Drawn from ``numpy.random.default_rng([seed, split])``: the pairing depends only on the seed
    and split; the permutation picks the ``n`` CIFAR images of a subset (its first ``n``).
    """
    rng = np.random.default_rng([seed, _SPLIT_ID[split]])
    digit = rng.choice(n_mnist, size=n_cifar, replace=n_mnist < n_cifar)
    return digit, rng.permutation(n_cifar)


def template_pool(labels: torch.Tensor, per_class: int, seed: int) -> np.ndarray:
    """Indices ``[10, per_class]`` into MNIST's training split: ``per_class`` images of each digit,
    drawn without replacement from ``numpy.random.default_rng([seed, 2])``."""
    if not (isinstance(per_class, int) and per_class >= 1):
        raise ValueError(f"digits_per_class={per_class!r} must be a positive int or None (every digit)")
    rng = np.random.default_rng([seed, 2])
    labels = np.asarray(labels)
    pool = []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        if per_class > len(members):
            raise ValueError(f"digits_per_class={per_class} exceeds the {len(members)} MNIST {digit}s")
        pool.append(rng.choice(members, size=per_class, replace=False))
    return np.stack(pool)


def pooled_digits(pool: np.ndarray, n_cifar: int, split: str, seed: int) -> np.ndarray:
    """For each of ``n_cifar`` images, an index into MNIST's training split: a uniform class, then a
    uniform template of that class from ``pool`` (``[10, m]``); ``default_rng([seed, split, 3])``."""
    rng = np.random.default_rng([seed, _SPLIT_ID[split], 3])
    classes = rng.integers(pool.shape[0], size=n_cifar)
    templates = rng.integers(pool.shape[1], size=n_cifar)
    return pool[classes, templates]


def digits_to_32(digits: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 1, 28, 28]`` MNIST digits -> uint8 ``[N, 1, 32, 32]`` (bilinear, rounded)."""
    out = torch.empty((len(digits), 1, 32, 32), dtype=torch.uint8)
    for start in range(0, len(digits), 8192):
        batch = digits[start : start + 8192].float()
        resized = torch.nn.functional.interpolate(batch, size=(32, 32), mode="bilinear", align_corners=False)
        out[start : start + 8192] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def compose(photos: torch.Tensor, digits32: torch.Tensor, composition: str = "side") -> torch.Tensor:
    """Put uint8 digits ``[N, 1, 32, 32]`` with uint8 photos ``[N, 3, 32, 32]``.

    ``"side"``: uint8 ``[N, 3, 32, 64]``, the photo left and the digit (grey, as 3 channels) right.
    ``"overlay"``: uint8 ``[N, 3, 32, 32]``, the digit painted over the photo as white ink whose
    opacity is the digit's intensity: ``out = photo * (1 - a) + 255 * a`` with ``a = digit / 255``
    (rounded), so the photo shows unchanged where the digit is black and the strokes are white.
    """
    if composition not in COMPOSITIONS:
        raise ValueError(f"composition={composition!r} is not one of {COMPOSITIONS}")
    if composition == "side":
        return torch.cat([photos, digits32.expand(-1, 3, -1, -1)], dim=3)
    alpha = digits32.float() / 255
    return (photos.float() * (1 - alpha) + 255 * alpha).round_().clamp_(0, 255).to(torch.uint8)


def load_cifar_mnist(
    split: str = "train",
    *,
    composition: str = "side",
    seed: int = 0,
    n: int | None = None,
    digits_per_class: int | None = None,
    root: str | os.PathLike | None = None,
) -> LabeledImages:
    """CIFAR-MNIST images, uint8 ``[N, 3, 32, 64]`` (``"side"``) or ``[N, 3, 32, 32]`` (``"overlay"``).

    Labels: ``"cifar"`` (0..9, CIFAR-10 class names) and ``"mnist"`` (0..9, the digit).
    N = the split's CIFAR-10 size (50,000 / 10,000), or ``n`` CIFAR images chosen at random by
    ``seed`` (kept in CIFAR-10 order; a smaller ``n`` gives a subset of a larger one).
    See :func:`compose` for the two compositions. ``digits_per_class``: None (every image its own MNIST
    digit) or the size of the per-class template pool (:func:`template_pool`, the same for both splits).
    The photos (and so the CIFAR-only control) do not depend on it.
    """
    sources.check_split(split, tuple(_SPLIT_ID))
    if composition not in COMPOSITIONS:
        raise ValueError(f"composition={composition!r} is not one of {COMPOSITIONS}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    cifar = load_cifar10(split, root=root)
    mnist = load_mnist(split, root=root)
    if n is not None and not (isinstance(n, int) and 1 <= n <= len(cifar)):
        raise ValueError(f"n={n!r} must be an int in 1..{len(cifar)} (the CIFAR-10 {split} size) or None")
    digit, order = pairing(len(cifar), len(mnist), split, seed)
    if digits_per_class is not None:
        mnist = load_mnist("train", root=root)
        pool = template_pool(mnist.labels["digit"], digits_per_class, seed)
        digit = pooled_digits(pool, len(cifar), split, seed)
    index = torch.arange(len(cifar)) if n is None else torch.from_numpy(np.sort(order[:n]))
    chosen = torch.from_numpy(digit)[index]
    images = compose(cifar.images[index], digits_to_32(mnist.images[chosen]), composition)
    return LabeledImages(
        images,
        {"cifar": cifar.labels["cifar"][index], "mnist": mnist.labels["digit"][chosen]},
        {"cifar": cifar.label_names["cifar"], "mnist": mnist.label_names["digit"]},
    )
