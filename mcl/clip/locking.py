"""Which parts of a CLIP train: the authors' recipe locks the text tower and the image tower except its
last N layer groups (the projection included)."""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
from open_clip.utils import freeze_batch_norm_2d
from torch import nn

from mcl.distributed import unwrap


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
    if (
        isinstance(unlocked_groups, bool)
        or not isinstance(unlocked_groups, int)
        or not 0 <= unlocked_groups <= len(groups)
    ):
        raise ValueError(
            f"unlocked_groups={unlocked_groups!r} must be an int in [0, {len(groups)}] for this "
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
