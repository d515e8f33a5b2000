"""k-means in torch on any device (MCL's step 2), and the AMI between clusterings.

MCL (Zhang et al., ECCV 2024) clusters each stage's L2-normalised training embeddings with k-means
(K = 10 in the authors' code, which uses scikit-learn's ``MiniBatchKMeans`` on the CPU) and compares the
stages' clusterings with the adjusted mutual information. This module is exact Lloyd k-means:

- k-means++ initialisation, greedy as in scikit-learn (``2 + floor(log k)`` candidates per centre, the one
  lowering the potential most is kept; Arthur & Vassilvitskii 2007);
- Lloyd iterations whose distances are one matrix product, ``||x||^2 - 2 x c^T + ||c||^2``, computed over
  chunks of rows: the input is never copied whole (a float16 input is converted chunk by chunk), no
  N x K x D tensor is made, and centroid sums are accumulated per chunk with ``index_add_`` in float32
  (float64 for a float64 input), then over chunks in float64. 10 million x 768 float16 embeddings fit on
  one GPU (x itself, 15 GB, plus under 1 GB);
- empty clusters are re-seeded with the points farthest from their centroids (as scikit-learn does);
- spherical (cosine) k-means: inputs and centroids are L2-normalised, the cost of a point is ``1 - cos``;
- stops when the labels no longer change or the squared centroid shift is <= ``tol`` times the mean
  per-feature variance of the data (scikit-learn's rule); the result keeps the best of ``n_init`` runs.

Random numbers come from a CPU ``torch.Generator`` seeded by ``seed`` and are moved to ``x.device``, so a
seed picks the same initial centres on every device; on the CPU the result is bitwise reproducible (on
CUDA ``index_add_`` accumulates with atomics, so the last bits of the sums may vary).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_mutual_info_score
from torch import Tensor
from tqdm.std import tqdm

from mcl.progress import progress as progress_bar
from mcl.sampling import as_label_array

# default chunk, in elements of x: on the CPU 4 MiB of float32, so the matmul and index_add_ of a chunk
# share the cache; on a GPU 256 MiB, so a pass over 10 million rows is ~100 chunks (kernel launches matter)
_CHUNK_ELEMENTS = {"cpu": 1 << 20}
_CHUNK_ELEMENTS_GPU = 1 << 26


@dataclass
class KMeansResult:
    """Result of :func:`kmeans`.

    labels: int64 [N] on x's device; centroids: float32 [K, D] on x's device (unit rows in spherical
    mode); inertia: sum over points of the squared distance to the nearest centroid (of ``1 - cos`` in
    spherical mode); n_iter: Lloyd iterations run; converged: True when stopped by the tolerance or by
    unchanged labels, False when ``n_iter`` ran out.
    """

    labels: Tensor
    centroids: Tensor
    inertia: float
    n_iter: int
    converged: bool


# ----------------------------------------------------------------------------------------------- checks
def _check_int(value: object, name: str, low: int, high: int | None = None, fix: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name}={value!r} must be an int{fix}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}={value!r} must be {bound}{fix}")
    return int(value)


def _check_x(x: object, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [N, D], got {type(x).__name__}; use torch.as_tensor")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D tensor [N, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} has dtype {x.dtype}; k-means needs floating point, use {name}.float()")
    return x


def _chunk_rows(chunk_size: int | None, x: Tensor) -> int:
    n, d = x.shape
    if chunk_size is None:
        elements = _CHUNK_ELEMENTS.get(x.device.type, _CHUNK_ELEMENTS_GPU)
        return max(1, min(n, max(256, elements // d)))
    return min(n, _check_int(chunk_size, "chunk_size", 1, fix="; or None for an automatic size"))


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _acc_dtype(device: torch.device) -> torch.dtype:
    """Accumulators (sums over all rows): float64, except on Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


# ------------------------------------------------------------------------------------------- chunk ops
def _spans(n: int, rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, rows):
        yield start, min(start + rows, n)


def _scan(x: Tensor, rows: int, dtype: torch.dtype, spherical: bool) -> tuple[Tensor, Tensor]:
    """Chunked check that x is finite; returns the per-feature mean and variance (float64, [D]) of x, or of
    its normalised rows in spherical mode."""
    finite = torch.ones((), dtype=torch.bool, device=x.device)
    acc = _acc_dtype(x.device)
    s1 = torch.zeros(x.shape[1], dtype=acc, device=x.device)
    s2 = torch.zeros_like(s1)
    for start, stop in _spans(x.shape[0], rows):
        chunk = x[start:stop]
        finite &= torch.isfinite(chunk).all()
        xc = chunk.to(dtype)
        if spherical:
            xc = F.normalize(xc, dim=1)
        s1 += xc.sum(0, dtype=acc)
        s2 += xc.square().sum(0, dtype=acc)
    if not bool(finite):
        raise ValueError("x contains NaN or infinite values; k-means needs finite inputs")
    mean = s1 / x.shape[0]
    return mean, (s2 / x.shape[0] - mean.square()).clamp_min(0.0)


class _Points:
    """x in working coordinates, never copied whole: rows shifted by ``offset`` (plain k-means; sklearn
    centres the data the same way, for float32 precision) or L2-normalised (spherical).

    The shift is applied through the centroids, ``(x - o) . c = x . c - o . c``, and a per-row constant is
    computed once (``||x - o||^2``, or ``1 / ||x||`` in spherical mode), so a Lloyd pass over a float32 x
    reads each chunk twice (one matmul, one ``index_add_``) and makes no [chunk, D] temporary.
    """

    def __init__(self, x: Tensor, rows: int, spherical: bool, offset: Tensor | None) -> None:
        self.x, self.rows, self.spherical = x, rows, spherical
        self.dtype = _compute_dtype(x)
        self.offset = (
            torch.zeros(x.shape[1], dtype=self.dtype, device=x.device)
            if offset is None
            else offset.to(device=x.device, dtype=self.dtype)
        )
        self.aux = torch.empty(x.shape[0], dtype=self.dtype, device=x.device)
        for start, stop in _spans(x.shape[0], rows):
            raw = x[start:stop].to(self.dtype)
            if spherical:
                self.aux[start:stop] = 1.0 / raw.norm(dim=1).clamp_min(1e-12)
            else:
                self.aux[start:stop] = (raw - self.offset).square().sum(1)

    def chunks(self) -> Iterator[tuple[int, int, Tensor]]:
        """(start, stop, rows) with rows as the matmul uses them: converted, and normalised if spherical."""
        for start, stop in _spans(self.x.shape[0], self.rows):
            xc = self.x[start:stop].to(self.dtype)
            yield start, stop, (xc * self.aux[start:stop, None] if self.spherical else xc)

    def take(self, index: Tensor) -> Tensor:
        """Rows ``index`` of x in working coordinates (shifted, or normalised)."""
        rows = self.x[index].to(self.dtype)
        return F.normalize(rows, dim=1) if self.spherical else rows - self.offset

    def costs(self, start: int, stop: int, xc: Tensor, centers: Tensor) -> Tensor:
        """[b, K] cost of rows start:stop to centres (working coordinates), one matmul: ``||x - c||^2``
        (``||x-o||^2 - 2 x.c + (||c||^2 + 2 o.c)``) or ``1 - cos``."""
        if self.spherical:
            return (1.0 - xc @ centers.T).clamp_min_(0.0)
        bias = centers.square().sum(1) + 2.0 * (centers @ self.offset)
        cost = torch.addmm(bias.unsqueeze(0), xc, centers.T, alpha=-2.0)
        return cost.add_(self.aux[start:stop, None]).clamp_min_(0.0)

    def assign(
        self,
        centers: Tensor,
        labels: Tensor,
        cost: Tensor,
        with_sums: bool = False,
    ) -> tuple[Tensor, Tensor] | None:
        """One pass: nearest centre of every row into ``labels``/``cost``. With ``with_sums`` also the
        M-step's per-cluster sums (float64 [K, D], working coordinates; each chunk's are accumulated with
        ``index_add_`` in the compute dtype) and counts (int64 [K])."""
        k, d = centers.shape
        acc = _acc_dtype(self.x.device)
        sums = torch.zeros(k, d, dtype=acc, device=self.x.device) if with_sums else None
        counts = torch.zeros(k, dtype=torch.long, device=self.x.device) if with_sums else None
        for start, stop, xc in self.chunks():
            best, lab = self.costs(start, stop, xc, centers).min(1)
            labels[start:stop] = lab
            cost[start:stop] = best
            if sums is not None and counts is not None:
                sums += torch.zeros(k, d, dtype=self.dtype, device=xc.device).index_add_(0, lab, xc)
                counts += torch.bincount(lab, minlength=k)
        if sums is None or counts is None:
            return None
        if not self.spherical:
            sums -= counts.unsqueeze(1) * self.offset.to(acc)
        return sums, counts


# -------------------------------------------------------------------------------------------- k-means
def _kmeans_plusplus(points: _Points, k: int, gen: torch.Generator) -> Tensor:
    """Greedy k-means++ (scikit-learn's variant): [K, D] initial centres in working coordinates."""
    n, d = points.x.shape
    dev = points.x.device
    trials = 2 + int(math.log(k))
    centers = torch.empty(k, d, dtype=points.dtype, device=dev)
    centers[0] = points.take(torch.randint(n, (1,), generator=gen).to(dev))[0]
    closest = torch.empty(n, dtype=points.dtype, device=dev)
    points.assign(centers[:1], torch.empty(n, dtype=torch.long, device=dev), closest)
    cand_cost = torch.empty(n, trials, dtype=points.dtype, device=dev)
    for c in range(1, k):
        cum = torch.cumsum(closest, 0, dtype=_acc_dtype(dev))
        draws = torch.rand(trials, generator=gen, dtype=torch.float64).to(dev, cum.dtype) * cum[-1]
        cand_pts = points.take(torch.searchsorted(cum, draws, right=True).clamp_(max=n - 1))
        for start, stop, xc in points.chunks():
            torch.minimum(
                points.costs(start, stop, xc, cand_pts), closest[start:stop, None], out=cand_cost[start:stop]
            )
        best = int(cand_cost.sum(0, dtype=_acc_dtype(dev)).argmin())
        centers[c] = cand_pts[best]
        closest.copy_(cand_cost[:, best])
    return centers


def _relocate_empty(points: _Points, sums: Tensor, counts: Tensor, labels: Tensor, cost: Tensor) -> None:
    """Give each empty cluster one of the points farthest from their centroid (scikit-learn's rule)."""
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel() == 0:
        return
    far = torch.topk(cost, empty.numel()).indices
    pts = points.take(far).to(sums.dtype)
    old = labels[far]
    sums.index_add_(0, old, -pts)
    counts -= torch.bincount(old, minlength=counts.numel())
    sums[empty] = pts
    counts[empty] = 1
    labels[far] = empty
    cost[far] = 0.0


def _lloyd(
    points: _Points,
    centers: Tensor,
    n_iter: int,
    tol_abs: float,
    bar: tqdm,
) -> tuple[Tensor, int, bool]:
    """Lloyd iterations from ``centers`` (working coordinates); returns (centres, iterations, converged)."""
    n = points.x.shape[0]
    labels = torch.empty(n, dtype=torch.long, device=points.x.device)
    previous = torch.full_like(labels, -1)
    cost = torch.empty(n, dtype=points.dtype, device=points.x.device)
    for it in range(1, n_iter + 1):
        out = points.assign(centers, labels, cost, with_sums=True)
        assert out is not None
        sums, counts = out
        _relocate_empty(points, sums, counts, labels, cost)
        means = (sums / counts.clamp_min(1).unsqueeze(1)).to(points.dtype)
        new = torch.where((counts > 0).unsqueeze(1), means, centers)
        if points.spherical:
            new = F.normalize(new, dim=1)
        shift = float((new - centers).square().sum())
        centers = new
        bar.update(1)
        if not bar.disable:
            inertia = float(cost.sum(dtype=_acc_dtype(cost.device)))
            bar.set_postfix(inertia=f"{inertia:.6g}", shift=f"{shift:.3g}")
        if torch.equal(labels, previous) or shift <= tol_abs:
            return centers, it, True
        labels, previous = previous, labels
    return centers, n_iter, False


@torch.no_grad()
def kmeans(
    x: Tensor,
    k: int,
    *,
    spherical: bool = False,
    n_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    n_init: int = 1,
    chunk_size: int | None = None,
    progress: bool = False,
) -> KMeansResult:
    """Lloyd k-means with k-means++ initialisation on x's device (see the module docstring).

    x: [N, D] float16/bfloat16/float32/float64 on any device, never copied whole. k: 1 <= k <= N.
    spherical: cluster by cosine (inputs and centroids L2-normalised). n_iter: max Lloyd iterations per
    run. tol: stop when the summed squared centroid shift <= tol * mean per-feature variance of x.
    seed: seeds the CPU generator of the initialisations. n_init: runs; the lowest inertia wins.
    chunk_size: rows per chunk (None: 2**20 / D rows on the CPU, 2**26 / D on a GPU, at least 256).
    progress: a tqdm bar over iterations.
    """
    x = _check_x(x)
    n, d = x.shape
    k = _check_int(k, "k", 1, n, fix=f"; the number of clusters must be between 1 and N={n}")
    n_iter = _check_int(n_iter, "n_iter", 1, fix="; the maximum number of Lloyd iterations")
    n_init = _check_int(n_init, "n_init", 1, fix="; the number of k-means++ restarts")
    seed = _check_int(seed, "seed", 0, fix="; use a non-negative seed")
    if (
        isinstance(tol, bool)
        or not isinstance(tol, int | float | np.floating)
        or not math.isfinite(tol)
        or tol < 0
    ):
        raise ValueError(f"tol={tol!r} must be a finite float >= 0, e.g. 1e-4")
    rows = _chunk_rows(chunk_size, x)
    dtype = _compute_dtype(x)

    mean, var = _scan(x, rows, dtype, spherical)
    tol_abs = float(tol) * float(var.mean())
    points = _Points(x, rows, spherical, None if spherical else mean)
    gen = torch.Generator().manual_seed(seed)

    best: KMeansResult | None = None
    with progress_bar(total=n_init * n_iter, desc=f"k-means (K={k})", disable=not progress) as bar:
        for run in range(n_init):
            centers = _kmeans_plusplus(points, k, gen)
            centers, its, converged = _lloyd(points, centers, n_iter, tol_abs, bar)
            bar.update((run + 1) * n_iter - bar.n)
            labels = torch.empty(n, dtype=torch.long, device=x.device)
            cost = torch.empty(n, dtype=dtype, device=x.device)
            points.assign(centers, labels, cost)
            inertia = float(cost.sum(dtype=_acc_dtype(x.device)))
            if best is None or inertia < best.inertia:
                out = centers if spherical else centers + points.offset
                best = KMeansResult(labels, out.to(torch.float32), inertia, its, converged)
    assert best is not None
    used = int((torch.bincount(best.labels, minlength=k) > 0).sum())
    if used < k:
        warnings.warn(
            f"k-means found only {used} distinct clusters for k={k}: x has fewer than k distinct "
            "points (duplicates), some clusters are empty",
            RuntimeWarning,
            stacklevel=2,
        )
    return best


@torch.no_grad()
def assign(
    x: Tensor,
    centroids: Tensor,
    *,
    spherical: bool = False,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Nearest centroid of every row of x, in chunks.

    x: [N, D] float on any device; centroids: [K, D] (moved to x's device). Returns ``labels`` (int64 [N])
    and ``cost`` (float32 [N]): the squared Euclidean distance to the nearest centroid, or in spherical
    mode ``1 - cos`` (inputs and centroids normalised), so ``cost.sum()`` is the inertia of
    :class:`KMeansResult`.
    """
    x = _check_x(x)
    centroids = _check_x(centroids, "centroids")
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(
            f"centroids have D={centroids.shape[1]} columns but x has D={x.shape[1]}; "
            "pass centroids fitted on the same features"
        )
    n = x.shape[0]
    dtype = _compute_dtype(x)
    centers = centroids.to(device=x.device, dtype=dtype)
    offset = None
    if spherical:
        centers = F.normalize(centers, dim=1)
    else:
        offset = centers.mean(0)  # distances are shift-invariant; centring keeps float32 precise
        centers = centers - offset
    points = _Points(x, _chunk_rows(chunk_size, x), spherical, offset)
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    cost = torch.empty(n, dtype=dtype, device=x.device)
    points.assign(centers, labels, cost)
    return labels, cost.to(torch.float32)


# ------------------------------------------------------------------------------------------------- AMI
def ami(a: Tensor | np.ndarray | Sequence, b: Tensor | np.ndarray | Sequence) -> float:
    """Adjusted mutual information of two labelings of the same N samples (scikit-learn's
    ``adjusted_mutual_info_score``, arithmetic normalisation): 1 for identical partitions, ~0 for
    independent ones. Accepts tensors (any device), arrays or sequences."""
    a_arr, b_arr = as_label_array(a, "a", integer=False), as_label_array(b, "b", integer=False)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"a and b label different numbers of samples ({a_arr.size} vs {b_arr.size})")
    return float(adjusted_mutual_info_score(a_arr, b_arr))


def ami_matrix(labelings: Sequence[Tensor | np.ndarray | Sequence]) -> np.ndarray:
    """[S, S] float64 matrix of :func:`ami` between every pair of S labelings (symmetric), e.g. the
    paper's table of AMI between the k-means clusters of MCL's stages."""
    arrays = [as_label_array(lab, f"labelings[{i}]", integer=False) for i, lab in enumerate(labelings)]
    if not arrays:
        raise ValueError("labelings is empty; pass at least one labeling")
    s = len(arrays)
    out = np.empty((s, s), dtype=np.float64)
    for i in range(s):
        for j in range(i, s):
            out[i, j] = out[j, i] = ami(arrays[i], arrays[j])
    return out
