"""MCL for CLIP on top of open_clip: models, locking, the training loop, embeddings, and ``mcl_clip``.

The authors' recipe (Zhang et al., ECCV 2024, Sec. 5.5; their open_clip fork): start from a
pretrained CLIP, lock the text tower, lock the image tower except its last N layer groups (the
projection included), and fine-tune with the symmetric CLIP loss on image-text pairs, for 20
epochs per stage, features gathered over all GPUs with gradients. Stage 0 is the pretrained model;
every later stage starts again from the stage-0 weights and is trained with the feature-aware
batch sampler over the pseudo-labels of k-means (K = 10) on the image embeddings of the earlier
stages. The final representation concatenates all stages' features.

Models are open_clip's: any architecture name (``RN50``, ``ViT-B-32``, ``ViT-L-14``, ...) with
``pretrained`` a tag (``"openai"``, downloaded by open_clip) or a local file, and the small
configurations registered here for CPU scale (:data:`TINY_CONFIGS`: ``mcl-tiny-vit``,
``mcl-tiny-rn``). The tokenizer is open_clip's BPE tokenizer for every architecture (its
vocabulary ships inside the package and loads offline in about 0.5 s); the tiny configurations
keep its 49,408-token vocabulary, which costs a 3.2 M-parameter embedding table, so the same
prompts work for every model.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.utils import freeze_batch_norm_2d
from torch import Tensor, nn

from mcl.device import autocast, resolve_device, seed_everything
from mcl.distributed import (
    DistributedRandomBatchSampler,
    all_gather_with_grad,
    barrier,
    ddp,
    embed_sharded,
    get_rank,
    get_world_size,
    unwrap,
)
from mcl.losses import clip_loss
from mcl.stages import MultistageResult, run_multistage
from mcl.train import TrainHistory, embed, epoch_batches, n_batches, resume, save_checkpoint

# ------------------------------------------------------------------------------------------ models
# The generated captioned scenes' captions run to 54 BPE tokens: a context of 64.
_TEXT = {"context_length": 64, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    # ViT: 64 px images in 16x16 patches (16 tokens + class token), 4 blocks of width 64 (2 heads);
    # 6 lockable groups. 8x8 patches see finer detail but cost about 3.5 times as much per step.
    "mcl-tiny-vit": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": dict(_TEXT),
    },
    # ModifiedResNet (CLIP's RN50 design: 3-conv stem, anti-aliased strides, attention pooling) with one
    # bottleneck per stage and width 8 (layer4 has 256 channels), 64 px images (2x2 before the pool).
    "mcl-tiny-rn": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
        "text_cfg": dict(_TEXT),
    },
}

_REGISTERED: dict[str, str] = {}


def _config_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"mcl-open-clip-configs-{uid}"


def register_model_config(name: str, config: dict[str, Any]) -> None:
    """Make ``name`` an open_clip architecture, built from ``config`` (open_clip's JSON schema:
    ``embed_dim``, ``vision_cfg``, ``text_cfg``). open_clip's public API for this is
    ``add_model_config(path)``, so the config is written as ``<tmp>/mcl-open-clip-configs-<uid>/<name>.json``
    (atomically) and that file is added. Idempotent for the same config."""
    missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(config)
    if missing:
        raise ValueError(
            f"config for {name!r} lacks {sorted(missing)}; open_clip needs embed_dim, vision_cfg and text_cfg"
        )
    text = json.dumps(config, sort_keys=True)
    if _REGISTERED.get(name) == text:
        return
    folder = _config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)
    open_clip.add_model_config(path)
    _REGISTERED[name] = text


def register_tiny_configs() -> list[str]:
    """Register :data:`TINY_CONFIGS` with open_clip; return their names."""
    for name, config in TINY_CONFIGS.items():
        register_model_config(name, config)
    return list(TINY_CONFIGS)


@contextlib.contextmanager
def _quiet_root_logger():
    """open_clip logs 'No pretrained weights loaded' as a root warning; keep notebooks clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def create_clip(
    arch: str,
    pretrained: str | None = None,
    *,
    image_size: int | None = None,
    quick_gelu: bool | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> nn.Module:
    """An open_clip CLIP model, in train mode, on ``device``.

    arch: any name of ``open_clip.list_models()`` or of :data:`TINY_CONFIGS`. pretrained: None (random
    initialisation, seeded by ``seed``), an open_clip tag such as ``"openai"`` (downloaded by open_clip;
    set ``HF_HUB_OFFLINE=1`` without internet so it fails at once), or a local checkpoint file (a state
    dict, optionally under ``"state_dict"`` with ``module.`` prefixes, as the authors release theirs).
    image_size: overrides the configuration's input size. quick_gelu: None takes it from the tag
    (OpenAI's weights were trained with QuickGELU) and False otherwise; pass True for checkpoints
    fine-tuned from OpenAI weights, like the authors'.
    The architecture name is kept as ``model.mcl_arch`` (for :func:`tokenizer_for`).
    """
    register_tiny_configs()
    if arch not in open_clip.list_models():
        raise ValueError(
            f"arch={arch!r} is not an open_clip architecture; use one of {list(TINY_CONFIGS)} "
            f"or of open_clip.list_models() (e.g. 'RN50', 'ViT-B-32', 'ViT-L-14')"
        )
    if pretrained and not os.path.isfile(pretrained):
        tag = open_clip.get_pretrained_cfg(arch, pretrained)
        if not tag:
            raise ValueError(
                f"pretrained={pretrained!r} is neither a file nor a tag of {arch!r}; tags: "
                f"{open_clip.list_pretrained_tags_by_model(arch)}"
            )
        if quick_gelu is None:
            quick_gelu = bool(tag.get("quick_gelu", False))
    with torch.random.fork_rng(devices=[]), _quiet_root_logger():
        torch.manual_seed(seed)
        model = open_clip.create_model(
            arch,
            pretrained=pretrained or None,
            device=resolve_device(device),
            force_quick_gelu=bool(quick_gelu),
            force_image_size=image_size,
        )
    model.mcl_arch = arch
    return model


@functools.lru_cache(maxsize=8)
def get_tokenizer(arch: str) -> Callable[[list[str]], Tensor]:
    """open_clip's tokenizer for ``arch`` (cached): ``tokenizer(texts) -> int64 [N, context_length]``."""
    register_tiny_configs()
    return open_clip.get_tokenizer(arch)


def tokenizer_for(model: nn.Module) -> Callable[[list[str]], Tensor]:
    arch = getattr(unwrap(model), "mcl_arch", None)
    if arch is None:
        raise ValueError(
            "the model has no mcl_arch attribute (it was not made by create_clip); pass tokenizer="
        )
    return get_tokenizer(arch)


# ----------------------------------------------------------------------------------------- locking
def _is_resnet(visual: nn.Module) -> bool:
    return isinstance(visual, open_clip.modified_resnet.ModifiedResNet)


def image_groups(visual: nn.Module) -> list[list[nn.Module | nn.Parameter]]:
    """The image tower's layer groups, input to output, as the locking counts them.

    ViT (open_clip's grouping): [patch embedding, class/positional embedding, ln_pre], each block but
    the last, [last block, ln_post], [proj]. ModifiedResNet (ours; open_clip cannot keep ResNet
    groups unlocked): [stem], layer1, layer2, layer3, layer4, [attnpool] (the attention pool holds the
    output projection ``c_proj``).
    """
    if _is_resnet(visual):
        stem = [visual.conv1, visual.bn1, visual.conv2, visual.bn2, visual.conv3, visual.bn3]
        return [stem, [visual.layer1], [visual.layer2], [visual.layer3], [visual.layer4], [visual.attnpool]]
    if isinstance(visual, open_clip.transformer.VisionTransformer):
        return [
            [visual.conv1, visual.class_embedding, visual.positional_embedding, visual.ln_pre],
            *[[block] for block in visual.transformer.resblocks[:-1]],
            [visual.transformer.resblocks[-1], visual.ln_post],
            [visual.proj],
        ]
    raise ValueError(
        f"image groups of {type(visual).__name__} are not known; use a ViT or ModifiedResNet "
        "tower, or lock it with its own .lock()"
    )


def _set_trainable(items: Sequence[nn.Module | nn.Parameter], flag: bool) -> None:
    for item in items:
        params = [item] if isinstance(item, nn.Parameter) else item.parameters()
        for p in params:
            p.requires_grad_(flag)


def lock_image_tower(visual: nn.Module, unlocked_groups: int, *, freeze_bn_stats: bool = True) -> None:
    """Freeze the image tower except its last ``unlocked_groups`` groups (:func:`image_groups`).

    ViT: open_clip's ``visual.lock(unlocked_groups)`` (same groups). ModifiedResNet: every parameter
    frozen, then the last ``unlocked_groups`` of [stem, layer1..layer4, attnpool] unfrozen; with
    ``freeze_bn_stats`` the BatchNorm layers of the frozen groups become open_clip's
    ``FrozenBatchNorm2d`` (running statistics, as at eval time): a feature-aware batch comes from
    one pseudo-label group, so batch statistics in a frozen layer would be that group's, and the
    frozen part would not be frozen. (Their state-dict entries then lack ``num_batches_tracked``.)
    """
    groups = image_groups(visual)
    if not 0 <= unlocked_groups <= len(groups):
        raise ValueError(
            f"unlocked_groups={unlocked_groups} must be in [0, {len(groups)}] for this "
            f"{type(visual).__name__} ({len(groups)} groups)"
        )
    if not _is_resnet(visual):
        visual.lock(unlocked_groups=unlocked_groups)
        return
    _set_trainable([visual], False)
    if unlocked_groups:
        for group in groups[-unlocked_groups:]:
            _set_trainable(group, True)
    if freeze_bn_stats:
        locked = len(groups) - unlocked_groups
        if locked >= 1:
            for name in ("bn1", "bn2", "bn3"):
                setattr(visual, name, freeze_batch_norm_2d(getattr(visual, name)))
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4"), start=1):
            if i < locked:
                setattr(visual, name, freeze_batch_norm_2d(getattr(visual, name)))


def lock_clip(
    model: nn.Module,
    unlocked_groups: int | None,
    *,
    lock_text: bool = True,
    freeze_bn_stats: bool = True,
    train_logit_scale: bool = True,
) -> None:
    """The authors' locking: text tower frozen (``lock_text``), image tower frozen but its last
    ``unlocked_groups`` groups (None: the whole image tower trains). ``logit_scale`` trains, as in
    open_clip, unless ``train_logit_scale=False``."""
    model = unwrap(model)
    if lock_text:
        model.lock_text_tower(unlocked_layers=0)
    if unlocked_groups is not None:
        lock_image_tower(model.visual, unlocked_groups, freeze_bn_stats=freeze_bn_stats)
    model.logit_scale.requires_grad_(train_logit_scale)


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that ``requires_grad``, in ``named_parameters`` order."""
    return [name for name, p in unwrap(model).named_parameters() if p.requires_grad]


# ------------------------------------------------------------------------------------------ images
def image_size_of(model: nn.Module) -> tuple[int, int]:
    size = open_clip.get_model_preprocess_cfg(unwrap(model))["size"]
    return (size, size) if isinstance(size, int) else tuple(size)


def normalize_images(model: nn.Module, x: Tensor) -> Tensor:
    """float ``[N, 3, H, W]`` in [0, 1] -> the model's input: resized (bicubic, antialiased) to its image
    size when needed, then standardised with its mean and std (OpenAI's for open_clip models)."""
    cfg = open_clip.get_model_preprocess_cfg(unwrap(model))
    size = image_size_of(model)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
    mean = torch.tensor(cfg["mean"], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def load_image_files(paths: Sequence[str | os.PathLike], model: nn.Module) -> Tensor:
    """Read image files with open_clip's own evaluation transform for ``model`` (resize the shortest
    side, centre crop, standardise): float ``[N, 3, S, S]``, ready for :func:`encode_images`."""
    from PIL import Image

    cfg = open_clip.get_model_preprocess_cfg(unwrap(model))
    transform = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**cfg), is_train=False
    )
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(transform(image))
    return torch.stack(out) if out else torch.empty(0, 3, *image_size_of(model))


@torch.no_grad()
def encode_images(
    model: nn.Module,
    images: Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    normalize: bool = True,
) -> Tensor:
    """Image embeddings, float32 ``[N, D]`` on the CPU, without augmentation.

    images: uint8 ``[N, 3, H, W]`` (resized and standardised here, through :func:`mcl.train.embed`) or
    float ``[N, 3, S, S]`` already standardised (:func:`load_image_files`). normalize: L2-normalise rows
    (what MCL clusters); False gives the raw features (what the concatenation of stages takes).
    """
    device = resolve_device(device)
    net = unwrap(model)
    was_training = net.training
    net.eval()
    try:
        if images.dtype == torch.uint8:
            return embed(
                lambda x: net.encode_image(normalize_images(net, x)),
                images,
                batch_size=batch_size,
                device=device,
                normalize=normalize,
            )
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
            with autocast(device):
                out.append(net.encode_image(x).float().cpu())
        features = torch.cat(out) if out else torch.empty(0, net.visual.output_dim)
        return F.normalize(features, dim=1) if normalize else features
    finally:
        net.train(was_training)


@torch.no_grad()
def encode_texts(
    model: nn.Module,
    texts: Sequence[str],
    *,
    tokenizer: Callable | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "auto",
    normalize: bool = True,
) -> Tensor:
    """Text embeddings, float32 ``[N, D]`` on the CPU (L2-normalised when ``normalize``)."""
    device = resolve_device(device)
    net = unwrap(model)
    tokenizer = tokenizer or tokenizer_for(net)
    was_training = net.training
    net.eval()
    try:
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(list(texts[start : start + batch_size])).to(device)
            with autocast(device):
                out.append(net.encode_text(tokens).float().cpu())
        features = torch.cat(out)
        return F.normalize(features, dim=1) if normalize else features
    finally:
        net.train(was_training)


# ---------------------------------------------------------------------------------------- training
@dataclass
class ClipTrainConfig:
    """Hyper-parameters of one CLIP fine-tuning run (one MCL stage); defaults follow the authors' command
    (open_clip's defaults: AdamW, lr 5e-4, weight decay 0.2 on weights only, betas (0.9, 0.98),
    eps 1e-6, constant learning rate after a linear warm-up; 20 epochs)."""

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
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    checkpoint_dir: str | None = None
    # frozen text tower: encode every caption once per run instead of every step (same features; the text
    # tower has no dropout). None: when they fit in cache_text_max_gb; False never.
    cache_text: bool | None = None
    cache_text_max_gb: float = 4.0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs} must be >= 0")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size={self.batch_size} must be >= 2: a contrastive batch needs negatives"
            )
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be >= 0")
        if self.schedule not in ("const", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}; use 'const' or 'cosine'")
        if not self.max_logit_scale > 1:
            raise ValueError(f"max_logit_scale={self.max_logit_scale} must be > 1 (open_clip uses 100)")


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
    """Fine-tune (or train) ``model`` in place with the symmetric CLIP loss; return the history.

    images: uint8 ``[N, 3, H, W]`` (resized to the model's size and standardised per batch); captions:
    one string or a list of strings per image (one drawn per image and epoch). Batches come from
    ``batch_sampler`` (e.g. :class:`mcl.sampling.FeatureAwareBatchSampler`; per-rank batches) or a seeded
    shuffle (:class:`mcl.distributed.DistributedRandomBatchSampler` under torchrun). Only parameters with
    ``requires_grad`` train (lock first with :func:`lock_clip`). bf16 autocast on CUDA only,
    channels_last, a progress bar, a checkpoint every epoch in ``config.checkpoint_dir`` (written by
    rank 0) and resumption from it. ``augment(x, generator)`` optionally transforms a float [0, 1] batch.
    Under torchrun the model is wrapped in DDP here; the loss spans the global batch.
    History: mean loss per epoch, ``temperatures`` = 1 / exp(logit_scale) at each epoch's end, seconds.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    if len(captions) != len(images):
        raise ValueError(
            f"captions has {len(captions)} entries for {len(images)} images; give one (or a list) per image"
        )
    device = resolve_device(config.device)
    rank, world = get_rank(), get_world_size()
    seed_everything(config.seed)
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
    steps_per_epoch = n_batches(len(images), config.batch_size, batch_sampler)
    total = steps_per_epoch * config.epochs

    checkpoint, history, bar = resume(config, {"model": net}, optimizer, device, desc="CLIP", show=rank == 0)
    clock = time.perf_counter()
    for epoch in bar:
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        choice = pick_captions(offsets, generator)
        aug_gen = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + epoch * 97 + rank)
        net.train()
        total_loss, count = torch.zeros((), device=device), 0
        for index in epoch_batches(len(images), config.batch_size, epoch, config.seed, batch_sampler):
            step = epoch * steps_per_epoch + count
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, total)
            index = torch.as_tensor(index)
            x = images[index].to(device, non_blocking=True).float().div_(255)
            if augment is not None:
                x = augment(x, aug_gen)
            x = normalize_images(net, x).contiguous(memory_format=torch.channels_last)
            rows = choice[index]
            with autocast(device):
                if text_cache is None:
                    loss = clip_batch_loss(wrapped, x, tokens[rows].to(device, non_blocking=True))
                else:
                    loss = clip_batch_loss(
                        wrapped, x, text_features=text_cache[rows].to(device, non_blocking=True)
                    )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                net.logit_scale.clamp_(0, math.log(config.max_logit_scale))
            total_loss += loss.detach()
            count += 1
        if count == 0:
            raise ValueError(
                "the epoch had no batches: the data set or the sampler's groups are smaller than "
                "batch_size; lower batch_size"
            )
        history.losses.append((total_loss / count).item())
        history.temperatures.append(float(1 / net.logit_scale.detach().exp()))
        bar.set_postfix(loss=f"{history.losses[-1]:.3f}")
        history.seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        if checkpoint is not None:
            if rank == 0:
                save_checkpoint(checkpoint, epoch, {"model": net}, optimizer, history)
            barrier()
    history.seconds += time.perf_counter() - clock
    net.eval()
    return history


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


# -------------------------------------------------------------------------------------------- MCL
def data_digest(images: Tensor, captions: Sequence[str] | Sequence[Sequence[str]]) -> str:
    """sha256 (16 hex digits) of the images' bytes (of their file paths for a lazy
    :class:`mcl.data.image_text.ImageTextFolder`) and the captions: part of a run's cache key."""
    if isinstance(images, Tensor):
        digest = hashlib.sha256(images.contiguous().cpu().numpy().tobytes())
    else:
        digest = hashlib.sha256(json.dumps([str(p) for p in images.image_paths]).encode())
    digest.update(json.dumps([c if isinstance(c, str) else list(c) for c in captions]).encode())
    return digest.hexdigest()[:16]


def run_key(**settings: Any) -> str:
    """A short stable hash of JSON-able settings (architecture, config, data digest, ...): the name of a
    checkpoint folder that is only reused by the same run."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def mcl_clip(
    base: nn.Module,
    images: Tensor,
    captions: Sequence[str] | Sequence[Sequence[str]],
    config: ClipTrainConfig,
    *,
    n_stages: int = 4,
    k: int = 10,
    unlocked_groups: int | None = 6,
    init: str = "stage0",
    train_stage0: bool = False,
    combine: str = "product",
    small_groups: str = "drop",
    lock_text: bool = True,
    freeze_bn_stats: bool = True,
    embed_batch_size: int = 256,
    tokenizer: Callable | None = None,
    progress: bool = True,
) -> MultistageResult[nn.Module]:
    """MCL for CLIP (stages 0..n_stages-1) through :func:`mcl.stages.run_multistage`.

    base: the stage-0 model (pretrained, or trained by the caller); it is stage 0 as it is unless
    ``train_stage0`` (then it is fine-tuned like the other stages, with random batches, in place).
    Every later stage is a copy of the stage-0 weights (``init="stage0"``, the authors' choice) or of
    the previous stage (``init="previous"``), locked by :func:`lock_clip` (``unlocked_groups`` image
    groups trainable; text tower frozen when ``lock_text``), and fine-tuned by :func:`train_clip` with
    the feature-aware sampler over the pseudo-labels (product of the k-means ids, ``k`` clusters, of the
    L2-normalised image embeddings of the training images of every earlier stage). Under torchrun each
    rank embeds a shard and the embeddings are gathered for clustering. Checkpoints go to
    ``config.checkpoint_dir/stage<s>`` when set, so a rerun resumes (or skips finished stages).
    """
    if init not in ("stage0", "previous"):
        raise ValueError(
            f"init={init!r}; use 'stage0' (every stage starts from stage 0's weights) or 'previous'"
        )
    tokenizer = tokenizer or tokenizer_for(base)
    models: list[nn.Module] = []

    def stage_config(stage: int) -> ClipTrainConfig:
        folder = str(Path(config.checkpoint_dir) / f"stage{stage}") if config.checkpoint_dir else None
        return ClipTrainConfig(
            **{
                **asdict(config),
                "seed": config.seed + stage,
                "checkpoint_dir": folder,
                "progress": config.progress and progress,
            }
        )

    def build(stage: int) -> nn.Module:
        if stage == 0:
            model = base
            if train_stage0:
                lock_clip(model, unlocked_groups, lock_text=lock_text, freeze_bn_stats=freeze_bn_stats)
        else:
            model = copy.deepcopy(unwrap(base if init == "stage0" else models[-1]))
            lock_clip(model, unlocked_groups, lock_text=lock_text, freeze_bn_stats=freeze_bn_stats)
        models.append(model)
        return model

    def train(model: nn.Module, sampler: object | None, stage: int) -> TrainHistory | None:
        if stage == 0 and not train_stage0:
            return None
        return train_clip(
            model, images, captions, stage_config(stage), batch_sampler=sampler, tokenizer=tokenizer
        )

    def embed_stage(model: nn.Module) -> Tensor:
        return embed_sharded(
            lambda x: encode_images(model, x, batch_size=embed_batch_size, device=config.device), images
        )

    return run_multistage(
        n_stages=n_stages,
        build=build,
        train=train,
        embed=embed_stage,
        batch_size=config.batch_size,
        k=k,
        combine=combine,
        small_groups=small_groups,
        seed=config.seed,
        rank=get_rank(),
        world_size=get_world_size(),
        progress=progress,
    )


def save_clip(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the model's state dict (the DDP wrapper removed) atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(unwrap(model).state_dict(), tmp)
    tmp.replace(path)
    return path
