"""CLIP's training step and config for :func:`mcl.fit.fit` (the symmetric CLIP loss on image-caption pairs).

Defaults follow the authors' command (open_clip's defaults: AdamW, lr 5e-4, weight decay 0.2 on weights
only, betas (0.9, 0.98), eps 1e-6, constant learning rate after a linear warm-up; 20 epochs per stage),
features gathered over all GPUs with gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mcl.clip.models import normalize_images, tokenizer_for
from mcl.device import autocast, resolve_device
from mcl.distributed import (
    DistributedRandomBatchSampler,
    all_gather_with_grad,
    barrier,
    ddp,
    get_rank,
    get_world_size,
    unwrap,
)
from mcl.fit import LoopConfig, TrainHistory, check_positive, fit, n_batches
from mcl.losses import MIN_TEMPERATURE, clip_loss


@dataclass
class ClipTrainConfig(LoopConfig):
    """One CLIP fine-tuning run (one MCL stage): :class:`mcl.fit.LoopConfig` with the authors' defaults
    (20 epochs, 256 per process, lr 5e-4) and AdamW's, the warm-up and the logit-scale clamp."""

    epochs: int = 20
    batch_size: int = 256  # per process; the global batch is batch_size * world_size
    lr: float = 5e-4
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_steps: int = 0  # the authors used 600
    schedule: str = "const"  # const | cosine (after the warm-up)
    max_logit_scale: float = 100.0  # open_clip clamps exp(logit_scale) to this after every step
    # frozen text tower: encode every caption once per run instead of every step (same features; the text
    # tower has no dropout). None: when they fit in cache_text_max_gb; False never.
    cache_text: bool | None = None
    cache_text_max_gb: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay!r} must be a finite number >= 0")
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or self.warmup_steps < 0
        ):
            raise ValueError(f"warmup_steps={self.warmup_steps!r} must be an int >= 0")
        if self.schedule not in ("const", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}; use 'const' or 'cosine'")
        if not 1 < check_positive("max_logit_scale", self.max_logit_scale) <= 1 / MIN_TEMPERATURE:
            raise ValueError(
                f"max_logit_scale={self.max_logit_scale} must be in (1, {1 / MIN_TEMPERATURE:g}] (open_clip "
                "uses 100): its inverse is the smallest temperature, and the losses refuse one below "
                f"{MIN_TEMPERATURE:g}"
            )

    def settings(self) -> dict:
        skip = {"cache_text", "cache_text_max_gb"}  # how the text features are computed, not what trains
        return {k: v for k, v in super().settings().items() if k not in skip}


def learning_rate(config: ClipTrainConfig, step: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to 0 at ``total_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "const":
        return config.lr
    span = max(total_steps - config.warmup_steps, 1)
    return 0.5 * config.lr * (1 + math.cos(math.pi * min(step - config.warmup_steps, span) / span))


def make_optimizer(model: nn.Module, config: ClipTrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; as open_clip, no weight decay on gains, biases, norms and
    ``logit_scale`` (parameters with fewer than 2 dimensions)."""
    decay, no_decay = [], []
    for _, p in unwrap(model).named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameter; unlock some (lock_clip(unlocked_groups=...))")
    return torch.optim.AdamW(
        [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": config.weight_decay}],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
    )


def clip_batch_loss(
    model: nn.Module, images: Tensor, tokens: Tensor | None = None, *, text_features: Tensor | None = None
) -> Tensor:
    """The symmetric CLIP loss of one batch, over the GLOBAL batch when distributed.

    images: float ``[n, 3, S, S]`` standardised (this rank's slice); tokens: int64 ``[n, L]``, or instead
    ``text_features`` ``[n, D]`` L2-normalised (precomputed when the text tower is frozen). The model (or its
    DDP wrapper) returns L2-normalised features and ``exp(logit_scale)``; the features of all ranks are
    gathered with gradients (:func:`mcl.distributed.all_gather_with_grad`) and
    :func:`mcl.losses.clip_loss` is taken with the model's scale. A 0-dim float32 tensor.
    """
    if (tokens is None) == (text_features is None):
        raise ValueError("pass exactly one of tokens (to encode) and text_features (precomputed)")
    out = model(images, tokens)
    image_f, scale = out[0], out[2]
    text_f = out[1] if text_features is None else text_features
    image_f, text_f = all_gather_with_grad(image_f.float()), all_gather_with_grad(text_f.float())
    return clip_loss(image_f, text_f, logit_scale=scale.float())


def text_tower_frozen(model: nn.Module) -> bool:
    """True when no parameter outside the image tower and the logit scale/bias requires a gradient."""
    return not any(
        p.requires_grad
        for name, p in unwrap(model).named_parameters()
        if not name.startswith("visual.") and name not in ("logit_scale", "logit_bias")
    )


def tokenize_captions(
    captions: Sequence[str] | Sequence[Sequence[str]], tokenizer: Callable
) -> tuple[Tensor, Tensor]:
    """All captions tokenised once: ``tokens`` int64 ``[M, L]`` and ``offsets`` int64 ``[N + 1]`` (the
    captions of image i are rows ``offsets[i]:offsets[i+1]``). ``captions``: one string per image, or a
    list of strings per image (COCO has five)."""
    flat: list[str] = []
    offsets = [0]
    for i, caps in enumerate(captions):
        caps = [caps] if isinstance(caps, str) else list(caps)
        if not caps:
            raise ValueError(f"captions[{i}] is empty; every image needs at least one caption")
        flat.extend(caps)
        offsets.append(len(flat))
    return tokenizer(flat), torch.tensor(offsets)


def pick_captions(offsets: Tensor, generator: torch.Generator) -> Tensor:
    """One caption row per image, uniformly among its captions: int64 ``[N]``."""
    counts = offsets[1:] - offsets[:-1]
    draw = (torch.rand(len(counts), generator=generator) * counts).long()
    return offsets[:-1] + draw


class ClipStep:
    """One CLIP batch: the learning rate of this step, the images (augmented, standardised), one caption per
    image drawn each epoch, the symmetric loss over the global batch; after the optimiser's step the logit
    scale is clamped."""

    def __init__(
        self,
        net: nn.Module,
        wrapped: nn.Module,
        images: Tensor,
        tokens: Tensor,
        offsets: Tensor,
        text_cache: Tensor | None,
        config: ClipTrainConfig,
        device: torch.device,
        *,
        total_steps: int,
        augment: Callable[[Tensor, torch.Generator], Tensor] | None,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self.net, self.wrapped, self.images, self.tokens, self.offsets = net, wrapped, images, tokens, offsets
        self.text_cache, self.config, self.device, self.total = text_cache, config, device, total_steps
        self.augment, self.optimizer, self.rank = augment, optimizer, get_rank()

    def begin_epoch(self, epoch: int) -> None:
        seed = self.config.seed * 1_000_003
        self.choice = pick_captions(self.offsets, torch.Generator().manual_seed(seed + epoch))
        self.aug_gen = torch.Generator(device=self.device).manual_seed(seed + epoch * 97 + self.rank)

    def loss(self, batch: Sequence[int], step: int) -> Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, step, self.total)
        index = torch.as_tensor(batch)
        x = self.images[index].to(self.device, non_blocking=True).float().div_(255)
        if self.augment is not None:
            x = self.augment(x, self.aug_gen)
        x = normalize_images(self.net, x).contiguous(memory_format=torch.channels_last)
        rows = self.choice[index]
        with autocast(self.device):
            if self.text_cache is None:
                return clip_batch_loss(self.wrapped, x, self.tokens[rows].to(self.device, non_blocking=True))
            return clip_batch_loss(
                self.wrapped, x, text_features=self.text_cache[rows].to(self.device, non_blocking=True)
            )

    def after_step(self) -> None:
        with torch.no_grad():
            self.net.logit_scale.clamp_(0, math.log(self.config.max_logit_scale))

    def temperature(self) -> float:
        return float(1 / self.net.logit_scale.detach().exp())


def train_clip(
    model: nn.Module,
    images: Tensor,
    captions: Sequence[str] | Sequence[Sequence[str]],
    config: ClipTrainConfig,
    *,
    batch_sampler: object | None = None,
    tokenizer: Callable | None = None,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
) -> TrainHistory:
    """Fine-tune (or train) ``model`` in place with the symmetric CLIP loss through :func:`mcl.fit.fit`.

    Args:
        model: an open_clip model (or its DDP wrapper); only parameters with ``requires_grad`` train (lock
            first with :func:`mcl.clip.lock_clip`).
        images: uint8 ``[N, 3, H, W]``, resized to the model's size and standardised per batch.
        captions: one string or a list of strings per image (one drawn per image and epoch).
        config: see :class:`ClipTrainConfig`.
        batch_sampler: per-rank batches (e.g. :class:`mcl.sampling.FeatureAwareBatchSampler`), or None for a
            seeded shuffle (:class:`mcl.distributed.DistributedRandomBatchSampler` under torchrun).
        tokenizer: open_clip's tokenizer of the model by default.
        augment: ``augment(x, generator)`` optionally transforms a float [0, 1] batch.

    bf16 autocast on CUDA only, channels_last. Under torchrun the model is wrapped in DDP here and the loss
    spans the global batch; rank 0 writes the checkpoints.

    Returns:
        The history: mean loss per epoch, ``temperatures`` (1 / exp(logit_scale) at each epoch's end),
        seconds.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    if len(captions) != len(images):
        raise ValueError(
            f"captions has {len(captions)} entries for {len(images)} images; give one (or a list) per image"
        )
    device = resolve_device(config.device)
    world = get_world_size()
    net = unwrap(model)
    tokens, offsets = tokenize_captions(captions, tokenizer or tokenizer_for(net))
    net.to(device=device, memory_format=torch.channels_last)
    wrapped = ddp(net, device)
    optimizer = make_optimizer(net, config)
    if batch_sampler is None and world > 1:
        batch_sampler = DistributedRandomBatchSampler(len(images), config.batch_size, seed=config.seed)
    text_cache = None
    if text_tower_frozen(net) and config.cache_text is not False:
        gigabytes = len(tokens) * getattr(net.visual, "output_dim", 1024) * 4 / 2**30
        if config.cache_text or gigabytes <= config.cache_text_max_gb:
            text_cache = _encode_tokens(net, tokens, device)
    total = n_batches(len(images), config.batch_size, batch_sampler) * config.epochs
    step = ClipStep(
        net,
        wrapped,
        images,
        tokens,
        offsets,
        text_cache,
        config,
        device,
        total_steps=total,
        augment=augment,
        optimizer=optimizer,
    )
    return fit(
        step,
        {"model": net},
        optimizer,
        config,
        n=len(images),
        device=device,
        batch_sampler=batch_sampler,
        desc="CLIP",
        main_process=get_rank() == 0,
        after_checkpoint=barrier,
    )


@torch.no_grad()
def _encode_tokens(net: nn.Module, tokens: Tensor, device: torch.device, batch_size: int = 1024) -> Tensor:
    """L2-normalised text features of all token rows, float32 [M, D] on the CPU (eval mode)."""
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, len(tokens), batch_size):
        with autocast(device):
            out.append(
                net.encode_text(tokens[start : start + batch_size].to(device), normalize=True).float().cpu()
            )
    net.train(was_training)
    return torch.cat(out)
