"""Batched image augmentations on tensors, on the input's device (SimCLR's recipe, Chen et al. 2020).

One call augments a whole batch ``[B, C, H, W]`` with parameters drawn per sample:

1. random resized crop (area fraction ~ U(scale), log aspect ratio ~ U(log ratio), torchvision's
   10-attempt rule with a centre-crop fallback, integer pixel boxes), horizontal flip and resize
   to ``size``, all three done by ONE bilinear ``F.grid_sample`` with a per-sample affine grid
   (a flip is a negative x scale). There is no antialiasing: a crop larger than ``size`` is
   point-sampled bilinearly, as ``resized_crop(..., antialias=False)`` would;
2. colour jitter with probability ``jitter_p``: brightness, contrast, saturation and hue, in a
   random order drawn per sample (as torchvision's ``ColorJitter``; ``random_order=False`` keeps
   that order fixed); hue is rotated in HSV space (h -> h + shift mod 1 with s and v kept, in
   closed form), as torchvision's ``adjust_hue`` does, not by a YIQ rotation;
3. grayscale with probability ``gray_p`` using the ITU-R 601 luma weights (0.299, 0.587, 0.114).

For one channel, saturation, hue and grayscale are no-ops (as in torchvision). The colour ops equal
torchvision's ``adjust_*`` per image (torchvision weighs red by 0.2989 instead of 0.299). Samples that
share a colour sequence (jitter order, grayscale) are processed together; reading the group sizes
costs two host syncs per call on CUDA. ``sample_params`` and ``apply`` split the drawing from the
work, for tests and for reusing one draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Jitter operation ids, the values of ``params["order"]``.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


def _pair(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"{name}={size!r} must be a positive int or a pair (height, width) of positive ints")
    return pair  # type: ignore[return-value]


def to_float_image(x: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]; floating tensors are returned unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise ValueError(f"x.dtype={x.dtype} is not supported; pass uint8 in [0, 255] or float in [0, 1]")
    return x


def _per_sample(factor: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A scalar or ``[B]`` factor as a ``[B, 1, 1, 1]`` tensor in x's dtype and device."""
    f = torch.as_tensor(factor, dtype=x.dtype, device=x.device)
    return f.reshape(-1, 1, 1, 1) if f.dim() else f


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of ``[B, 3, H, W]`` -> ``[B, 1, H, W]`` (C=1: itself)."""
    if x.shape[-3] == 1:
        return x
    r, g, b = x.unbind(dim=-3)
    return r.mul(LUMA_WEIGHTS[0]).add_(g, alpha=LUMA_WEIGHTS[1]).add_(b, alpha=LUMA_WEIGHTS[2]).unsqueeze(-3)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """``clamp(f * x, 0, 1)`` with one factor per sample (``[B]``) or one for all."""
    return x.mul(_per_sample(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """``clamp(f * x + (1 - f) * m, 0, 1)``, m = mean luma of each image (= luma of the channel means)."""
    means = x.mean(dim=(-2, -1), keepdim=True)  # [B, C, 1, 1]
    mean = rgb_to_grayscale(means).mean(dim=-3, keepdim=True)  # [B, 1, 1, 1]
    return torch.lerp(mean, x, _per_sample(factor, x)).clamp_(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """``clamp(f * x + (1 - f) * luma(x), 0, 1)`` per pixel; identity for one channel."""
    if x.shape[-3] == 1:
        return x
    return torch.lerp(rgb_to_grayscale(x), x, _per_sample(factor, x)).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """Rotate the HSV hue by ``shift`` turns (in [-0.5, 0.5]); identity for one channel.

    HSV keeps ``v = max`` and ``delta = max - min``. The hue in sixths of a turn is
    ``h6 = (g - b)/delta`` (max R), ``2 + (b - r)/delta`` (max G), ``4 + (r - g)/delta`` (max B);
    after ``h6 <- (h6 + 6 shift) mod 6`` the closed form of HSV -> RGB gives each channel as
    ``min + delta * w(h6)`` with the trapezoids ``w_R = clamp(|h6 - 3| - 1, 0, 1)``,
    ``w_G = clamp(2 - |h6 - 2|, 0, 1)``, ``w_B = clamp(2 - |h6 - 4|, 0, 1)``.
    """
    if x.shape[-3] == 1:
        return x
    r, g, b = x.unbind(dim=-3)
    v = torch.maximum(torch.maximum(r, g), b)
    lo = torch.minimum(torch.minimum(r, g), b)
    delta = v - lo
    num = torch.where(
        v == r, g - b, torch.where(v == g, (b - r).add_(delta, alpha=2.0), (r - g).add_(delta, alpha=4.0))
    )
    shift6 = 6.0 * torch.as_tensor(shift, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    h6 = num.div_(delta.clamp_min(1e-12)).add_(shift6)  # in [-4, 8)
    h6 = h6.sub_(torch.floor(h6 * (1.0 / 6.0)).mul_(6.0)).unsqueeze(-3)  # mod 6: [B, 1, H, W] in [0, 6)
    consts = torch.tensor(
        [[3.0, 1.0, -1.0], [2.0, -1.0, 2.0], [4.0, -1.0, 2.0]], dtype=x.dtype, device=x.device
    )  # per channel: centre, sign, offset of w = clamp(offset + sign * |h6 - centre|, 0, 1)
    centre, sign, offset = consts.reshape(3, 3, 1, 1).unbind(dim=1)
    w = torch.addcmul(offset, sign, (h6 - centre).abs_()).clamp_(0.0, 1.0)
    return torch.addcmul(lo.unsqueeze(-3), delta.unsqueeze(-3), w)  # in [min, max], so in [0, 1]


def resized_crop_flip(
    x: torch.Tensor,
    boxes: torch.Tensor,
    flip: torch.Tensor,
    size: int | tuple[int, int],
) -> torch.Tensor:
    """Crop ``boxes`` ([B, 4] float: top, left, height, width in pixels), flip where ``flip`` ([B] bool),
    and resize to ``size``, as one bilinear ``grid_sample`` (align_corners=False, border padding).

    Output pixel (i, j) samples source pixel ``top + (i + 0.5) h / h_out - 0.5`` (and likewise in x),
    which is what ``interpolate(crop, size, mode="bilinear")`` does inside the crop.
    """
    out_h, out_w = _pair(size, "size")
    in_h, in_w = x.shape[-2:]
    top, left, height, width = boxes.to(x.dtype).unsqueeze(-1).unbind(dim=1)  # each [B, 1]
    sign = 1.0 - 2.0 * flip.to(x.dtype).unsqueeze(-1)
    # Output pixel centres in normalised coordinates, u_j = (2j + 1)/w_out - 1, mapped by the affine
    # x = (w / W) u + (2 left + w)/W - 1 (flip: -u); likewise in y. Written out instead of
    # F.affine_grid, whose batched 3x3 matmul is slower on the CPU than these broadcasts.
    u = (torch.arange(out_w, dtype=x.dtype, device=x.device) * 2.0 + 1.0) / out_w - 1.0
    v = (torch.arange(out_h, dtype=x.dtype, device=x.device) * 2.0 + 1.0) / out_h - 1.0
    gx = (sign * width / in_w) * u + ((2.0 * left + width) / in_w - 1.0)  # [B, w_out]
    gy = (height / in_h) * v + ((2.0 * top + height) / in_h - 1.0)  # [B, h_out]
    grid = torch.stack(
        (gx.unsqueeze(1).expand(-1, out_h, -1), gy.unsqueeze(2).expand(-1, -1, out_w)), dim=-1
    )  # [B, h_out, w_out, 2], (x, y) order as grid_sample expects
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class SimCLRAugment(torch.nn.Module):
    """SimCLR's augmentation of a batch: crop+flip+resize, colour jitter, grayscale (see the module doc).

    ``forward(x [B, C, H, W] uint8 or float in [0, 1]) -> float [B, C, *size] in [0, 1]``, on x's
    device; uint8 becomes float32, floating dtypes are kept. Random numbers come from ``generator``
    (on its own device; parameters are then moved to x's device) or torch's global RNG.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        random_order: bool = True,
    ) -> None:
        super().__init__()
        self.size = _pair(size, "size")
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
            raise ValueError(f"scale={scale!r} must be (lo, hi) with 0 < lo <= hi, e.g. (0.08, 1.0)")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio={ratio!r} must be (lo, hi) with 0 < lo <= hi, e.g. (3/4, 4/3)")
        for name, p in (("flip_p", flip_p), ("jitter_p", jitter_p), ("gray_p", gray_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}={p!r} is a probability; use a value in [0, 1]")
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if v < 0:
                raise ValueError(f"{name}={v!r} must be >= 0 (factor drawn from [max(0, 1 - v), 1 + v])")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue={hue!r} must be in [0, 0.5] (shift drawn from [-hue, hue] turns)")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip_p, self.jitter_p, self.gray_p = float(flip_p), float(jitter_p), float(gray_p)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.random_order = random_order

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, scale={self.scale}, ratio={self.ratio}, flip_p={self.flip_p}, "
            f"brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, "
            f"hue={self.hue}, jitter_p={self.jitter_p}, gray_p={self.gray_p}, "
            f"random_order={self.random_order}"
        )

    def _sample_boxes(
        self, batch: int, height: int, width: int, rand: Callable[..., torch.Tensor], attempts: int = 10
    ) -> torch.Tensor:
        """torchvision's RandomResizedCrop rule, vectorised: [B, 4] float (top, left, height, width)."""
        area = height * width
        target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * rand(batch, attempts))
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lo + (hi - lo) * rand(batch, attempts))
        w = torch.sqrt(target * aspect).round()
        h = torch.sqrt(target / aspect).round()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first valid attempt (0 if none)
        w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], ok.any(dim=1)
        # Fallback: the largest centred crop whose aspect ratio lies within `ratio`.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            fw, fh = round(height * self.ratio[1]), height
        else:
            fw, fh = width, height
        w = torch.where(found, w, torch.full_like(w, float(fw)))
        h = torch.where(found, h, torch.full_like(h, float(fh)))
        top = torch.floor(rand(batch) * (height - h + 1))
        left = torch.floor(rand(batch) * (width - w + 1))
        top = torch.where(found, top, torch.full_like(top, float((height - fh) // 2)))
        left = torch.where(found, left, torch.full_like(left, float((width - fw) // 2)))
        return torch.stack((top, left, h, w), dim=1)

    def sample_params(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        *,
        image_size: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """Draw every random choice for a batch of ``batch`` images of ``image_size`` = (H, W).

        Returns float32/bool/long tensors on ``device``: ``boxes`` [B, 4] (top, left, height, width,
        integer pixel values), ``flip``, ``jitter``, ``gray`` [B] bool, ``brightness``, ``contrast``,
        ``saturation`` [B] factors, ``hue`` [B] shift in turns, ``order`` [B, 4] long (a permutation
        of BRIGHTNESS, CONTRAST, SATURATION, HUE per sample; the identity when ``random_order`` is off).
        """
        if batch < 0:
            raise ValueError(f"batch={batch!r} must be >= 0")
        height, width = _pair(tuple(image_size), "image_size")
        draw_device = generator.device if generator is not None else torch.device(device)

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=draw_device)

        def factor(v: float) -> torch.Tensor:
            lo = max(0.0, 1.0 - v)
            return lo + (1.0 + v - lo) * rand(batch)

        params = {"boxes": self._sample_boxes(batch, height, width, rand)}
        params["flip"] = rand(batch) < self.flip_p
        params["jitter"] = rand(batch) < self.jitter_p
        params["brightness"] = factor(self.brightness)
        params["contrast"] = factor(self.contrast)
        params["saturation"] = factor(self.saturation)
        params["hue"] = self.hue * (2.0 * rand(batch) - 1.0)
        if self.random_order:
            params["order"] = rand(batch, 4).argsort(dim=1)
        else:
            params["order"] = torch.arange(4, device=draw_device).expand(batch, 4).clone()
        params["gray"] = rand(batch) < self.gray_p
        return {k: v.to(device) for k, v in params.items()}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment ``x`` [B, C, H, W] with given parameters (from :meth:`sample_params`)."""
        x = to_float_image(x)
        out = resized_crop_flip(x, params["boxes"], params["flip"], self.size)
        fns = {
            BRIGHTNESS: adjust_brightness,
            CONTRAST: adjust_contrast,
            SATURATION: adjust_saturation,
            HUE: adjust_hue,
        }
        factors = {
            BRIGHTNESS: params["brightness"],
            CONTRAST: params["contrast"],
            SATURATION: params["saturation"],
            HUE: params["hue"],
        }
        # Each sample applies the jitter ops in its own order (if jittered), then grayscale (if drawn).
        # Step ``pos`` of every order is done with one call per op on the samples whose ``pos``-th op it
        # is: at most 16 batched calls, whatever the batch size.
        order, jitter = params["order"], params["jitter"]
        for pos in range(order.shape[1]):
            for op, fn in fns.items():
                idx = torch.nonzero(jitter & (order[:, pos] == op)).flatten()
                if idx.numel():
                    out[idx] = fn(out[idx], factors[op][idx])
        gray = torch.nonzero(params["gray"]).flatten()
        if gray.numel() and out.shape[1] > 1:
            out[gray] = rgb_to_grayscale(out[gray]).expand(-1, out.shape[1], -1, -1)
        return out.clamp_(0.0, 1.0)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` [B, C, H, W] (uint8, or float in [0, 1]) -> float [B, C, *size] in [0, 1]."""
        if x.dim() != 4:
            raise ValueError(f"x.shape={tuple(x.shape)} must be [B, C, H, W]; add a batch dimension")
        params = self.sample_params(x.shape[0], generator, x.device, image_size=tuple(x.shape[-2:]))
        return self.apply(x, params)


class CropFlip(SimCLRAugment):
    """The weak view: random resized crop + horizontal flip only (no colour jitter, no grayscale)."""

    def __init__(
        self,
        size: int | tuple[int, int],
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
    ) -> None:
        super().__init__(size, scale=scale, ratio=ratio, flip_p=flip_p, jitter_p=0.0, gray_p=0.0)


class NoAugment(torch.nn.Module):
    """No augmentation: ``forward(x, generator) -> x`` as float in [0, 1]. For methods whose views come from
    elsewhere, e.g. FD's original composition, where a viewmaker network alone makes both views."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return to_float_image(x)


class AugmentColumns(torch.nn.Module):
    """Augment only the first ``width`` columns of each image; pass the rest through (optionally shifted).

    ``forward(x [B, C, H, W]) -> float [B, C, H, W]``: ``augment`` (whose output size must be
    ``(H, width)``) on ``x[..., :width]``, concatenated with ``x[..., width:]``. With ``rest_shift=0``
    every view of an image shares those columns exactly; with ``rest_shift=s`` each view translates them
    by its own integer offsets in ``[-s, s]`` pixels (rows and columns, zero fill). On CIFAR-MNIST side by
    side (``width`` 32) the photo is augmented and the digit is the same in both views, or nearly so: the
    easiest shortcut a contrastive loss can take.
    """

    def __init__(self, augment: SimCLRAugment, width: int, rest_shift: int = 0) -> None:
        super().__init__()
        if not (isinstance(width, int) and width >= 1):
            raise ValueError(f"width={width!r} must be a positive int (the columns to augment)")
        if augment.size[1] != width:
            raise ValueError(f"augment.size={augment.size} must have width {width} (it fills those columns)")
        if not (isinstance(rest_shift, int) and rest_shift >= 0):
            raise ValueError(f"rest_shift={rest_shift!r} must be an int >= 0 (pixels)")
        self.augment, self.width, self.rest_shift = augment, width, rest_shift

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] <= self.width:
            raise ValueError(f"x.shape={tuple(x.shape)} must be [B, C, H, W] with W > width={self.width}")
        left = self.augment(x[..., : self.width], generator)
        rest = to_float_image(x[..., self.width :])
        if self.rest_shift:
            rest = random_translate(rest, self.rest_shift, generator)
        return torch.cat([left, rest], dim=-1)


def random_translate(x: torch.Tensor, shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of ``x`` ``[B, C, H, W]`` by integer offsets ``(dy, dx)`` drawn uniformly from
    ``[-shift, shift]`` per image; pixels shifted in are 0. ``out[b, :, i, j] = x[b, :, i - dy, j - dx]``."""
    b, c, h, w = x.shape
    offsets = torch.randint(-shift, shift + 1, (2, b), generator=generator, device=x.device)
    padded = F.pad(x, (shift, shift, shift, shift))
    rows = torch.arange(h, device=x.device) + shift - offsets[0, :, None]  # [B, H]
    cols = torch.arange(w, device=x.device) + shift - offsets[1, :, None]  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
