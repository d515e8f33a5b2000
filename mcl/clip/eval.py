"""Evaluating CLIP models: MMVP-VLM scoring, image-text retrieval recall, and model soups.

MMVP-VLM (Tong et al., CVPR 2024) as the benchmark defines it (and as the authors' notebook runs
it): for each statement, the text ``"a photo of " + statement`` is compared with the two images of
its pair; the softmax over the two images of ``100 * cosine similarity`` picks image 1 when its
probability is > 0.5, else image 2. A pair is right only when both statements pick their own image;
a pattern's accuracy is right pairs / pairs in the pattern (15), in %, and the benchmark's number is
the mean over the 9 patterns. For several MCL stages, the image features of every stage are
concatenated, and so are the text features, stage by stage, raw (not normalised per stage), then
each concatenation is L2-normalised once (:func:`mcl.stages.concat_features`, the authors' way).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from mcl.clip.models import encode_images, encode_texts, load_image_files, tokenizer_for
from mcl.distributed import unwrap
from mcl.stages import concat_features

PROMPT = "a photo of "
MMVP_SCALE = 100.0


@dataclass
class MMVPResult:
    """Scores of one model (or concatenation) on MMVP-VLM.

    per_pattern: pattern -> % of its pairs right; average: mean of per_pattern (%); right: bool ``[P]``
    per pair; probs: float ``[P, 2, 2]``, ``probs[p, j, i]`` = probability statement j gives image i.
    """

    per_pattern: dict[str, float]
    average: float
    right: Tensor
    probs: Tensor
    patterns: list[str] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        """per_pattern plus ``"average"``: one row of the paper's table."""
        return {**self.per_pattern, "average": self.average}

    def interval(self, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
        """``(average, low, high)`` in %: the bootstrap interval over pairs of :func:`bootstrap_average`."""
        return bootstrap_average(self.right, self.patterns, n_boot=n_boot, level=level, seed=seed)


def score_mmvp(
    image_features: Tensor,
    text_features: Tensor,
    patterns: Sequence[str],
    *,
    scale: float = MMVP_SCALE,
    pattern_order: Sequence[str] | None = None,
) -> MMVPResult:
    """Score pairs from their features.

    image_features: ``[P, 2, D]`` (image 0 and 1 of each pair); text_features: ``[P, 2, D]`` (statement j
    describes image j); both are L2-normalised here. patterns: the pattern of each pair (``P`` names).
    pattern_order: the order of ``per_pattern`` (default: first appearance).
    """
    if image_features.ndim != 3 or image_features.shape[1] != 2:
        raise ValueError(f"image_features must be [P, 2, D], got {tuple(image_features.shape)}")
    if text_features.shape != image_features.shape:
        raise ValueError(
            f"text_features must have image_features' shape {tuple(image_features.shape)}, got "
            f"{tuple(text_features.shape)}"
        )
    if len(patterns) != image_features.shape[0]:
        raise ValueError(f"patterns has {len(patterns)} names for {image_features.shape[0]} pairs")
    img = torch.nn.functional.normalize(image_features.float(), dim=-1)
    txt = torch.nn.functional.normalize(text_features.float(), dim=-1)
    logits = scale * torch.einsum("pjd,pid->pji", txt, img)  # [P, statement j, image i]
    probs = logits.softmax(dim=-1)
    picks_first = probs[:, :, 0] > 0.5  # the benchmark: image 1 if its probability > 0.5, else image 2
    right = picks_first[:, 0] & ~picks_first[:, 1]
    order = list(pattern_order) if pattern_order is not None else list(dict.fromkeys(patterns))
    unknown = set(patterns) - set(order)
    if unknown:
        raise ValueError(f"patterns {sorted(unknown)} are not in pattern_order={order}")
    per_pattern = {}
    for name in order:
        mask = torch.tensor([p == name for p in patterns])
        if mask.any():
            per_pattern[name] = 100.0 * right[mask].float().mean().item()
    average = sum(per_pattern.values()) / len(per_pattern)
    return MMVPResult(per_pattern, average, right, probs, list(patterns))


def bootstrap_average(
    right: Tensor,
    patterns: Sequence[str],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The MMVP average (%) of per-pair scores and its percentile bootstrap interval over pairs.

    right: ``[P]`` per-pair scores, bool (a pair right or not, :attr:`MMVPResult.right`) or float (e.g.
    the mean of ``right`` over seeds, or the difference of two models' ``right`` on the same pairs for
    a paired interval of a difference); patterns: the pattern of each pair. The average is the mean over
    patterns of each pattern's mean score, as :func:`score_mmvp`. Each of the ``n_boot`` replicates
    resamples pairs with replacement *within each pattern* (stratified: every pattern keeps its number of
    pairs, so every replicate averages the same patterns); the interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the replicates' averages. Seeded (numpy's ``default_rng(seed)``;
    the patterns draw in order of first appearance). Returns ``(average, low, high)`` in %.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1 (2000 typical)")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1), e.g. 0.95")
    scores = torch.as_tensor(right).detach().double().cpu().numpy()
    if scores.ndim != 1 or len(scores) != len(patterns) or not len(scores):
        raise ValueError(
            f"right must be [P] with P = len(patterns) = {len(patterns)} > 0, got {scores.shape}"
        )
    rng = np.random.default_rng(seed)
    names = np.asarray(patterns)
    replicates, means = np.zeros(n_boot), []
    order = list(dict.fromkeys(patterns))
    for name in order:
        own = scores[names == name]
        means.append(own.mean())
        replicates += own[rng.integers(len(own), size=(n_boot, len(own)))].mean(axis=1)
    replicates *= 100.0 / len(order)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return 100.0 * float(np.mean(means)), float(low), float(high)


def mmvp_features(
    model: nn.Module,
    pairs: Sequence,
    *,
    tokenizer: Callable | None = None,
    prompt: str = PROMPT,
    device: str | torch.device = "auto",
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Raw (unnormalised) features of MMVP pairs: image ``[P, 2, D]`` and text ``[P, 2, D]``.

    pairs: :class:`mcl.data.mmvp.MMVPPair` objects (``image_paths``: two files; ``statements``: two
    strings, statement j describing image j). Images go through open_clip's evaluation transform for the
    model; each statement becomes ``prompt + statement``.
    """
    paths = [path for pair in pairs for path in pair.image_paths]
    texts = [prompt + s for pair in pairs for s in pair.statements]
    if len(paths) != 2 * len(pairs) or len(texts) != 2 * len(pairs):
        raise ValueError("every MMVP pair needs exactly two images and two statements")
    images = load_image_files(paths, model)
    img = encode_images(model, images, batch_size=batch_size, device=device, normalize=False)
    txt = encode_texts(
        model, texts, tokenizer=tokenizer or tokenizer_for(model), device=device, normalize=False
    )
    return img.view(len(pairs), 2, -1), txt.view(len(pairs), 2, -1)


def evaluate_mmvp(
    models: nn.Module | Sequence[nn.Module],
    pairs: Sequence,
    *,
    tokenizer: Callable | None = None,
    pattern_order: Sequence[str] | None = None,
    device: str | torch.device = "auto",
) -> MMVPResult:
    """MMVP-VLM scores of one model, or of the concatenation of several (MCL's stages; see the module
    docstring). ``pairs`` as for :func:`mmvp_features`."""
    if isinstance(models, nn.Module):
        models = [models]
    if not models:
        raise ValueError("models is empty; pass a model or a list of stage models")
    feats = [mmvp_features(m, pairs, tokenizer=tokenizer, device=device) for m in models]
    return score_concatenated(feats, [p.pattern for p in pairs], pattern_order=pattern_order)


def score_concatenated(
    features: Sequence[tuple[Tensor, Tensor]],
    patterns: Sequence[str],
    *,
    pattern_order: Sequence[str] | None = None,
) -> MMVPResult:
    """MMVP scores of the concatenation of several stages' raw features ``[(image [P,2,D_s], text
    [P,2,D_s])]``:
    images concatenated stage by stage, texts likewise, each L2-normalised once."""
    if not features:
        raise ValueError("features is empty; pass one (image, text) pair of tensors per stage")
    p = features[0][0].shape[0]
    img = concat_features([f[0].reshape(2 * p, -1) for f in features]).view(p, 2, -1)
    txt = concat_features([f[1].reshape(2 * p, -1) for f in features]).view(p, 2, -1)
    return score_mmvp(img, txt, patterns, pattern_order=pattern_order)


# ------------------------------------------------------------------------------------------ retrieval
def retrieval_recall(
    image_features: Tensor, text_features: Tensor, text_to_image: Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@k (%) of image->text and text->image retrieval, several captions per image.

    image_features: ``[N, D]``; text_features: ``[M, D]``; text_to_image: int64 ``[M]``, the image each
    caption describes (values in 0..N-1). Cosine similarity (rows are L2-normalised here). Image->text:
    an image is a hit at k when any of its captions is among its k most similar captions;
    text->image: a caption is a hit at k when its image is among its k most similar images. Ties are
    broken by index (``torch.topk``). Returns ``{"i2t@k": ..., "t2i@k": ...}``.
    """
    n, m = image_features.shape[0], text_features.shape[0]
    text_to_image = torch.as_tensor(text_to_image, dtype=torch.long)
    if text_to_image.shape != (m,):
        raise ValueError(
            f"text_to_image must have one entry per caption ({m}), got {tuple(text_to_image.shape)}"
        )
    if m and (text_to_image.min() < 0 or text_to_image.max() >= n):
        raise ValueError(f"text_to_image must index images 0..{n - 1}")
    for k in ks:
        if not 1 <= k:
            raise ValueError(f"ks={list(ks)} must be positive")
    img = torch.nn.functional.normalize(image_features.float(), dim=1)
    txt = torch.nn.functional.normalize(text_features.float(), dim=1)
    sim = img @ txt.T  # [N, M]
    out = {}
    owner = text_to_image.to(sim.device)
    for k in ks:
        top_t = sim.topk(min(k, m), dim=1).indices  # [N, k] captions
        out[f"i2t@{k}"] = (
            100.0 * (owner[top_t] == torch.arange(n, device=sim.device)[:, None]).any(1).float().mean().item()
        )
    for k in ks:
        top_i = sim.T.topk(min(k, n), dim=1).indices  # [M, k] images
        out[f"t2i@{k}"] = 100.0 * (top_i == owner[:, None]).any(1).float().mean().item()
    return out


def flatten_captions(captions: Sequence[Sequence[str]]) -> tuple[list[str], Tensor]:
    """``[[c, ...] per image]`` -> (all captions, int64 ``[M]`` image index of each)."""
    texts, owner = [], []
    for i, caps in enumerate(captions):
        caps = [caps] if isinstance(caps, str) else list(caps)
        texts.extend(caps)
        owner.extend([i] * len(caps))
    return texts, torch.tensor(owner, dtype=torch.long)


def evaluate_retrieval(
    model: nn.Module,
    images: Tensor,
    captions: Sequence[Sequence[str]],
    *,
    ks: Sequence[int] = (1, 5, 10),
    tokenizer: Callable | None = None,
    device: str | torch.device = "auto",
) -> dict[str, float]:
    """Retrieval recall of a model on images (uint8 ``[N, 3, H, W]``) with a list of captions per image."""
    texts, owner = flatten_captions(captions)
    img = encode_images(model, images, device=device)
    txt = encode_texts(model, texts, tokenizer=tokenizer or tokenizer_for(model), device=device)
    return retrieval_recall(img, txt, owner, ks)


# ----------------------------------------------------------------------------------------- model soup
def soup_state_dicts(
    state_dicts: Sequence[Mapping[str, Tensor]], weights: Sequence[float] | None = None
) -> dict[str, Tensor]:
    """Weighted (default uniform) average of state dicts of one architecture (Wortsman et al., 2022).

    Every state dict must have the same keys with the same shapes (ValueError naming the keys that
    differ). Floating-point entries are averaged (in float64, cast back to their dtype); other entries
    (integer counters such as BatchNorm's ``num_batches_tracked``) are taken from the first.
    """
    if not state_dicts:
        raise ValueError("state_dicts is empty; pass the state dicts of at least one model")
    weights = [1.0 / len(state_dicts)] * len(state_dicts) if weights is None else list(weights)
    if len(weights) != len(state_dicts) or abs(sum(weights) - 1) > 1e-6 or min(weights) < 0:
        raise ValueError(f"weights={weights} must be {len(state_dicts)} non-negative numbers summing to 1")
    first = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=1):
        missing, extra = sorted(set(first) - set(sd)), sorted(set(sd) - set(first))
        shapes = sorted(
            key for key in set(first) & set(sd) if tuple(first[key].shape) != tuple(sd[key].shape)
        )
        if missing or extra or shapes:
            raise ValueError(
                f"model {i} does not share model 0's architecture: keys only in model 0: {missing}; "
                f"keys only in model {i}: {extra}; keys with different shapes: {shapes}"
            )
    soup = {}
    for key, value in first.items():
        if value.is_floating_point():
            acc = sum(
                w * sd[key].detach().to(torch.float64) for w, sd in zip(weights, state_dicts, strict=True)
            )
            soup[key] = acc.to(value.dtype)
        else:
            soup[key] = value.detach().clone()
    return soup


def model_soup(models: Sequence[nn.Module], weights: Sequence[float] | None = None) -> nn.Module:
    """A new model (a copy of the first) holding the average of the models' weights
    (:func:`soup_state_dicts`).
    The paper's retrieval table uses the uniform soup of the MCL-tuned CLIP stages."""
    if not models:
        raise ValueError("models is empty; pass the stage models to average")
    soup = copy.deepcopy(unwrap(models[0]))
    soup.load_state_dict(soup_state_dicts([unwrap(m).state_dict() for m in models], weights))
    return soup
