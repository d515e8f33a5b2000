"""Argument checks shared by the losses: errors that name the argument and the fix."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# The smallest temperature a loss accepts. Cosines lie in [-1, 1], so logits lie in [-1/t, 1/t]. Below
# 1e-4 they pass 1e4, where float16 (largest value 65504) is a factor of 6 from overflowing and a float32
# loss keeps only its first few digits; at 1e-30 the loss is 0.0 or 1e30, either way meaningless. The
# smallest temperature in common use is CLIP's 0.01 (open_clip clamps its logit scale at 100).
MIN_TEMPERATURE = 1e-4


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float; ValueError unless it is finite and >= :data:`MIN_TEMPERATURE`."""
    if isinstance(temperature, bool):
        raise ValueError(f"temperature={temperature!r} is a bool; pass a positive float such as 0.5")
    try:
        value = float(temperature)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"temperature={temperature!r} is not a number; pass a positive float such as 0.5"
        ) from err
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"temperature={temperature!r} must be finite and > 0; pass e.g. 0.5 (SimCLR) or 0.07 (CLIP)"
        )
    if value < MIN_TEMPERATURE:
        raise ValueError(
            f"temperature={temperature!r} is below {MIN_TEMPERATURE:g}: the logits (cosine / temperature) "
            f"would reach {1 / value:.3g} and the loss loses its precision; the smallest usual value is "
            "CLIP's 0.01 (SimCLR uses 0.5, MoCo-v2 0.2)"
        )
    return value


def is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_pair(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    """Two embedding matrices ``[N, D]`` of the same shape, N >= 2, D >= 1, finite."""
    for name, t in zip(names, (a, b), strict=True):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape [N, D], got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(
                f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}; flatten the features first"
            )
        if not t.is_floating_point():
            raise ValueError(f"{name} has dtype {t.dtype}; pass float embeddings ({name}.float())")
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; pass one row per sample in both"
        )
    if a.shape[0] < 2:
        raise ValueError(f"{names[0]} has N={a.shape[0]} rows; a contrastive loss needs N >= 2 (negatives)")
    if a.shape[1] < 1:
        raise ValueError(f"{names[0]} has D=0 columns; pass embeddings with at least one feature")
    check_finite(a, names[0])
    check_finite(b, names[1])


def check_matrix(t: object, name: str, *, min_rows: int = 1) -> Tensor:
    """``t`` as given when it is a 2-D floating tensor ``[N, D]`` with N >= ``min_rows`` and D >= 1, finite;
    ValueError naming ``name`` otherwise."""
    if not isinstance(t, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape [N, D], got {type(t).__name__}; use torch.as_tensor"
        )
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}; flatten the features first")
    if not t.is_floating_point():
        raise ValueError(f"{name} has dtype {t.dtype}; pass float embeddings ({name}.float())")
    if t.shape[0] < min_rows:
        raise ValueError(f"{name} has N={t.shape[0]} rows; pass at least {min_rows}")
    if t.shape[1] < 1:
        raise ValueError(f"{name} has D=0 columns; pass embeddings with at least one feature")
    check_finite(t, name)
    return t


def check_finite(t: Tensor, name: str) -> None:
    """ValueError naming ``name`` and the first bad row when ``t`` holds a NaN or an infinity."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        row = int((~torch.isfinite(t)).reshape(len(t), -1).any(dim=1).nonzero()[0])
        raise ValueError(
            f"{name} holds NaN or infinite values (first in row {row}); the model diverged or its input is "
            "broken: check the learning rate and the data"
        )
