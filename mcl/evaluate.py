"""Evaluations on frozen features: a model's features, linear probes per attribute, kNN accuracy.

AMI between stages' cluster ids lives in :mod:`mcl.cluster` (``ami``, ``ami_matrix``); the CLIP
evaluations (MMVP, retrieval, soups) in :mod:`mcl.clip.eval`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mcl.data.base import LabeledImages
from mcl.losses._checks import check_finite
from mcl.models import embed
from mcl.stages import concat_features


def _tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _features_arg(x: object, name: str) -> torch.Tensor:
    """``x`` as a tensor when it is non-empty real features ``[N, D]``, all finite; ValueError naming ``name``
    otherwise (a NaN row would otherwise give a plausible-looking accuracy such as 0.5)."""
    try:
        t = _tensor(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{name} must be features [N, D] (a tensor or an array), got {type(x).__name__}"
        ) from err
    if t.dim() != 2:
        raise ValueError(
            f"{name} must be 2-D features [N, D], got shape {tuple(t.shape)}; flatten them first"
        )
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows); pass at least one sample")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has D=0 columns; pass features with at least one dimension")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} has dtype {t.dtype}; pass real-valued features ({name}.float())")
    if t.is_floating_point():
        check_finite(t, name)
    return t


def _same_width(train_x: torch.Tensor, test_x: torch.Tensor) -> None:
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train_x has D={train_x.shape[1]} columns but test_x has D={test_x.shape[1]}; pass features of "
            "the same model (and the same stages) for both splits"
        )


def _labels_arg(y: object, name: str, n: int, rows: str) -> torch.Tensor:
    """``y`` as a tensor when it is ``[n]`` integer class ids (integer-valued floats are accepted);
    ValueError naming ``name`` otherwise."""
    try:
        t = _tensor(y)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be integer class ids [N], got {type(y).__name__}") from err
    if t.dim() != 1 or len(t) != n:
        raise ValueError(
            f"{name} must hold one label per row of {rows}, shape ({n},), got shape {tuple(t.shape)}"
        )
    if t.is_complex() or (t.is_floating_point() and not bool((torch.isfinite(t) & (t == t.round())).all())):
        raise ValueError(f"{name} must hold integer class ids, got non-integer values of dtype {t.dtype}")
    return t


def _check_probe_options(C: float, max_iter: int, tol: float) -> None:
    if isinstance(C, bool) or not isinstance(C, int | float) or not math.isfinite(C) or C <= 0:
        raise ValueError(f"C={C!r} must be a finite number > 0 (the inverse L2 strength; scikit-learn's 1.0)")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter={max_iter!r} must be an int >= 1 (L-BFGS iterations; e.g. 1000)")
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol={tol!r} must be a finite number >= 0 (e.g. 1e-4)")


def fit_logistic_regression(
    x: torch.Tensor, y: torch.Tensor, *, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression ``(W [D, K], b [K])`` of class indices y ``[N]`` in ``0..K-1`` on
    features x ``[N, D]``, minimising scikit-learn's ``LogisticRegression(C=C)`` objective (L2 on ``W``
    only)

        L(W, b) = mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C N)

    by full-batch L-BFGS (strong Wolfe line search) in x's dtype and on its device. The gradient is
    written out, ``dL/dW = x^T G + W / (C N)`` and ``dL/db = sum_i G_i`` with ``G = (softmax(x W + b) -
    onehot(y)) / N``, and ``x^T G`` reads a contiguous copy of ``x^T``, faster on a CPU
    than the transposed view autograd would use (bench/RESULTS.md). It stops when every
    gradient entry is below ``tol`` (scipy's ``pgtol``, as scikit-learn's lbfgs) or after ``max_iter``
    iterations."""
    n, dim = x.shape
    k = int(y.max()) + 1
    x_t = x.t().contiguous()  # [D, N]
    onehot = F.one_hot(y, k).to(x.dtype)
    weight = torch.zeros(dim, k, dtype=x.dtype, device=x.device)
    bias = torch.zeros(k, dtype=x.dtype, device=x.device)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    @torch.no_grad()
    def objective() -> torch.Tensor:
        log_p = torch.addmm(bias, x, weight).log_softmax(dim=1)  # [N, K]
        g = (log_p.exp() - onehot).div_(n)
        weight.grad = torch.addmm(weight, x_t, g, alpha=1.0, beta=1.0 / (C * n))
        bias.grad = g.sum(dim=0)
        return -(log_p * onehot).sum() / n + weight.square().sum() / (2 * C * n)

    optimizer.step(objective)
    return weight, bias


def probe_attributes(
    train_x: torch.Tensor | np.ndarray,
    train_labels: dict[str, torch.Tensor | np.ndarray],
    test_x: torch.Tensor | np.ndarray,
    test_labels: dict[str, torch.Tensor | np.ndarray],
    *,
    C: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-4,
) -> dict[str, float]:
    """One linear probe per attribute (e.g. shape, texture, colour): attribute -> test accuracy.

    train_x ``[N, D]``, test_x ``[M, D]``; labels: attribute -> int ``[N]`` / ``[M]`` (any integer values).
    Each probe is :func:`fit_logistic_regression` in float64 on the features standardised with the training
    split's mean and population standard deviation (scikit-learn's ``StandardScaler`` then
    ``LogisticRegression``, and faster: bench/RESULTS.md);
    it runs on the features' device.
    """
    _check_probe_options(C, max_iter, tol)
    if set(train_labels) != set(test_labels):
        missing = sorted(set(train_labels) ^ set(test_labels))
        raise ValueError(f"train and test labels name different attributes: {missing}")
    if not train_labels:
        raise ValueError("train_labels is empty; pass at least one attribute -> labels")
    train_x, test_x = _features_arg(train_x, "train_x"), _features_arg(test_x, "test_x")
    _same_width(train_x, test_x)
    train_x, test_x = train_x.double(), test_x.double()
    for split, x, labels in (("train", train_x, train_labels), ("test", test_x, test_labels)):
        for name, y in labels.items():
            if len(y) != len(x):
                raise ValueError(
                    f"{split} features and labels of {name!r} differ in length: {len(x)} vs {len(y)}"
                )
            _labels_arg(y, f"{split}_labels[{name!r}]", len(x), f"{split}_x")
    mean, std = train_x.mean(0), train_x.std(0, unbiased=False)
    std[std == 0] = 1.0
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    accuracies = {}
    for name in train_labels:
        classes, y = torch.unique(_tensor(train_labels[name]).to(train_x.device), return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"attribute {name!r} has a single class in the training split; drop it")
        weight, bias = fit_logistic_regression(train_x, y, C=C, max_iter=max_iter, tol=tol)
        predicted = classes[(test_x @ weight + bias).argmax(1)]
        truth = _tensor(test_labels[name]).to(predicted.device)
        accuracies[name] = float((predicted == truth).double().mean())
    return accuracies


def linear_probe(
    train_x: torch.Tensor | np.ndarray,
    train_y: torch.Tensor | np.ndarray,
    test_x: torch.Tensor | np.ndarray,
    test_y: torch.Tensor | np.ndarray,
    **probe_kwargs,
) -> float:
    """Test accuracy of one multinomial logistic regression (:func:`probe_attributes` with one attribute).
    train_x ``[N, D]``, train_y int ``[N]``."""
    return probe_attributes(train_x, {"y": train_y}, test_x, {"y": test_y}, **probe_kwargs)["y"]


@torch.no_grad()
def knn_accuracy(
    train_x: torch.Tensor | np.ndarray,
    train_y: torch.Tensor | np.ndarray,
    test_x: torch.Tensor | np.ndarray,
    test_y: torch.Tensor | np.ndarray,
    *,
    k: int = 20,
    chunk_size: int = 4096,
) -> float:
    """Accuracy of a k-nearest-neighbour majority vote under cosine similarity.

    train_x ``[N, D]``, test_x ``[M, D]`` (finite; tensors or arrays), train_y / test_y class ids >= 0
    ``[N]`` / ``[M]``. Ties between classes go to the class with the smallest id. Works in chunks of test
    rows, on whatever device the features are on.
    """
    train_x, test_x = _features_arg(train_x, "train_x"), _features_arg(test_x, "test_x")
    _same_width(train_x, test_x)
    train_y = _labels_arg(train_y, "train_y", len(train_x), "train_x")
    test_y = _labels_arg(test_y, "test_y", len(test_x), "test_x")
    for name, y in (("train_y", train_y), ("test_y", test_y)):
        if bool((y < 0).any()):
            raise ValueError(
                f"{name} holds negative labels; kNN needs class ids >= 0 (map them with "
                "torch.unique(y, return_inverse=True))"
            )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= len(train_x):
        raise ValueError(
            f"k={k!r} must be an int between 1 and the number of training samples ({len(train_x)})"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be an int >= 1 (test rows per chunk)")
    k = int(k)
    train_x, test_x = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    train_y = torch.as_tensor(train_y, device=train_x.device).long()
    test_y = torch.as_tensor(test_y, device=train_x.device).long()
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    correct = 0
    for start in range(0, len(test_x), chunk_size):
        sims = test_x[start : start + chunk_size] @ train_x.T
        neighbours = sims.topk(k, dim=1).indices
        votes = F.one_hot(train_y[neighbours], n_classes).sum(dim=1)
        correct += (votes.argmax(dim=1) == test_y[start : start + chunk_size]).sum().item()
    return correct / len(test_x)


@torch.no_grad()
def nearest_neighbours(features: torch.Tensor, anchors: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Indices ``[A, k]`` of the ``k`` rows of ``features`` ``[N, D]`` most cosine-similar to each anchor
    row index in ``anchors`` ``[A]``, the anchor itself excluded, most similar first."""
    features = _features_arg(features, "features")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k < len(features):
        raise ValueError(f"k={k!r} must be an int between 1 and N - 1 = {len(features) - 1}")
    x = F.normalize(features.float(), dim=1)
    anchors = torch.as_tensor(anchors, device=x.device).long()
    sims = x[anchors] @ x.T
    sims[torch.arange(len(anchors), device=x.device), anchors] = -float("inf")
    return sims.topk(k, dim=1).indices


@torch.no_grad()
def occlusion_map(
    encode, images: torch.Tensor, *, patch: int = 8, stride: int = 4, fill: float = 0.5
) -> torch.Tensor:
    """How much each region matters to an embedding: ``1 - cos(f(x), f(x with a patch greyed out))``.

    encode: float images in [0, 1] ``[B, C, H, W]`` -> features ``[B, D]``; images: uint8 ``[B, C, H, W]``.
    A ``patch`` x ``patch`` square of value ``fill`` slides with ``stride``; each pixel's score is the mean
    over the patches covering it. Returns float ``[B, H, W]`` on the CPU (0: the region does not matter).
    """
    if patch < 1 or stride < 1:
        raise ValueError(f"patch={patch} and stride={stride} must be >= 1")
    x = images.float() / 255
    b, _, h, w = x.shape
    reference = F.normalize(encode(x).float(), dim=1)
    total = torch.zeros(b, h, w)
    count = torch.zeros(h, w)
    for top in range(0, max(h - patch, 0) + 1, stride):
        for left in range(0, max(w - patch, 0) + 1, stride):
            occluded = x.clone()
            occluded[:, :, top : top + patch, left : left + patch] = fill
            change = (1 - (F.normalize(encode(occluded).float(), dim=1) * reference).sum(1)).clamp_min(0)
            total[:, top : top + patch, left : left + patch] += change.cpu().view(b, 1, 1)
            count[top : top + patch, left : left + patch] += 1
    return total / count.clamp_min(1)


@torch.no_grad()
def neighbour_agreement(features: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """Fraction of (sample, neighbour) pairs that share the label, over every sample's ``k`` nearest
    neighbours under cosine similarity (:func:`nearest_neighbours`, the sample itself excluded).

    features ``[N, D]``, labels int ``[N]``. Chance is about ``sum_c p_c**2`` (0.1 for 10 balanced classes);
    1 means the embedding's neighbourhoods are organised by this attribute.
    """
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (len(features),):
        raise ValueError(f"labels must be [N] with N={len(features)}, got {tuple(labels.shape)}")
    neighbours = nearest_neighbours(features, torch.arange(len(features), device=features.device), k).cpu()
    return float((labels[neighbours] == labels[:, None]).float().mean())


def features(
    model: nn.Module,
    data: LabeledImages,
    *,
    device: str = "auto",
    part: str = "features",
    normalize: bool = True,
) -> torch.Tensor:
    """Frozen embeddings ``[N, D]`` of ``data.images``: the backbone's (``part="features"``, e.g.
    :meth:`mcl.models.ContrastiveNet.features`) or the projection's (``part="projection"``)."""
    if part not in ("features", "projection"):
        raise ValueError(f"part={part!r}; use 'features' or 'projection'")
    encode = model.features if part == "features" else model
    return embed(encode, data.images, device=device, normalize=normalize)


def probe_models(
    models: list[nn.Module],
    train: LabeledImages,
    test: LabeledImages,
    *,
    device: str = "auto",
    combine: Callable[[list[torch.Tensor]], torch.Tensor] = concat_features,
) -> dict[str, float]:
    """Linear-probe accuracy per attribute (:func:`probe_attributes`) of the raw backbone features of
    ``models``, combined by ``combine`` (by default concatenated, then L2-normalised once: the authors' MCL
    representation). Returns attribute -> test accuracy."""
    train_x = combine([features(m, train, device=device, normalize=False) for m in models])
    test_x = combine([features(m, test, device=device, normalize=False) for m in models])
    return probe_attributes(train_x, train.labels, test_x, test.labels)
