"""The CLIP experiments of the book (chapters 06-08): presets per scale and the steps the chapters call.

Three scales (:data:`CLIP_PRESETS`):

* ``smoke`` (CI, seconds): a tiny ViT trained from scratch on a few hundred generated captioned scenes,
  two MCL stages, the generated MMVP-layout benchmark with 4 pairs per pattern.
* ``book`` (a laptop CPU, minutes): the same tiny ViT (``mcl-tiny-vit``, 64 px) trained from scratch
  on 4,000 generated captioned scenes (:func:`mcl.data.scenes.make_captioned_scenes`) as stage 0,
  then MCL stages fine-tuned from it with the feature-aware sampler. Unlike the paper, both towers
  train in every stage (``lock_text=False``, ``unlocked_groups=None``): a text tower trained from
  scratch on the same scenes suppresses the same details as the image tower, so locking it (the
  paper's choice for OpenAI's text tower) leaves the stages nothing new to align to. Scored on the generated
  MMVP-layout benchmark (:func:`mcl.data.mmvp.write_synthetic_mmvp`, 9 patterns x 150 pairs) and on
  retrieval of held-out scenes and of the COCO images of the offline mirror. No pretrained CLIP
  weights, MMVP images, CC12M or Flickr30k exist offline, so this is the closest faithful setting.
* ``paper`` (GPUs): the authors' recipe, as their command line gives it. Stage 0 is OpenAI's pretrained
  ``ViT-L-14`` (QuickGELU), used as it is (pass ``arch="RN50"`` for the paper's ResNet rows; which
  ResNet the paper used is not stated); every MCL stage fine-tunes from it on image-caption pairs in
  img2dataset's "files" layout (CC12M in the paper; the folder is ``$MCL_CLIP_TRAIN_ROOT``, else
  ``<data root>/cc12m``) for 20 epochs at 1000 pairs per GPU (the authors ran 8 GPUs with torchrun: a
  global batch of 8000), learning rate 5e-4 constant after 600 warm-up steps, text tower locked, the last
  6 image groups unlocked (on ViT-L-14: the projection and the last 5 of 24 blocks), K = 10, stages
  0..3. MMVP-VLM is read from ``$MCL_MMVP_ROOT`` (else ``<data root>/MMVP_VLM``), COCO val2017 and
  Flickr30k test through :mod:`mcl.data.captions`. It needs the internet once (open_clip downloads the
  weights) and GPUs.

Everything a chapter computes that is worth keeping (generated data, trained stages) lives in a cache
folder (:func:`clip_cache_dir`: ``_build/<scale>/cache/clip`` beside the results folder), keyed
(:func:`run_key`) by the settings, the data, the CPU threads and the source of the library modules
training imports, so chapter 07 reuses chapter 06's stage 0 and chapter 08 reuses both. Models are
cached through :func:`mcl.clip.train_clip`'s own checkpoints (a rerun loads the last epoch's checkpoint
and trains no further).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mcl.clip import ClipTrainConfig, create_clip, image_size_of, lock_clip, mcl_clip, train_clip
from mcl.clip.eval import MMVPResult, evaluate_retrieval, mmvp_features, model_soup, score_concatenated
from mcl.cluster import ami
from mcl.data.mmvp import PATTERN_ABBREVIATIONS, PATTERNS, MMVPPair, load_mmvp_vlm, write_synthetic_mmvp
from mcl.data.scenes import PROPERTIES, SceneSpec, caption, make_captioned_scenes, sample_scene
from mcl.files import atomic_write
from mcl.fit import TrainHistory, check_positive, load_file
from mcl.stages import MultistageResult
from mclbook import runcache
from mclbook.results import results_dir
from mclbook.runcache import data_digest, exclusive

SCALES = ("smoke", "book", "paper")
ENV_TRAIN_ROOT = "MCL_CLIP_TRAIN_ROOT"
ENV_MMVP_ROOT = "MCL_MMVP_ROOT"
# the held-out retrieval scenes are drawn from this seed offset, a stream disjoint from the training scenes'
HELD_OUT_SEED = 1_000_003


@dataclass(frozen=True)
class ClipPreset:
    """Every choice of the CLIP experiments at one scale (see the module docstring).

    Model: ``arch`` (open_clip name or ``mcl-tiny-*``), ``pretrained`` (None: random init, trained as
    stage 0; an open_clip tag or file), ``image_size`` (None: the architecture's).
    Training data: ``train_data`` "scenes" (``n_train`` generated scenes of ``scene_size`` px) or "folder"
    (img2dataset "files" layout at ``train_root``; ``n_train`` None = all).
    Stage 0: ``stage0_epochs`` (0: the model is stage 0 as it is, e.g. pretrained weights), its learning
    rate, and whether it trains the text tower (``stage0_lock_text``) and which image groups
    (``stage0_unlocked_groups``, None: all).
    MCL stages 1..n_stages-1: ``epochs``, ``batch_size``, ``lr``, ``k`` clusters per stage, ``combine``
    ("product" or "latest"), ``small_groups`` ("drop" or "merge"), ``unlocked_groups`` image groups and
    ``lock_text``, as :func:`mcl.clip.mcl_clip`.
    Evaluation: ``mmvp`` "synthetic" (written into the cache with ``mmvp_pairs_per_pattern`` pairs per
    pattern) or "real" (MMVP-VLM at ``mmvp_root``); ``retrieval`` data sets among "scenes" (``n_retrieval``
    held-out scenes, one caption each), "coco" (val2017) and "flickr30k" (Karpathy test); ``soup``:
    which stages the model soup averages ("all" or "mcl" = stages 1..).
    ``cpu_threads``: torch's intra-op threads on the CPU (None: torch's default). The tiny models' matrix
    products are too small to split, and threads competing for busy cores slow them down many times
    (bench/RESULTS.md).
    """

    scale: str
    arch: str = "mcl-tiny-vit"
    pretrained: str | None = None
    image_size: int | None = None
    train_data: str = "scenes"
    train_root: str | None = None
    n_train: int | None = 4000
    scene_size: int = 64
    stage0_epochs: int = 12
    stage0_lr: float = 1e-3
    stage0_lock_text: bool = False
    stage0_unlocked_groups: int | None = None
    epochs: int = 6
    batch_size: int = 128
    lr: float = 5e-4
    warmup_steps: int = 0
    n_stages: int = 4
    k: int = 4
    combine: str = "product"
    small_groups: str = "merge"
    unlocked_groups: int | None = None
    lock_text: bool = False
    mmvp: str = "synthetic"
    mmvp_root: str | None = None
    mmvp_pairs_per_pattern: int = 150  # one pair moves a pattern by 0.7 points
    retrieval: tuple[str, ...] = ("scenes", "coco")
    n_retrieval: int = 500
    soup: str = "all"
    data_seed: int = 0
    cpu_threads: int | None = 1
    notes: str = ""

    def __post_init__(self) -> None:
        checks = (
            ("scale", self.scale, SCALES),
            ("train_data", self.train_data, ("scenes", "folder")),
            ("combine", self.combine, ("product", "latest")),
            ("small_groups", self.small_groups, ("drop", "merge")),
            ("mmvp", self.mmvp, ("synthetic", "real")),
            ("soup", self.soup, ("all", "mcl")),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{name}={value!r}; use one of {allowed}")
        unknown = set(self.retrieval) - {"scenes", "coco", "flickr30k"}
        if unknown:
            raise ValueError(
                f"retrieval={self.retrieval!r} names {sorted(unknown)}; use scenes, coco, flickr30k"
            )
        # types and ranges first, so a chapter parameter such as epochs="abc" or 1.5 is named here, before
        # anything trains (ClipTrainConfig would refuse it only when the MCL stages start)
        ints = {
            "scene_size": 8,
            "stage0_epochs": 0,
            "epochs": 1,
            "batch_size": 2,
            "warmup_steps": 0,
            "n_stages": 2,
            "k": 2,
            "mmvp_pairs_per_pattern": 1,
            "n_retrieval": 1,
            "data_seed": 0,
        }
        optional_ints = {
            "image_size": 8,
            "n_train": 2,
            "stage0_unlocked_groups": 0,
            "unlocked_groups": 0,
            "cpu_threads": 1,
        }
        for name, low in [*ints.items(), *optional_ints.items()]:
            value = getattr(self, name)
            if value is None and name in optional_ints:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                hint = " (stage 0 and at least one MCL stage)" if name == "n_stages" else ""
                none = " or None" if name in optional_ints else ""
                raise ValueError(f"{name}={value!r} must be an int >= {low}{none}{hint}")
        for name in ("lr", "stage0_lr"):
            check_positive(name, getattr(self, name), "; e.g. 5e-4")
        for name in ("lock_text", "stage0_lock_text"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be True or False")
        if self.stage0_epochs == 0 and not self.pretrained:
            raise ValueError(
                "stage0_epochs=0 keeps a randomly initialised stage 0; give pretrained= or stage0_epochs > 0"
            )
        if self.train_data == "scenes" and (self.n_train is None or self.n_train < 2):
            raise ValueError(f"n_train={self.n_train!r} must be an int >= 2 for generated scenes")

    def stage_config(self, device: str, seed: int, progress: bool = True) -> ClipTrainConfig:
        """The :class:`~mcl.clip.ClipTrainConfig` of the MCL stages (checkpoints set by :func:`run_mcl`)."""
        return ClipTrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            seed=seed,
            device=device,
            progress=progress,
        )

    def parameters(self) -> dict[str, Any]:
        """The preset as a JSON-able dict (for results files)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


_BOOK = ClipPreset(scale="book", notes="tiny ViT from scratch on generated scenes; CPU minutes")

CLIP_PRESETS: dict[str, ClipPreset] = {
    "smoke": dataclasses.replace(
        _BOOK,
        scale="smoke",
        image_size=32,
        n_train=384,
        stage0_epochs=3,
        epochs=1,
        batch_size=64,
        n_stages=2,
        k=2,
        mmvp_pairs_per_pattern=4,
        n_retrieval=64,
        notes="CI: seconds; checks the plumbing, not the claims",
    ),
    "book": _BOOK,
    "paper": ClipPreset(
        scale="paper",
        arch="ViT-L-14",
        pretrained="openai",
        train_data="folder",
        n_train=None,
        stage0_epochs=0,
        epochs=20,
        batch_size=1000,  # per GPU; the authors' global batch is 8 x 1000
        lr=5e-4,
        warmup_steps=600,
        n_stages=4,
        k=10,
        small_groups="drop",
        unlocked_groups=6,
        lock_text=True,
        mmvp="real",
        mmvp_pairs_per_pattern=15,
        retrieval=("coco", "flickr30k"),
        cpu_threads=None,
        notes="the authors' recipe: OpenAI ViT-L-14, CC12M, 20 epochs per stage, K = 10; 8 GPUs in the paper",
    ),
}


def clip_preset(scale: str, **overrides: Any) -> ClipPreset:
    """The preset of ``scale`` with every override that is not None applied (a chapter's parameters)."""
    if scale not in CLIP_PRESETS:
        raise ValueError(f"scale={scale!r}; choose one of {SCALES}")
    fields = {f.name for f in dataclasses.fields(ClipPreset)} - {"scale"}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown preset override(s) {sorted(unknown)}; known: {sorted(fields)}")
    changes = {k: (tuple(v) if k == "retrieval" else v) for k, v in overrides.items() if v is not None}
    return dataclasses.replace(CLIP_PRESETS[scale], **changes)


def configure_threads(preset: ClipPreset, device: str | torch.device) -> int:
    """Set torch's CPU threads to ``preset.cpu_threads`` when running on the CPU; return the count in use."""
    if torch.device(device).type == "cpu" and preset.cpu_threads:
        torch.set_num_threads(preset.cpu_threads)
    return torch.get_num_threads()


# ------------------------------------------------------------------------------------------ caching
def clip_cache_dir(scale: str, cache: str | os.PathLike | None = None) -> Path:
    """``cache`` if given, else ``results_dir(scale).parent / "cache" / "clip"`` (created)."""
    folder = Path(cache) if cache is not None else results_dir(scale).parent / "cache" / "clip"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# The library modules CLIP training and its data come from; cache keys hash these and every module they import
# (mclbook.runcache.module_closure).
TRAINING_MODULES = ("mcl.clip.stages", "mcl.clip.train", "mcl.data.scenes", "mcl.data.image_text")


def run_key(**settings: Any) -> str:
    """The cache key of a CLIP run with JSON-able ``settings`` (:func:`mclbook.runcache.run_key`)."""
    return runcache.run_key(code=TRAINING_MODULES, **settings)


# --------------------------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    """The training image-caption pairs: ``images`` uint8 ``[N, 3, S, S]`` (or a lazy
    :class:`~mcl.data.image_text.ImageTextFolder`), one caption per image, and for generated scenes
    each property's value per image (``properties[p]``: ``[N]`` ints, index into the property's values)."""

    images: Any
    captions: list[str]
    properties: dict[str, np.ndarray] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.captions)

    def digest(self) -> str:
        return data_digest(self.images, self.captions)


def scene_specs(n: int, seed: int) -> list[SceneSpec]:
    """The specs of ``make_captioned_scenes(n, seed=seed)``'s scenes (same random stream)."""
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def scene_properties(specs: Sequence[SceneSpec]) -> dict[str, np.ndarray]:
    """Each property's value per scene as integer codes ``[N]`` (codes in order of first appearance
    of the sorted distinct values), for AMI against cluster ids."""
    out = {}
    for prop in PROPERTIES:
        values = [str(spec.value(prop)) for spec in specs]
        codes = {v: i for i, v in enumerate(sorted(set(values)))}
        out[prop] = np.array([codes[v] for v in values], dtype=np.int64)
    return out


def load_scenes(
    n: int, *, size: int, seed: int, cache: Path
) -> tuple[Tensor, list[str], dict[str, np.ndarray]]:
    """``n`` generated captioned scenes (cached in ``cache`` as a .pt file): uint8 ``[n, 3, size, size]``,
    captions, and property codes (:func:`scene_properties`)."""
    path = cache / f"scenes-n{n}-s{size}-seed{seed}.pt"
    with exclusive(path):
        if path.exists():
            saved = load_file(path)
            images, captions = saved["images"], saved["captions"]
        else:
            images, captions = make_captioned_scenes(n, size=size, seed=seed)
            atomic_write(path, lambda f: torch.save({"images": images, "captions": captions}, f))
    specs = scene_specs(n, seed)
    if [caption(s) for s in specs[:8]] != captions[:8]:
        raise RuntimeError(f"{path} does not match make_captioned_scenes(seed={seed}); delete it and rerun")
    return images, captions, scene_properties(specs)


def _data_root_path(env: str, default: str) -> Path:
    from mcl.data.sources import data_root

    return Path(os.environ[env]) if os.environ.get(env) else data_root() / default


def load_training_data(preset: ClipPreset, cache: Path) -> TrainingData:
    """The preset's training pairs: generated scenes, or an image-text folder (``train_root``, else
    ``$MCL_CLIP_TRAIN_ROOT``, else ``<data root>/cc12m``) decoded lazily at the model's image size."""
    if preset.train_data == "scenes":
        seed = preset.data_seed
        images, captions, props = load_scenes(preset.n_train, size=preset.scene_size, seed=seed, cache=cache)
        return TrainingData(images, captions, props, f"{preset.n_train} generated captioned scenes")
    from mcl.data.image_text import ImageTextFolder

    root = Path(preset.train_root) if preset.train_root else _data_root_path(ENV_TRAIN_ROOT, "cc12m")
    size = preset.image_size or 224
    folder = ImageTextFolder(root, size)
    if preset.n_train is not None and preset.n_train < len(folder):
        folder.image_paths = folder.image_paths[: preset.n_train]
        folder.captions = folder.captions[: preset.n_train]
    return TrainingData(folder, list(folder.captions), None, f"{len(folder)} image-caption pairs from {root}")


def load_mmvp(preset: ClipPreset, cache: Path, seed: int = 0) -> list[MMVPPair]:
    """The MMVP pairs: the generated benchmark in MMVP-VLM's layout (written into ``cache`` once), or
    the real MMVP-VLM (``mmvp_root``, else ``$MCL_MMVP_ROOT``, else ``<data root>/MMVP_VLM``)."""
    if preset.mmvp == "real":
        root = Path(preset.mmvp_root) if preset.mmvp_root else _data_root_path(ENV_MMVP_ROOT, "MMVP_VLM")
        return load_mmvp_vlm(root)
    root = cache / f"mmvp-synthetic-s{preset.scene_size}-p{preset.mmvp_pairs_per_pattern}-seed{seed}"
    with exclusive(root):
        if not (root / "Questions.csv").exists():
            tmp = Path(tempfile.mkdtemp(dir=cache, prefix="mmvp-tmp-"))
            write_synthetic_mmvp(
                tmp, size=preset.scene_size, pairs_per_pattern=preset.mmvp_pairs_per_pattern, seed=seed
            )
            if root.exists():  # a partial folder from an interrupted run
                shutil.rmtree(root)
            tmp.replace(root)
    return load_mmvp_vlm(root)


# ------------------------------------------------------------------------------------------ training
def stage0_key(preset: ClipPreset, data: TrainingData, seed: int) -> str:
    """The cache key of stage 0: architecture, weights, stage-0 recipe, data, seed and training code."""
    return run_key(
        arch=preset.arch,
        pretrained=preset.pretrained,
        image_size=preset.image_size,
        epochs=preset.stage0_epochs,
        lr=preset.stage0_lr,
        batch_size=preset.batch_size,
        lock_text=preset.stage0_lock_text,
        unlocked=preset.stage0_unlocked_groups,
        data=data.digest(),
        seed=seed,
    )


def train_stage0(
    preset: ClipPreset, data: TrainingData, *, device: str, seed: int, cache: Path, progress: bool = True
) -> tuple[nn.Module, TrainHistory | None]:
    """Stage 0: ``create_clip`` (random or pretrained), then, unless ``stage0_epochs == 0``, trained on
    ``data`` with random batches (text tower too unless ``stage0_lock_text``). Cached: a second call with
    the same settings loads the checkpoint. Returns the model (eval mode) and its history (None when
    untrained)."""
    model = create_clip(
        preset.arch, preset.pretrained, image_size=preset.image_size, device=device, seed=seed
    )
    if preset.stage0_epochs == 0:
        model.eval()
        return model, None
    lock_clip(model, preset.stage0_unlocked_groups, lock_text=preset.stage0_lock_text)
    config = ClipTrainConfig(
        epochs=preset.stage0_epochs,
        batch_size=preset.batch_size,
        lr=preset.stage0_lr,
        warmup_steps=preset.warmup_steps,
        seed=seed,
        device=device,
        progress=progress,
        checkpoint_dir=str(cache / f"stage0-{stage0_key(preset, data, seed)}"),
    )
    with exclusive(config.checkpoint_dir):
        history = train_clip(model, data.images, data.captions, config)
    return model, history


def train_control(
    preset: ClipPreset,
    stage0: nn.Module,
    data: TrainingData,
    *,
    device: str,
    seed: int,
    cache: Path,
    progress: bool = True,
) -> tuple[nn.Module, TrainHistory]:
    """The control for one MCL stage: a copy of stage 0 locked and fine-tuned exactly as an MCL stage
    (same epochs, learning rate, seed) but with random batches instead of the feature-aware sampler.
    What MCL adds beyond "train longer" is the difference between the two. Cached like the stages."""
    import copy

    model = copy.deepcopy(stage0)
    lock_clip(model, preset.unlocked_groups, lock_text=preset.lock_text)
    config = dataclasses.replace(
        preset.stage_config(device, seed + 1, progress),
        checkpoint_dir=str(cache / f"control-{mcl_key(preset, data, seed)}"),
    )
    with exclusive(config.checkpoint_dir):
        history = train_clip(model, data.images, data.captions, config)
    return model, history


def mcl_key(preset: ClipPreset, data: TrainingData, seed: int) -> str:
    """The cache key of the MCL stages (includes stage 0's key)."""
    return run_key(
        stage0=stage0_key(preset, data, seed),
        epochs=preset.epochs,
        batch_size=preset.batch_size,
        lr=preset.lr,
        warmup=preset.warmup_steps,
        n_stages=preset.n_stages,
        k=preset.k,
        combine=preset.combine,
        small_groups=preset.small_groups,
        unlocked=preset.unlocked_groups,
        lock_text=preset.lock_text,
    )


def run_mcl(
    preset: ClipPreset,
    stage0: nn.Module,
    data: TrainingData,
    *,
    device: str,
    seed: int,
    cache: Path,
    progress: bool = True,
) -> MultistageResult[nn.Module]:
    """MCL stages 0..n_stages-1 by :func:`mcl.clip.mcl_clip` from ``stage0`` (used as it is), every later
    stage fine-tuned from stage 0's weights with the feature-aware sampler. Checkpointed per stage in
    ``cache``: a rerun with the same settings loads the stages instead of training them (clustering is
    recomputed, deterministically)."""
    config = dataclasses.replace(
        preset.stage_config(device, seed, progress),
        checkpoint_dir=str(cache / f"mcl-{mcl_key(preset, data, seed)}"),
    )
    with exclusive(config.checkpoint_dir):
        return mcl_clip(
            stage0,
            data.images,
            data.captions,
            config,
            n_stages=preset.n_stages,
            k=preset.k,
            unlocked_groups=preset.unlocked_groups,
            lock_text=preset.lock_text,
            combine=preset.combine,
            small_groups=preset.small_groups,
            progress=progress,
        )


# ------------------------------------------------------------------------------------------- scoring
def abbreviate(per_pattern: Mapping[str, float]) -> dict[str, float]:
    """MMVP pattern names (``"Orientation"``, ...) -> the paper's column names (``"O&D"``, ...)."""
    return {PATTERN_ABBREVIATIONS.get(name, name): value for name, value in per_pattern.items()}


def mmvp_stage_scores(
    models: Sequence[nn.Module], pairs: Sequence[MMVPPair], *, device: str = "auto", cumulative: bool = True
) -> dict[str, MMVPResult]:
    """MMVP scores of every stage alone (``"stage s"``), of the concatenations of stages 0..s
    (``"stages 0-s"``, when ``cumulative``) and of all stages (``"MCL"``, the paper's MCL row; equal to
    ``"stages 0-(n-1)"``). Every model's features are computed once."""
    if not models:
        raise ValueError("models is empty; pass the stage models (stage 0 first)")
    feats = [mmvp_features(m, pairs, device=device) for m in models]
    names = [p.pattern for p in pairs]
    order = [p for p in PATTERNS if p in set(names)]
    out = {f"stage {s}": score_concatenated([f], names, pattern_order=order) for s, f in enumerate(feats)}
    if cumulative:
        for s in range(1, len(feats) - 1):
            out[f"stages 0-{s}"] = score_concatenated(feats[: s + 1], names, pattern_order=order)
    if len(feats) > 1:
        out["MCL"] = score_concatenated(feats, names, pattern_order=order)
    return out


N_BOOT = 2000  # bootstrap replicates of every MMVP interval


def mmvp_metrics(result: MMVPResult) -> dict[str, Any]:
    """A results-file entry: per-pattern accuracy (fraction in [0, 1], paper column names), the average with
    its bootstrap 95 % interval over pairs (:meth:`mcl.clip.eval.MMVPResult.interval`), and the number of
    pairs per pattern."""
    counts: dict[str, int] = {}
    for name in result.patterns:
        counts[name] = counts.get(name, 0) + 1
    _, low, high = result.interval(n_boot=N_BOOT)
    return {
        "per_pattern": {k: v / 100 for k, v in abbreviate(result.per_pattern).items()},
        "average": result.average / 100,
        "interval": [low / 100, high / 100],
        "pairs": abbreviate(counts),
    }


def mmvp_table(results: Mapping[str, MMVPResult], paper: Mapping[str, Mapping[str, float]] | None = None):
    """A pandas DataFrame in % (rows: the paper's rows, marked "paper: ...", then ours; columns: the nine
    patterns, the average and, for our rows, the bootstrap 95 % interval of the average over pairs), as the
    paper prints its MMVP tables."""
    import pandas as pd

    rows = {f"paper: {name}": dict(values) for name, values in (paper or {}).items()}
    rows.update({f"this run: {name}": abbreviate(r.row()) for name, r in results.items()})
    columns = [PATTERN_ABBREVIATIONS[p] for p in PATTERNS] + ["average"]
    frame = pd.DataFrame.from_dict(rows, orient="index")[columns].round(1)
    intervals = [""] * len(paper or {})
    for r in results.values():
        _, low, high = r.interval(n_boot=N_BOOT)
        intervals.append(f"[{low:.1f}, {high:.1f}]")
    frame["95 % interval"] = intervals
    return frame


# ------------------------------------------------------------------------ the CLIP search record
# (book/search_clip.py writes book/data/clip_search.json; chapter 7 reads it)
SEARCH_PRESET_ROW = "book preset"
SEARCH_LONGER_ROW = "book preset, 20 epochs per stage"
SEARCH_COLUMNS = ("stage 0", "stage 1", "control", "stage 0 + stage 1", "stage 0 + control")


def _cell(entry: Mapping[str, Any], unit: str = "") -> str:
    return f"{entry['average']:.1f}{unit} [{entry['interval'][0]:.1f}, {entry['interval'][1]:.1f}]"


def clip_search_table(record: Mapping[str, Any]):
    """The CLIP search record as a pandas DataFrame (index: setting and seed, or "mean s0, s1, ..." for the
    seed-averaged row of a setting run at several seeds): MMVP average % [95 % interval over pairs] of every
    column, and the paired gain of stage 0 + stage 1 over stage 0 + control."""
    import pandas as pd

    rows = []
    for name, row in record["candidates"].items():
        for seed, run in sorted(row["runs"].items(), key=lambda kv: int(kv[0])):
            rows.append(
                {"setting": name, "seed": seed}
                | {c: _cell(run["mmvp"][c]) for c in SEARCH_COLUMNS}
                | {"gain": _cell(run["gain"] | {"average": run["gain"]["mean"]})}
            )
        if len(row["runs"]) > 1:
            summary = row["summary"]
            rows.append(
                {"setting": name, "seed": "mean " + ", ".join(map(str, summary["seeds"]))}
                | {c: _cell(summary[c]) for c in SEARCH_COLUMNS}
                | {"gain": f"{summary['gain_mean']:.1f} (sd {summary['gain_seed_sd']:.1f} over seeds)"}
            )
    return pd.DataFrame(rows).set_index(["setting", "seed"])


def clip_search_numbers(record: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers chapter 7 quotes from the CLIP search record: the book preset's seed-averaged columns
    (text with intervals), its per-seed gains and their mean, whether the two concatenations' intervals
    overlap, the same gains with 20 epochs per stage, and how the settings run at seed 0 only compare with
    the book preset's seed-0 gain."""
    preset = record["candidates"][SEARCH_PRESET_ROW]
    summary, longer = preset["summary"], record["candidates"][SEARCH_LONGER_ROW]["summary"]
    others = {
        name: row["runs"]["0"]["gain"]["mean"]
        for name, row in record["candidates"].items()
        if list(row["runs"]) == ["0"]
    }
    seed0 = preset["runs"]["0"]["gain"]["mean"]
    return {
        "mcl": _cell(summary["stage 0 + stage 1"], " %"),
        "control": _cell(summary["stage 0 + control"], " %"),
        "stage1": _cell(summary["stage 1"], " %"),
        "control1": _cell(summary["control"], " %"),
        "apart": "overlap" if summary["intervals_overlap"] else "do not overlap",
        "gain": summary["gain_mean"],
        "gains": ", ".join(f"{g:.1f}" for g in summary["gain_per_seed"].values()),
        "longer_gain": longer["gain_mean"],
        "longer_gains": ", ".join(f"{g:.1f}" for g in longer["gain_per_seed"].values()),
        "target": record["target"],
        "n_others": len(others),
        "n_better": sum(g > seed0 for g in others.values()),
        "preset_seed0": seed0,
        "others_best": max(others.values()),
        "others_worst": min(others.values()),
    }


def search_commands(record: Mapping[str, Any]) -> list[str]:
    """The distinct commands that measured a CLIP search record's runs."""
    return sorted({run["command"] for row in record["candidates"].values() for run in row["runs"].values()})


def per_pattern_frame(results: Mapping[str, MMVPResult]):
    """Long-format DataFrame (model, pattern, accuracy %) for seaborn bar plots."""
    import pandas as pd

    return pd.DataFrame(
        [
            {"model": name, "pattern": pattern, "accuracy (%)": value}
            for name, r in results.items()
            for pattern, value in abbreviate(r.per_pattern).items()
        ]
    )


def chance_level() -> float:
    """The accuracy (%) of a model whose two statements pick images independently and uniformly at
    random: both right with probability 1/4."""
    return 25.0


def property_ami(cluster_ids: Sequence[Tensor], properties: Mapping[str, np.ndarray]):
    """AMI between each stage's k-means clusters and each scene property (rows: stages, columns:
    properties; a pandas DataFrame): which property each stage's pseudo-labels group the data by."""
    import pandas as pd

    return pd.DataFrame(
        {prop: [ami(ids.numpy(), labels) for ids in cluster_ids] for prop, labels in properties.items()},
        index=[f"stage {s}" for s in range(len(cluster_ids))],
    )


def group_examples(labels: Tensor, n_groups: int, per_group: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of ``per_group`` random members of each of the ``n_groups`` largest groups of ``labels``
    (``[N]`` ints), largest group first: for image grids of pseudo-label groups."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    out = []
    for value in values[np.argsort(-counts, kind="stable")][:n_groups]:
        members = np.flatnonzero(labels == value)
        out.append(rng.choice(members, size=min(per_group, len(members)), replace=False))
    return out


# ------------------------------------------------------------------------------------ soup, retrieval
def soup_of(preset: ClipPreset, models: Sequence[nn.Module]) -> nn.Module:
    """The uniform model soup of the stages the preset names (``soup``: "all" stages or the "mcl"
    stages 1..), by :func:`mcl.clip.eval.model_soup`."""
    chosen = list(models) if preset.soup == "all" or len(models) == 1 else list(models[1:])
    return model_soup(chosen).eval()


def retrieval_sets(
    preset: ClipPreset, image_size: int, *, seed: int = 0, cache: Path | None = None
) -> tuple[dict[str, tuple[Tensor, list[list[str]]]], dict[str, str]]:
    """The preset's retrieval sets as (uint8 images ``[N, 3, image_size, image_size]``, captions per
    image), and for each set that could not be loaded the reason (COCO and Flickr30k are skipped, with
    the loader's message, when no source has them)."""
    from mcl.data.captions import load_coco_captions, load_flickr30k
    from mcl.data.sources import DataNotFoundError

    sets: dict[str, tuple[Tensor, list[list[str]]]] = {}
    missing: dict[str, str] = {}
    for name in preset.retrieval:
        if name == "scenes":
            if cache is not None:
                images, captions, _ = load_scenes(
                    preset.n_retrieval, size=preset.scene_size, seed=seed + HELD_OUT_SEED, cache=cache
                )
            else:
                images, captions = make_captioned_scenes(
                    preset.n_retrieval, size=preset.scene_size, seed=seed + HELD_OUT_SEED
                )
            sets[name] = (images, [[c] for c in captions])
            continue
        try:
            found = load_coco_captions(size=image_size) if name == "coco" else load_flickr30k(size=image_size)
        except (DataNotFoundError, FileNotFoundError) as err:
            missing[name] = str(err).splitlines()[0]
            continue
        sets[name] = (found.load_images(), found.captions)
    return sets, missing


def retrieval_table(
    models: Mapping[str, nn.Module],
    sets: Mapping[str, tuple[Tensor, list[list[str]]]],
    *,
    device: str = "auto",
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, dict[str, float]]]:
    """Recall@k (fractions) of every model on every set: ``out[set][model]["i2t@k" | "t2i@k"]``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, (images, captions) in sets.items():
        out[set_name] = {
            name: {
                key: value / 100
                for key, value in evaluate_retrieval(model, images, captions, ks=ks, device=device).items()
            }
            for name, model in models.items()
        }
    return out


def model_image_size(model: nn.Module) -> int:
    """The side of the model's square input."""
    return image_size_of(model)[0]
