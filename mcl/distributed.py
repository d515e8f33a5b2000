"""Several processes (GPUs, nodes) through ``torchrun`` and DDP, for CLIP and SimCLR alike.

One code path serves one process and many: every helper here is the identity (or a no-op) when no
process group is initialised, so a script written with them runs unchanged under ``python`` and under
``torchrun --nproc_per_node G``. What MCL needs from several processes:

- the feature-aware sampler's ranks draw their slices of every global batch from the same
  pseudo-label group (:class:`mcl.sampling.FeatureAwareBatchSampler` with ``rank``/``world_size``);
  without MCL, :class:`DistributedRandomBatchSampler` does the same for a random global batch;
- the loss sees the global batch: features are gathered from all ranks WITH gradients
  (:func:`all_gather_with_grad`), so the negatives of an anchor span the global batch, as the
  authors' ``--gather-with-grad`` does;
- clustering sees the whole training set: each rank embeds a shard, :func:`gather_rows` puts the
  shards back together in data-set order on every rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mcl.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its global rank, the number of processes, its local rank and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    """True when a process group is initialised (torchrun with more than one process)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def init_distributed(device: str | torch.device = "auto", backend: str | None = None) -> DistInfo:
    """Initialise from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...).

    Without those variables (plain ``python``) or with ``WORLD_SIZE=1`` no process group is made and
    this is one process on ``device``. Otherwise: backend ``nccl`` on CUDA, ``gloo`` on the CPU (or
    ``backend``), and on CUDA each process takes the GPU ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if world_size <= 1:
        return DistInfo(0, 1, 0, dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not is_distributed():
        dist.init_process_group(backend or ("nccl" if dev.type == "cuda" else "gloo"))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def cleanup() -> None:
    """Destroy the process group, if any."""
    if is_distributed():
        dist.destroy_process_group()


def ddp(model: nn.Module, device: torch.device, **kwargs) -> nn.Module:
    """Wrap ``model`` (already on ``device``) in DistributedDataParallel when distributed, else return it.

    Frozen parameters (``requires_grad=False``, e.g. CLIP's locked text tower) are ignored by DDP.
    """
    if not is_distributed():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        world, rank = dist.get_world_size(), dist.get_rank()
        rows = torch.tensor([x.shape[0]], device=x.device)
        sizes = [torch.zeros_like(rows) for _ in range(world)]
        dist.all_gather(sizes, rows)
        sizes = [int(s.item()) for s in sizes]
        most = max(sizes)
        padded = x.contiguous()
        if x.shape[0] < most:
            padded = torch.cat([padded, padded.new_zeros((most - x.shape[0], *x.shape[1:]))])
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        ctx.start, ctx.rows = sum(sizes[:rank]), x.shape[0]
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.rows]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` ``[n_r, ...]`` in rank order, ``[sum n_r, ...]``, differentiably.

    Every rank then computes the same global loss L. The backward all-reduces (sums) the gradient
    with respect to the gathered tensor and returns this rank's rows, i.e. ``world_size * dL/dx_r``;
    DDP's gradient averaging divides by ``world_size``, so the parameters receive exactly the gradient
    of the one-process run on the global batch (this is what ``torch.distributed.nn.all_gather`` and
    open_clip's ``gather_with_grad`` do; it uses all_reduce, which gloo supports, not reduce_scatter).
    The cheaper "gather without gradient, put the local tensor back in its slot" gives each rank only
    ``dL/dx_r``: after DDP's averaging, 1/world_size of the one-process gradient (while a shared
    parameter such as CLIP's ``logit_scale`` gets its full gradient), so it is not used here.
    Ranks may hold different numbers of rows (the sampler's mixed last batches); the trailing
    dimensions must agree. The identity without a process group.
    """
    if not is_distributed():
        return x
    return _AllGatherWithGrad.apply(x)


def shard_range(n: int, rank: int | None = None, world_size: int | None = None) -> range:
    """Contiguous rows ``rank`` embeds of ``n`` (the first ``n % world_size`` ranks get one more)."""
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


@torch.no_grad()
def gather_rows(x: Tensor) -> Tensor:
    """Concatenate every rank's rows ``[n_r, D]`` in rank order (shards may differ by size); no gradient.

    Used to put the training set's embeddings back together for clustering: with
    :func:`shard_range` shards the result is in data-set order on every rank.
    """
    if not is_distributed():
        return x
    sizes = [None] * dist.get_world_size()
    dist.all_gather_object(sizes, int(x.shape[0]))
    most = max(sizes)
    padded = torch.zeros((most, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


def embed_sharded(
    embed: Callable[[Tensor], Tensor], data: Tensor, device: torch.device | None = None
) -> Tensor:
    """``embed(data[shard])`` on every rank, gathered: the embeddings of all of ``data`` on every rank.

    ``embed`` returns ``[n_r, D]`` (any device); the result is on the CPU. One process: ``embed(data)``.
    With the NCCL backend the shards travel on ``device`` (each rank's GPU).
    """
    if not is_distributed():
        return embed(data).cpu()
    rows = shard_range(len(data))
    local = embed(data[rows.start : rows.stop])
    if device is not None:
        local = local.to(device)
    elif dist.get_backend() == "nccl":
        local = local.to(torch.device("cuda", torch.cuda.current_device()))
    return gather_rows(local).cpu()


def broadcast_tensor(x: Tensor, src: int = 0) -> Tensor:
    """Rank ``src``'s ``x`` on every rank (same shape and dtype everywhere), e.g. cluster labels, so that
    all ranks agree even where a computation is not bitwise reproducible across GPUs."""
    if not is_distributed():
        return x
    out = x.clone().contiguous()
    dist.broadcast(out, src)
    return out


class DistributedRandomBatchSampler:
    """Random global batches of ``batch_size * world_size`` indices; this rank yields its slice.

    The plain (non-MCL) sampler for several processes: all ranks draw the same permutation of
    ``range(n)`` for an epoch (seeded by ``seed`` and the epoch set by :meth:`set_epoch`), cut it
    into global batches (the remainder is dropped), and rank r takes rows
    ``[r * batch_size, (r + 1) * batch_size)`` of each, so the ranks partition every global batch.
    With ``world_size=1`` it is a seeded shuffle with drop_last.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank={self.rank} must be in [0, world_size={self.world_size})")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1 (the per-rank batch size)")
        if n < batch_size * self.world_size:
            raise ValueError(
                f"n={n} samples cannot fill one global batch of batch_size={batch_size} x "
                f"world_size={self.world_size}; lower batch_size"
            )
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        step = self.batch_size * self.world_size
        for start in range(0, len(self) * step, step):
            lo = start + self.rank * self.batch_size
            yield order[lo : lo + self.batch_size].tolist()


def gathered_loss(loss_fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Wrap a two-view loss ``loss_fn(z1, z2, *args)`` so it runs on the global batch.

    ``z1``, ``z2`` ``[n, D]`` of this rank are gathered with gradients (:func:`all_gather_with_grad`);
    row i of both stays one sample, so SimCLR's positives stay aligned and its negatives span all
    ranks. Pass it as ``loss_fn`` to :func:`mcl.simclr.train_simclr` with a DDP-wrapped model.
    """

    def loss(z1: Tensor, z2: Tensor, *args, **kwargs) -> Tensor:
        return loss_fn(all_gather_with_grad(z1), all_gather_with_grad(z2), *args, **kwargs)

    loss.__name__ = f"gathered_{getattr(loss_fn, '__name__', 'loss')}"
    return loss
