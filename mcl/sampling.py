"""MCL's pseudo-labels and feature-aware negative sampling (Zhang et al., ECCV 2024, Sec. 3).

:func:`combine_labels` turns the k-means cluster ids of stages 0..s into the pseudo-label of stage s+1, and
:class:`FeatureAwareBatchSampler` draws every global batch (all ranks together) from one pseudo-label
group, so an anchor's negatives share everything the earlier stages learned and the loss, unchanged, has to
use something new.

With ``groups_per_batch`` G > 1 a global batch is G equal blocks, each from one group, and the loss keeps
negatives within a block (:func:`mcl.losses.grouped_loss`). Each anchor then has the negatives of its
block only: ``2 B/G - 2`` views for NT-Xent with batch B, against ``2 B - 2`` with the authors' sampler
(at B = 64 and G = 4: 30 views of 15 other images, against 126 views of 63). What G > 1 buys is that batch
normalisation no longer sees a single group per step (with one colour per batch, BatchNorm's training
statistics differ from those at evaluation; chapter 2 measures both).

Differences from the authors' code (``MCL_batch_sampler_DDP`` in GitHub MajorDavidZhang/MCL,
``my_training/data.py``): the order is theirs (groups round-robin in ascending label order, one batch per
group per round, groups without a full batch left skipped, each group's remainder dropped). Theirs shuffles
each group with ``torch.randperm`` on the global generator, seeded with ``seed + rank``, so each rank keeps
every ``world_size``-th element of its own permutation and ranks train on overlapping samples while missing
others; here the shuffle is seeded by ``(seed, epoch)`` only, identical on all ranks, and rank r takes rows
``[r*batch_size, (r+1)*batch_size)`` of each global batch, so the ranks partition every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Sampler

_MODES = ("product", "latest")
_POLICIES = ("drop", "merge")


def as_label_array(labels: object, name: str, *, integer: bool = True) -> np.ndarray:
    """1-D numpy array of labels given as a tensor (any device), an array or a sequence (int64 when
    ``integer``); ValueError naming ``name`` otherwise."""
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample), got shape {arr.shape}")
    if not integer:
        return arr
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer cluster ids, got dtype {arr.dtype}; use .astype(int)")
    return arr.astype(np.int64, copy=False)


def _compact(values: np.ndarray) -> np.ndarray:
    """Map values to 0..G-1 in ascending order of value."""
    return np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)


def combine_labels(stage_labels: Sequence[Tensor | np.ndarray], mode: str = "product") -> Tensor:
    """Pseudo-labels from the cluster ids of several MCL stages; CPU int64 tensor [N].

    ``stage_labels``: S labelings of the same N samples (stage 0 first), each 1-D integer.
    ``mode="product"`` (the paper's text): the Cartesian product of the stages' ids, two samples share a
    pseudo-label only if they share a cluster at every stage; ``mode="latest"``: the last stage's ids only,
    which is what the authors' released ``cluster.py`` computes (its loop loads the current stage's labels
    at every step). Ids are compacted to ``0..G-1`` in lexicographic order of the tuples of stage ids.
    """
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r} is not one of {_MODES}; 'product' is the paper's pseudo-label")
    if isinstance(stage_labels, Tensor | np.ndarray) or len(stage_labels) == 0:
        raise ValueError("stage_labels must be a non-empty sequence of 1-D labelings, one per stage")
    arrays = [as_label_array(lab, f"stage_labels[{i}]") for i, lab in enumerate(stage_labels)]
    lengths = {a.size for a in arrays}
    if len(lengths) != 1:
        raise ValueError(
            f"stage_labels have different lengths {[a.size for a in arrays]}; every stage must "
            "label the same N samples in the same order"
        )
    if mode == "latest":
        return torch.from_numpy(_compact(arrays[-1]))
    code = _compact(arrays[0])
    for arr in arrays[1:]:
        ids = _compact(arr)
        # code < N and ids < N, so code * (max id + 1) + ids < N^2 fits int64; the order stays lexicographic
        code = _compact(code * (int(ids.max(initial=0)) + 1) + ids)
    return torch.from_numpy(code)


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name}={value!r} must be an int (or None to read torch.distributed)")
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1 (the number of training processes)")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must satisfy 0 <= rank < world_size={world_size}")
    return int(rank), int(world_size)


class FeatureAwareBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices in which every global batch comes from one pseudo-label group (or, with
    ``groups_per_batch`` G > 1, is G equal blocks that each come from one group).

    labels: [N] integer pseudo-labels (tensor, array or sequence), e.g. from :func:`combine_labels`.
    batch_size: per-rank batch size (as a DataLoader's); one global step uses ``batch_size * world_size``
    indices. rank, world_size: this process and the number of processes; ``None`` reads them from
    ``torch.distributed`` when it is initialised, else 0 and 1 (no process group is needed to simulate
    ranks). seed: with the epoch (``set_epoch``, as for ``DistributedSampler``), seeds the shuffle; give
    every rank the same seed.

    Each epoch every group's indices are shuffled (numpy generator seeded by ``(seed, epoch)``, the same on
    all ranks) and cut into global batches; groups are visited round-robin in ascending label order, one
    global batch per group per round, as in the authors' sampler; rank r yields rows
    ``[r*batch_size, (r+1)*batch_size)`` of each global batch. No index repeats within an epoch.

    small_groups, the policy for each group's leftover samples that do not fill a global batch:
    ``"drop"`` (default, as the authors): they are skipped this epoch (the shuffle changes which ones from
    epoch to epoch; a group smaller than one global batch never trains). ``"merge"``: all groups' leftovers
    are pooled, shuffled and cut into global batches yielded after the homogeneous ones, so every index is
    used once per epoch. These mixed batches are the only ones not drawn from one group. A last pooled
    remainder smaller than ``2 * world_size`` (too small to give every rank 2 samples) is added to the
    previous pooled batch, or dropped if there is none; a remainder that is not a whole global batch is
    split across ranks as evenly as possible (their sizes may then differ by one: a loss that all-gathers
    equal-sized features across ranks needs "drop").

    groups_per_batch: G >= 1 blocks per global batch, each of ``global_batch_size // G`` samples from one
    group (the global batch size must divide by G). Blocks are cut from the shuffled groups and visited
    round-robin as above; G consecutive blocks make one global batch (so they come from G different groups
    while G groups have blocks left) and the last ``len(blocks) % G`` blocks are dropped. Pair it with
    :func:`mcl.losses.grouped_loss` so negatives stay within a block. "merge" needs G = 1.

    Counts (the same every epoch): ``n_samples``, ``n_groups``, ``n_trained_groups`` (groups with at least
    one block used), ``n_homogeneous_batches`` (batches made of one-group blocks) and ``n_mixed_batches``
    (global steps per epoch), ``block_size``,
    ``n_dropped`` (samples not used in an epoch), ``n_merged`` (samples in mixed batches); ``summary()``.
    """

    def __init__(
        self,
        labels: Tensor | np.ndarray | Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        small_groups: str = "drop",
        groups_per_batch: int = 1,
    ) -> None:
        arr = as_label_array(labels, "labels")
        if arr.size == 0:
            raise ValueError("labels is empty; pass one pseudo-label per dataset sample")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 2:
            raise ValueError(
                f"batch_size={batch_size!r} must be an int >= 2: a contrastive batch needs negatives"
            )
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed={seed!r} must be an int >= 0")
        if small_groups not in _POLICIES:
            raise ValueError(f"small_groups={small_groups!r} is not one of {_POLICIES}")
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        self.batch_size = int(batch_size)
        self.global_batch_size = self.batch_size * self.world_size
        if (
            isinstance(groups_per_batch, bool)
            or not isinstance(groups_per_batch, int | np.integer)
            or groups_per_batch < 1
        ):
            raise ValueError(f"groups_per_batch={groups_per_batch!r} must be an int >= 1")
        groups_per_batch = int(groups_per_batch)
        if self.global_batch_size % groups_per_batch or self.global_batch_size // groups_per_batch < 2:
            raise ValueError(
                f"groups_per_batch={groups_per_batch} must divide the global batch {self.global_batch_size} "
                "into blocks of at least 2 samples; choose a divisor of it"
            )
        if groups_per_batch > 1 and small_groups != "drop":
            raise ValueError(f"small_groups={small_groups!r} needs groups_per_batch=1; use 'drop'")
        self.groups_per_batch = groups_per_batch
        self.block_size = self.global_batch_size // groups_per_batch
        self.seed = int(seed)
        self.small_groups = small_groups
        self.epoch = 0

        self.group_labels, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True)
        order = np.argsort(inverse.reshape(-1), kind="stable")
        self._members = np.split(order, np.cumsum(counts)[:-1])  # dataset indices of each group
        self.group_sizes = counts.astype(np.int64)
        self._full = self.group_sizes // self.block_size  # one-group blocks per group
        # block -> (group, round), round-robin: by round, then by group; G consecutive blocks make a batch
        group = np.repeat(np.arange(counts.size), self._full)
        rounds = np.arange(group.size) - np.repeat(np.cumsum(self._full) - self._full, self._full)
        visit = np.lexsort((group, rounds))
        n_used = group.size - group.size % groups_per_batch
        self._blocks = list(zip(group[visit][:n_used].tolist(), rounds[visit][:n_used].tolist(), strict=True))

        self.n_samples = int(arr.size)
        self.n_groups = int(counts.size)
        self.n_trained_groups = len({g for g, _ in self._blocks})
        self.n_homogeneous_batches = n_used // groups_per_batch
        leftover = self.n_samples - n_used * self.block_size
        self.n_dropped, self.n_merged, self.n_mixed_batches = leftover, 0, 0
        if small_groups == "merge" and leftover > 0:
            whole, rest = divmod(leftover, self.global_batch_size)
            if whole > 0 or rest >= 2 * self.world_size:
                self.n_dropped, self.n_merged = 0, leftover
                self.n_mixed_batches = whole + (1 if rest >= 2 * self.world_size else 0)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle ``__iter__`` yields; call it on every rank before each epoch."""
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise ValueError(f"epoch={epoch!r} must be an int >= 0")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches this rank yields per epoch (the same on every rank)."""
        return self.n_homogeneous_batches + self.n_mixed_batches

    def global_batches(self) -> list[np.ndarray]:
        """All ranks' global batches of the current epoch, in order (arrays of dataset indices)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        shuffled = [members[rng.permutation(members.size)] for members in self._members]
        gbs, bs, n = self.global_batch_size, self.block_size, self.groups_per_batch
        blocks = [shuffled[g][r * bs : (r + 1) * bs] for g, r in self._blocks]
        batches = [np.concatenate(blocks[i : i + n]) for i in range(0, len(blocks), n)]
        if self.n_mixed_batches:
            pool = np.concatenate([s[f * bs :] for s, f in zip(shuffled, self._full.tolist(), strict=True)])
            pool = pool[rng.permutation(pool.size)]
            mixed = [pool[i : i + gbs] for i in range(0, pool.size, gbs)]
            if mixed[-1].size < 2 * self.world_size:
                mixed[-2:] = [np.concatenate(mixed[-2:])]
            batches.extend(mixed)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        bs, r = self.batch_size, self.rank
        for batch in self.global_batches():
            if batch.size == self.global_batch_size:
                yield batch[r * bs : (r + 1) * bs].tolist()
            else:
                yield np.array_split(batch, self.world_size)[r].tolist()

    def summary(self) -> str:
        """A few lines: groups, batches per epoch and the samples the small-group policy affects."""
        pct = 100.0 / self.n_samples
        sizes = f"{int(self.group_sizes.min())}..{int(self.group_sizes.max())}"
        lines = [
            f"FeatureAwareBatchSampler: {self.n_samples} samples in {self.n_groups} pseudo-label groups "
            f"(sizes {sizes}); global batch {self.global_batch_size} = {self.batch_size} x "
            f"{self.world_size} rank(s); this is rank {self.rank}.",
            f"{self.n_trained_groups} group(s) fill at least one block of {self.block_size}: "
            f"{self.n_homogeneous_batches} batches of {self.groups_per_batch} one-group block(s) per epoch.",
        ]
        if self.small_groups == "drop":
            lines.append(
                f"small_groups='drop': {self.n_dropped} samples ({self.n_dropped * pct:.1f}%) "
                f"do not fill a block (or a last batch) and are skipped each epoch; "
                f"{self.n_groups - self.n_trained_groups} group(s) never train."
            )
        else:
            lines.append(
                f"small_groups='merge': {self.n_merged} leftover samples "
                f"({self.n_merged * pct:.1f}%) go to {self.n_mixed_batches} mixed batches at the "
                f"end of each epoch; {self.n_dropped} dropped."
            )
        lines.append(f"{len(self)} batches per rank per epoch.")
        return "\n".join(lines)
