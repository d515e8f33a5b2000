"""CLIP models through open_clip: creation (pretrained or random), tokenizers, the tiny configurations for
CPU scale, and image/text embeddings.

Models are open_clip's: any architecture name (``RN50``, ``ViT-B-32``, ``ViT-L-14``, ...) with
``pretrained`` a tag (``"openai"``, downloaded by open_clip) or a local file, and the small
configurations registered here for CPU scale (:data:`TINY_CONFIGS`: ``mcl-tiny-vit``,
``mcl-tiny-rn``). The tokenizer is open_clip's BPE tokenizer for every architecture (its
vocabulary ships inside the package and loads offline); the tiny configurations
keep its 49,408-token vocabulary, which costs a 3.2 M-parameter embedding table, so the same
prompts work for every model.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcl.device import autocast, resolve_device
from mcl.distributed import unwrap
from mcl.files import atomic_write
from mcl.models import embed

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

    images: uint8 ``[N, 3, H, W]`` (resized and standardised here, through :func:`mcl.models.embed`) or
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


def save_clip(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the model's state dict (the DDP wrapper removed) atomically; return the path."""
    return atomic_write(path, lambda f: torch.save(unwrap(model).state_dict(), f))
