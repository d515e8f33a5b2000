"""MoCo-v2 (He et al., CVPR 2020; Chen et al., arXiv 2003.04297) with per-group queues for MCL.

A query network (trained), a key network (an exponential moving average of the query network,
no gradient) and a FIFO queue of past keys as negatives::

    q = normalize(f_q(view1)), k = normalize(f_k(view2))                    [B, D]
    logits = [q_i . k_i, q_i . queue_j for j] / t                           [B, 1 + Q]
    loss = cross_entropy(logits, 0);   f_k <- m f_k + (1 - m) f_q;   enqueue k

MCL's feature-aware sampling draws every batch from one pseudo-label group, and an anchor's
negatives must come from its own group. A single queue would still hold keys of the groups of
earlier batches, so here every group has its own FIFO queue and a batch of group g sees only
group g's queue. A batch that mixes groups (the sampler's ``small_groups="merge"`` leftovers, or
any other sampler) is handled per anchor: each query's negatives are its own group's queue, and
each key joins its own group's queue.

Storage is one flat buffer ``[sum_g c_g, D]`` cut into per-group ring buffers of capacity
``c_g = min(queue_size, n_g)`` (``n_g`` the group's size; a queue longer than its group could
only repeat the group's own keys). Memory is therefore at most ``min(G * queue_size, N) * D``
floats plus N int64 indices: bounded by the data set, however many groups the stages make (a
dense ``[G, queue_size, D]`` tensor would need ``G * queue_size * D``, e.g. 2 GB for 1000 groups).

Two details differ from the original code, both because per-group queues are short:
* every queued key carries its sample's index, and a query never sees its own sample's earlier
  key as a negative (the original tolerates this because its queue is ~8% of ImageNet);
* queues start empty and empty slots are masked, instead of starting with random unit vectors
  (so a group's first batch has no negatives and a loss of 0).
Without ``group_of`` there is one queue of ``min(queue_size, N)`` keys: MoCo-v2.

Shuffling BN (MoCo's 8-GPU trick against batch-statistics leaks) is emulated on one device with
``bn_splits``: queries are computed in ``bn_splits`` chunks of the batch and keys in
``bn_splits`` chunks of a random permutation of it, so each has its BatchNorm statistics from a
different random subset (the MoCo authors' single-GPU CIFAR demo does the same with split BN).
Single process only: keys are not gathered across ranks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcl.device import autocast, resolve_device
from mcl.fit import TrainConfig, TrainHistory, epoch_generator, fit
from mcl.losses import check_temperature, info_nce

QueueLossFn = Callable[..., Tensor]  # (q, k, queue, temperature, negative_mask=None) -> 0-dim loss


def _check_unit(name: str, value: float, *, low: float, high: float, hint: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value < high
    ):
        raise ValueError(f"{name}={value!r} must be in [{low}, {high}); use e.g. {hint}")
    return float(value)


def _positive_int(name: str, value: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int; use e.g. {hint}")
    return value


class MoCo(nn.Module):
    """MoCo-v2 around a contrastive network (``forward(x) -> z`` projection, ``features(x) -> h``).

    ``model``: the query network (e.g. :class:`mcl.models.ContrastiveNet`), or a zero-argument
    factory that builds one; the key network is a deep copy with ``requires_grad=False``.
    ``queue_size``: negatives per queue (4096 in MoCo-v2); ``momentum``: m of the key update;
    ``temperature``: of the InfoNCE loss (0.2 in MoCo-v2); ``bn_splits``: chunks for the
    shuffling-BN emulation (8, as MoCo's 8 GPUs; 1 = plain BatchNorm over the batch; batches
    need at least ``2 * bn_splits`` samples in training mode; see the module doc).

    ``forward(x_q, x_k) -> (q, k)``: L2-normalised queries (with gradient) and keys (without).
    Queues: :meth:`configure_queues`, :meth:`negatives`, :meth:`enqueue`.
    """

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        *,
        queue_size: int = 4096,
        momentum: float = 0.99,
        temperature: float = 0.2,
        bn_splits: int = 8,
    ) -> None:
        super().__init__()
        self.queue_size = _positive_int("queue_size", queue_size, "4096 (MoCo-v2)")
        self.momentum = _check_unit("momentum", momentum, low=0.0, high=1.0, hint="0.99 (CIFAR) or 0.999")
        self.temperature = check_temperature(temperature)
        self.bn_splits = _positive_int("bn_splits", bn_splits, "1, or 8 to emulate MoCo's 8-GPU shuffling BN")
        query = model if isinstance(model, nn.Module) else model()
        if not isinstance(query, nn.Module):
            raise ValueError(
                f"model must be an nn.Module or a factory returning one, got {type(query).__name__}"
            )
        self.query = query
        self.key = copy.deepcopy(query)
        for p in self.key.parameters():
            p.requires_grad_(False)
        # Flat per-group ring buffers (see the module doc). queue_keys is sized lazily: the
        # projection dimension is known at the first enqueue.
        self.register_buffer("queue_keys", torch.zeros(0, 0))
        self.register_buffer("queue_index", torch.zeros(0, dtype=torch.long))
        self._labels: list[int] | None = None  # group label of each queue; None = one queue for all
        self._slot: dict[int, int] = {}
        self._offset: list[int] = []
        self._capacity: list[int] = []
        self._pointer: list[int] = []
        self.configure_queues(None)

    # ----------------------------------------------------------------- queues
    def configure_queues(self, group_of: Tensor | None, num_samples: int | None = None) -> None:
        """Lay out the queues: one per distinct value of ``group_of`` (int [N]), or one for all.

        Capacity of group g's queue: ``min(queue_size, n_g)``; without ``group_of``,
        ``min(queue_size, num_samples)`` (``queue_size`` when ``num_samples`` is None). Calling it
        again with the same layout keeps the queued keys (so a resumed run continues as it was);
        any other layout empties the queues.
        """
        if group_of is None:
            labels = None
            capacity = [self.queue_size if num_samples is None else min(self.queue_size, num_samples)]
        else:
            if not isinstance(group_of, Tensor) or group_of.dim() != 1 or group_of.is_floating_point():
                got = f"{getattr(group_of, 'dtype', type(group_of))} {tuple(getattr(group_of, 'shape', ()))}"
                raise ValueError(f"group_of must be an integer tensor [N] of pseudo-labels, got {got}")
            values, counts = torch.unique(group_of.cpu(), return_counts=True)
            labels = values.tolist()
            capacity = [min(self.queue_size, c) for c in counts.tolist()]
        if labels == self._labels and capacity == self._capacity:
            return
        self._labels = labels
        self._slot = {} if labels is None else {label: g for g, label in enumerate(labels)}
        self._capacity = capacity
        self._offset = [0]
        for c in capacity[:-1]:
            self._offset.append(self._offset[-1] + c)
        self._pointer = [0] * len(capacity)
        total = sum(capacity)
        device = self.queue_index.device
        self.queue_keys = torch.zeros(
            total, self.queue_keys.shape[1], device=device, dtype=self.queue_keys.dtype
        )
        self.queue_index = torch.full((total,), -1, dtype=torch.long, device=device)

    @property
    def num_queues(self) -> int:
        return len(self._capacity)

    def queue_slot(self, label: int | None) -> int:
        """The queue number of group ``label`` (0 when there is one queue for all)."""
        if self._labels is None:
            return 0
        if label is None or int(label) not in self._slot:
            raise ValueError(
                f"group label {label!r} has no queue; call configure_queues(group_of) with "
                "the labels the batches are drawn from"
            )
        return self._slot[int(label)]

    def _span(self, label: int | None) -> tuple[int, int]:
        slot = self.queue_slot(label)
        return self._offset[slot], self._capacity[slot]

    def queue(self, label: int | None = None) -> tuple[Tensor, Tensor]:
        """Group ``label``'s ring buffer: keys [c_g, D] and their sample indices [c_g] (-1 = empty)."""
        offset, capacity = self._span(label)
        return self.queue_keys[offset : offset + capacity], self.queue_index[offset : offset + capacity]

    def _batch_labels(self, labels: Tensor | int | None, size: int) -> list[int] | None:
        """The batch's group labels as a list of B ints (None when there is one queue for all)."""
        if self._labels is None:
            return None
        if labels is None:
            raise ValueError("the queues are per group: pass the batch's group label(s)")
        labels = torch.as_tensor(labels).reshape(-1).tolist()
        if len(labels) == 1:
            labels = labels * size
        if len(labels) != size:
            raise ValueError(
                f"got {len(labels)} group labels for a batch of {size}; pass one label or one per sample"
            )
        return [int(label) for label in labels]

    def negatives(self, labels: Tensor | int | None, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Negatives for a batch with sample indices ``index`` [B] and group label(s) ``labels``.

        ``labels``: one label for the whole batch (MCL's homogeneous batches) or one per sample (int
        [B]); None when there is one queue for all. Returns (keys [M, D], mask bool [B, M], queued
        sample indices [M]) where the keys are the queues of the groups present in the batch
        (M = c_g for a homogeneous batch) and ``mask[i, j]`` is True only when key j is in query
        i's own group's queue, is not an empty slot and is not query i's own sample.
        """
        index = index.to(self.queue_index.device)
        rows = self._batch_labels(labels, index.shape[0])
        present = [None] if rows is None else sorted(set(rows))
        parts = [self.queue(label) for label in present]
        keys = torch.cat([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        queued = torch.cat([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        mask = (queued >= 0).unsqueeze(0) & (queued.unsqueeze(0) != index.unsqueeze(1))
        if len(present) > 1:
            owner = torch.cat(
                [
                    torch.full((queued_g.shape[0],), label)
                    for (_, queued_g), label in zip(parts, present, strict=True)
                ]
            )
            same = owner.unsqueeze(0) == torch.tensor(rows).unsqueeze(1)
            mask &= same.to(mask.device)
        return keys, mask, queued

    @torch.no_grad()
    def enqueue(self, keys: Tensor, index: Tensor, labels: Tensor | int | None = None) -> None:
        """Push ``keys`` [B, D] (L2-normalised) of samples ``index`` [B] into their groups' queues.

        ``labels``: one group label for all, one per sample, or None (one queue for all). FIFO per
        queue: the oldest entries are overwritten, the pointer wraps; when more keys than the
        capacity arrive at once only the last ``capacity`` of them are kept (in order).
        """
        if keys.dim() != 2 or index.shape != (keys.shape[0],):
            raise ValueError(
                f"keys must be [B, D] and index [B], got {tuple(keys.shape)} and {tuple(index.shape)}"
            )
        if self.queue_keys.shape[1] != keys.shape[1]:
            if self.queue_keys.shape[1] != 0:
                raise ValueError(
                    f"keys have D={keys.shape[1]} but the queue holds "
                    f"D={self.queue_keys.shape[1]}; use one projection size per MoCo"
                )
            self.queue_keys = torch.zeros(
                self.queue_keys.shape[0], keys.shape[1], device=keys.device, dtype=keys.dtype
            )
        rows = self._batch_labels(labels, keys.shape[0])
        if rows is None or len(set(rows)) == 1:
            self._push(self.queue_slot(None if rows is None else rows[0]), keys, index)
            return
        groups = torch.tensor(rows)
        for label in sorted(set(rows)):
            take = torch.nonzero(groups == label).flatten().to(keys.device)
            self._push(self.queue_slot(label), keys[take], index[take.to(index.device)])

    def _push(self, slot: int, keys: Tensor, index: Tensor) -> None:
        offset, capacity = self._offset[slot], self._capacity[slot]
        b = keys.shape[0]
        start = self._pointer[slot]
        if b > capacity:
            keys, index, start = keys[-capacity:], index[-capacity:], (start + b - capacity) % capacity
        positions = offset + (start + torch.arange(keys.shape[0], device=self.queue_keys.device)) % capacity
        self.queue_keys[positions] = keys.detach().to(self.queue_keys.dtype)
        self.queue_index[positions] = index.to(self.queue_index.device, torch.long)
        self._pointer[slot] = (self._pointer[slot] + b) % capacity

    def get_extra_state(self) -> dict:
        return {"labels": self._labels, "capacity": self._capacity, "pointer": self._pointer}

    def set_extra_state(self, state: dict) -> None:
        labels, capacity = state["labels"], state["capacity"]
        self._labels = labels
        self._slot = {} if labels is None else {label: g for g, label in enumerate(labels)}
        self._capacity = list(capacity)
        self._offset = [0]
        for c in capacity[:-1]:
            self._offset.append(self._offset[-1] + c)
        self._pointer = list(state["pointer"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The queue buffers change shape with the layout: take the checkpoint's shapes first.
        for name in ("queue_keys", "queue_index"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------------- networks
    @torch.no_grad()
    def momentum_update(self) -> None:
        """Key parameters ``k <- m * k + (1 - m) * q`` (buffers such as BN statistics are not copied)."""
        for p_k, p_q in zip(self.key.parameters(), self.query.parameters(), strict=True):
            p_k.mul_(self.momentum).add_(p_q.detach(), alpha=1.0 - self.momentum)

    def _chunked(self, net: nn.Module, x: Tensor) -> Tensor:
        if self.bn_splits == 1 or not self.training:
            return net(x)
        if x.shape[0] < 2 * self.bn_splits:
            raise ValueError(
                f"a batch of {x.shape[0]} is too small for bn_splits={self.bn_splits}: each "
                "BatchNorm chunk needs >= 2 samples; raise batch_size or lower bn_splits"
            )
        return torch.cat([net(chunk) for chunk in x.tensor_split(self.bn_splits)])

    def forward(self, x_q: Tensor, x_k: Tensor) -> tuple[Tensor, Tensor]:
        """``(q, k)``: L2-normalised float32 [B, D] queries (with gradient) and keys (no gradient)."""
        q = F.normalize(self._chunked(self.query, x_q).float(), dim=1)
        with torch.no_grad():
            if self.bn_splits > 1 and self.training:
                perm = torch.randperm(x_k.shape[0], device=x_k.device)
                k = torch.empty_like(q)
                k[perm] = self._chunked(self.key, x_k[perm]).float()
            else:
                k = self.key(x_k).float()
            k = F.normalize(k, dim=1)
        return q, k

    def features(self, x: Tensor) -> Tensor:
        """The query network's backbone features (what a linear probe or MCL's clustering uses)."""
        return self.query.features(x)


def _group_of_from(batch_sampler: object | None) -> Tensor | None:
    for name in ("group_of", "labels"):
        labels = getattr(batch_sampler, name, None)
        if isinstance(labels, Tensor):
            return labels
    return None


class MoCoStep:
    """One MoCo batch: query and key views, the loss against the anchors' own queues; after the optimiser's
    step, the key network's momentum update and the batch's keys into the queues."""

    def __init__(
        self,
        model: MoCo,
        data: Tensor,
        config: TrainConfig,
        device: torch.device,
        *,
        augment: nn.Module,
        group_of: Tensor | None,
        loss_fn: QueueLossFn,
        temperature_schedule: Callable[[int], float] | None,
    ) -> None:
        self.model, self.data, self.config, self.device = model, data, config, device
        self.augment, self.group_of, self.loss_fn = augment, group_of, loss_fn
        self.schedule = temperature_schedule

    def begin_epoch(self, epoch: int) -> None:
        self.tau = check_temperature(self.schedule(epoch) if self.schedule else self.model.temperature)
        self.generator = epoch_generator(self.config.seed, epoch, self.device)

    def loss(self, batch: Sequence[int], step: int) -> Tensor:
        index = torch.as_tensor(batch, dtype=torch.long)
        self.labels = None if self.group_of is None else self.group_of[index]
        self.index = index.to(self.device)
        x = self.data[self.index].float().div_(255)
        view_q = self.augment(x, self.generator).contiguous(memory_format=torch.channels_last)
        view_k = self.augment(x, self.generator).contiguous(memory_format=torch.channels_last)
        with autocast(self.device):
            q, self.k = self.model(view_q, view_k)
        keys, mask, _ = self.model.negatives(self.labels, self.index)
        if keys.shape[1] == 0:
            keys = q.new_zeros(keys.shape[0], q.shape[1])
        return self.loss_fn(q, self.k, keys, self.tau, negative_mask=mask)

    def after_step(self) -> None:
        self.model.momentum_update()
        self.model.enqueue(self.k, self.index, self.labels)

    def temperature(self) -> float:
        return self.tau


def train_moco(
    model: MoCo,
    images: Tensor,
    config: TrainConfig,
    *,
    augment: nn.Module,
    batch_sampler: object | None = None,
    group_of: Tensor | None = None,
    loss_fn: QueueLossFn = info_nce,
    temperature_schedule: Callable[[int], float] | None = None,
) -> TrainHistory:
    """Train a :class:`MoCo` on uint8 images ``[N, C, H, W]`` through :func:`mcl.fit.fit`; return the history.

    Args:
        model: the :class:`MoCo` (query and key networks, queues).
        images: uint8 ``[N, C, H, W]``.
        config: epochs, batch size, Adam's ``lr`` and ``weight_decay`` on the query network, seed, device,
            checkpoint folder (the queues are checkpointed too). ``config.temperature`` (SimCLR's) is not
            used: the temperature is ``model.temperature`` or ``temperature_schedule(epoch)``.
        augment: ``augment(x, generator)`` makes one view.
        batch_sampler: batches of indices (e.g. MCL's :class:`mcl.sampling.FeatureAwareBatchSampler`) or
            None for a seeded shuffle.
        group_of: int ``[N]``, sample i's pseudo-label: each query's negatives come only from its own
            group's queue (mixed batches are handled per sample). None: the sampler's ``labels`` if it
            has them, else one queue for all (plain MoCo-v2).
        loss_fn: ``loss_fn(q, k, queue, temperature, negative_mask=...)``: :func:`mcl.losses.info_nce` or
            :class:`mcl.losses.IFMQueueLoss`.
    """
    if not isinstance(model, MoCo):
        raise ValueError(f"model must be a mcl.moco.MoCo, got {type(model).__name__}; wrap it: MoCo(net)")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    if group_of is None:
        group_of = _group_of_from(batch_sampler)
    if group_of is not None:
        group_of = torch.as_tensor(group_of).cpu()
        if group_of.shape != (len(images),):
            raise ValueError(
                f"group_of must have one label per image, shape ({len(images)},), got {tuple(group_of.shape)}"
            )
    device = resolve_device(config.device)
    data = images.to(device)
    model.to(device=device, memory_format=torch.channels_last)
    model.configure_queues(group_of, len(data))
    params = [p for p in model.query.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    step = MoCoStep(
        model,
        data,
        config,
        device,
        augment=augment,
        group_of=group_of,
        loss_fn=loss_fn,
        temperature_schedule=temperature_schedule,
    )
    return fit(
        step,
        {"moco": model},
        optimizer,
        config,
        n=len(data),
        device=device,
        batch_sampler=batch_sampler,
        desc="train MoCo",
    )
