"""What the unimodal chapters share: a preset's data, training runs cached on disk, and probes.

Several chapters train the same models (MCL's stage 0 *is* the SimCLR run of the same seed; chapters 2-4
all look at the same Trifeature MCL run), so every run is stored under ``runs_dir(scale)/<key>/`` with
``key`` (:func:`mclbook.runcache.run_key`) a hash of the data set, its loader arguments, the recipe, the
seed, the variant, the CPU threads and the source of the library modules that training and the data set's
loader import. A rerun with the same inputs loads the finished checkpoint instead of training again; a
change to any of them trains anew. Runs are deterministic on the CPU for a seed and thread count, so a
cached model is the model the code would train. Each run is locked while it trains
(:func:`mclbook.runcache.exclusive`), so chapters executed side by side wait for a shared run instead of
training it twice. A :class:`Trainer` trains a chapter's runs (:class:`Run`, runs as data) ahead in worker
processes while the chapter goes through them. Probes are cached the same way (:func:`probe`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mcl.data.base import LabeledImages
from mcl.moco import MoCo, train_moco
from mcl.simclr import build_model, mcl_simclr, train_recipe
from mcl.stages import MultistageResult
from mclbook import runcache
from mclbook.results import results_dir
from mclbook.runcache import computing, cpu_slot, exclusive
from mclbook.scales import Preset

EXPERIMENTS = ("trifeature", "cifar_mnist", "celeba", "cifar10")


def load_data(name: str, preset: Preset, *, seed: int = 0) -> tuple[LabeledImages, LabeledImages]:
    """(train, test) of experiment ``name`` with the preset's loader arguments (``preset.data``).

    trifeature: ``n_train``/``n_test`` renders per combination at ``size`` px; cifar_mnist: ``n_train``/
    ``n_test`` images (None: the whole split) in ``composition``; celeba: faces at ``size`` px, optionally
    the first ``n_train``/``n_test``; cifar10: optionally ``n_train``/``n_test`` images drawn by ``seed``.
    """
    args = dict(preset.data)
    if name == "trifeature":
        return _trifeature(preset, seed)
    if name == "cifar_mnist":
        from mcl.data.cifar_mnist import load_cifar_mnist

        return tuple(  # type: ignore[return-value]
            load_cifar_mnist(
                split,
                composition=args["composition"],
                n=args[f"n_{split}"],
                digits_per_class=args.get("digits_per_class"),
                seed=seed,
            )
            for split in ("train", "test")
        )
    if name == "celeba":
        from mcl.data.celeba import load_celeba

        train, test = (load_celeba(split, size=args["size"], seed=seed) for split in ("train", "test"))
        return _first(train, args.get("n_train")), _first(test, args.get("n_test"))
    if name == "cifar10":
        from mcl.data.cifar import load_cifar10

        train, test = load_cifar10("train"), load_cifar10("test")
        return _random_subset(train, args.get("n_train"), seed), _random_subset(
            test, args.get("n_test"), seed
        )
    raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")


def _trifeature(preset: Preset, seed: int, **options: Any) -> tuple[LabeledImages, LabeledImages]:
    from mcl.data.trifeature import load_trifeature

    args = preset.data
    return tuple(  # type: ignore[return-value]
        load_trifeature(split, n_per_combination=args[f"n_{split}"], size=args["size"], seed=seed, **options)
        for split in ("train", "test")
    )


# loader arguments that are counts or sizes: a positive int when given
_COUNTS = ("n_train", "n_test", "size", "digits_per_class")


def with_data(setup: Preset, **data_overrides: Any) -> Preset:
    """A copy of ``setup`` whose loader arguments have the non-None ``data_overrides`` applied."""
    unknown = set(data_overrides) - set(setup.data)
    if unknown:
        raise ValueError(f"unknown data arguments {sorted(unknown)}; this preset takes {sorted(setup.data)}")
    for name, value in data_overrides.items():
        if (
            name in _COUNTS
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int) or value < 1)
        ):
            raise ValueError(f"{name}={value!r} must be a positive int (or None for the preset's value)")
    return replace(setup, data={**setup.data, **{k: v for k, v in data_overrides.items() if v is not None}})


def _first(data: LabeledImages, n: int | None) -> LabeledImages:
    return data if n is None or n >= len(data) else data.subset(slice(0, n))


def _random_subset(data: LabeledImages, n: int | None, seed: int) -> LabeledImages:
    if n is None or n >= len(data):
        return data
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.subset(index.sort().values)


def without_digit(data: LabeledImages) -> LabeledImages:
    """CIFAR-MNIST with the digit removed (the CIFAR-only control): the digit half of a side-by-side image
    is set to black, MNIST's background, so input size and architecture stay the same. Only the
    side-by-side composition has a digit-free counterpart this simple; overlay raises."""
    if data.images.shape[-1] != 2 * data.images.shape[-2]:
        raise ValueError("without_digit needs the side-by-side composition (images [N, 3, 32, 64])")
    images = data.images.clone()
    images[..., images.shape[-2] :] = 0
    return LabeledImages(images, {"cifar": data.labels["cifar"]}, {"cifar": data.label_names["cifar"]})


def load_cifar_only(preset: Preset, *, seed: int = 0) -> tuple[LabeledImages, LabeledImages]:
    """(train, test) of the CIFAR-only control of a cifar_mnist preset: the same photos and CIFAR labels
    as :func:`load_data`, without the digit. Side-by-side: :func:`without_digit` (``[N, 3, 32, 64]``, the
    digit half black); overlay: the photos alone (``[N, 3, 32, 32]``, the overlay's own size)."""
    composition = preset.data["composition"]
    side = with_data(preset, composition="side")
    pairs = load_data("cifar_mnist", side, seed=seed)
    if composition == "side":
        return tuple(without_digit(d) for d in pairs)  # type: ignore[return-value]
    if composition == "overlay":
        return tuple(  # type: ignore[return-value]
            LabeledImages(
                d.images[..., : d.images.shape[-2]].contiguous(),
                {"cifar": d.labels["cifar"]},
                {"cifar": d.label_names["cifar"]},
            )
            for d in pairs
        )
    raise ValueError(f"composition={composition!r} has no CIFAR-only control; use 'side' or 'overlay'")


def load_one_color(
    preset: Preset, color: str = "cyan", *, seed: int = 0
) -> tuple[LabeledImages, LabeledImages]:
    """(train, test) of the one-colour control of a trifeature preset: the renders of :func:`load_data`
    (same shapes, textures, rotations and positions) all drawn in ``color``, labels shape and texture."""
    return _trifeature(preset, seed, one_color=color)


# ------------------------------------------------------------------------------------------ cached runs
def runs_dir(scale: str) -> Path:
    """Where trained runs are kept: ``runs/`` beside the results folder (``_build/<scale>/runs``)."""
    return results_dir(scale).parent / "runs"


# The library modules a unimodal run's training and data come from; run keys hash these and every module they
# import (mclbook.runcache.module_closure).
TRAINING_MODULES = ("mcl.simclr", "mcl.moco", "mcl.schedules", "mcl.viewmaker")
LOADERS = {
    "trifeature": "mcl.data.trifeature",
    "cifar_mnist": "mcl.data.cifar_mnist",
    "celeba": "mcl.data.celeba",
    "cifar10": "mcl.data.cifar",
}


def run_key(name: str, **inputs: Any) -> str:
    """The cache key of a run on experiment ``name`` with JSON-able ``inputs`` (:func:`runcache.run_key`)."""
    loader = (LOADERS[name],) if name in LOADERS else ()
    return runcache.run_key(code=(*TRAINING_MODULES, *loader), **inputs)


def _data_inputs(name: str, preset: Preset, data_seed: int) -> dict[str, Any]:
    return {"experiment": name, "data": preset.data, "data_seed": data_seed}


def simclr(
    name: str,
    preset: Preset,
    train: LabeledImages,
    *,
    scale: str,
    seed: int = 0,
    device: str = "auto",
    variant: str = "simclr",
    data_seed: int = 0,
    progress: bool = True,
    **train_kwargs: Any,
) -> torch.nn.Module:
    """A SimCLR model of ``preset.recipe`` trained on ``train`` with ``seed``, loaded from the run cache when
    it was trained before. ``variant`` names runs on other data of the same experiment (e.g. the
    CIFAR-only control); ``train_kwargs`` go to :func:`mcl.simclr.train_simclr` and must then be part
    of the variant name."""
    key = run_key(
        name,
        **_data_inputs(name, preset, data_seed),
        recipe=asdict(preset.recipe),
        seed=seed,
        variant=variant,
    )
    with computing(runs_dir(scale) / key):
        model, _ = train_recipe(
            train,
            preset.recipe,
            seed=seed,
            device=device,
            progress=progress,
            checkpoint_dir=runs_dir(scale) / key,
            **train_kwargs,
        )
    return model


def multistage(
    name: str,
    preset: Preset,
    train: LabeledImages,
    *,
    scale: str,
    seed: int = 0,
    device: str = "auto",
    data_seed: int = 0,
    progress: bool = True,
) -> MultistageResult:
    """MCL with SimCLR (``preset.recipe.n_stages`` stages), each stage cached; stage 0 is the SimCLR run
    of :func:`simclr` with the same seed (same initialisation, same batches)."""
    recipe = preset.recipe
    data_inputs = _data_inputs(name, preset, data_seed)

    def stage_dir(stage: int) -> Path:
        if stage == 0:  # the plain SimCLR run
            return runs_dir(scale) / run_key(
                name, **data_inputs, recipe=asdict(recipe), seed=seed, variant="simclr"
            )
        return runs_dir(scale) / run_key(name, **data_inputs, recipe=asdict(recipe), seed=seed, stage=stage)

    return mcl_simclr(
        train,
        recipe,
        seed=seed,
        device=device,
        progress=progress,
        checkpoint_dir=stage_dir,
        stage_lock=lambda stage: computing(stage_dir(stage)),  # a finished stage 0 is free for simclr()
    )


BASELINES = ("ifm", "ts", "fd")
BASELINE_DEFAULTS: dict[str, dict[str, float | str | None]] = {
    "ifm": {"eps": 0.1, "alpha": 1.0},
    "ts": {"tau_min": 0.1, "tau_max": 1.0, "period": None},  # None: the recipe's epochs
    # FD: Tamkin et al.'s composition makes both views with the viewmaker alone, at temperature 0.07;
    # views="simclr+viewmaker" applies it after SimCLR's crop and jitter, at the recipe's temperature
    "fd": {"budget": 0.05, "width": 16, "views": "viewmaker", "temperature": 0.07},
}
FD_VIEWS = ("viewmaker", "simclr+viewmaker")


def baseline_options(method: str, preset: Preset, **options: float | None) -> dict[str, float]:
    """The baseline's settings: its defaults (:data:`BASELINE_DEFAULTS`) updated by the non-None
    ``options``; TS's period defaults to the recipe's epochs (one cosine cycle per run: the paper's 400 epochs
    would keep a short run near ``tau_max``). FD's viewmaker ``width`` 16 makes a step cost ~2.5 SimCLR
    steps (~7 at width 32; see bench/bench_baselines.py)."""
    if method not in BASELINES:
        raise ValueError(f"method={method!r} is not a baseline; choose one of {BASELINES}")
    unknown = set(options) - set(BASELINE_DEFAULTS[method])
    if unknown:
        raise ValueError(
            f"unknown {method} options {sorted(unknown)}; valid: {sorted(BASELINE_DEFAULTS[method])}"
        )
    merged = {**BASELINE_DEFAULTS[method], **{k: v for k, v in options.items() if v is not None}}
    if method == "ts" and merged["period"] is None:
        merged["period"] = preset.recipe.epochs
    if method == "fd" and merged["views"] not in FD_VIEWS:
        raise ValueError(f"views={merged['views']!r}; FD's views are one of {FD_VIEWS}")
    return merged  # type: ignore[return-value]


def baseline_kwargs(
    method: str, preset: Preset, in_channels: int, *, seed: int = 0, **options: float | None
) -> dict[str, Any]:
    """The :func:`mcl.simclr.train_simclr` keywords that turn SimCLR into baseline ``method``:
    ifm: ``loss_fn = ifm_loss(eps, alpha)``; ts: ``temperature_schedule``, a cosine between ``tau_min`` and
    ``tau_max`` with ``period`` epochs; fd: a fresh :class:`~mcl.viewmaker.Viewmaker` (L1 ``budget``,
    ``width``, initial weights from ``seed``) as ``view_transform``, and with ``views="viewmaker"`` no
    other augmentation (:class:`~mcl.augment.NoAugment`) and ``temperature`` as a constant schedule.
    Settings: :func:`baseline_options`."""
    from mcl.augment import NoAugment
    from mcl.losses import ifm_loss
    from mcl.schedules import TemperatureSchedule
    from mcl.viewmaker import Viewmaker

    o = baseline_options(method, preset, **options)
    if method == "ifm":
        return {"loss_fn": ifm_loss(o["eps"], o["alpha"])}
    if method == "ts":
        return {
            "temperature_schedule": TemperatureSchedule(
                tau_min=o["tau_min"], tau_max=o["tau_max"], period=o["period"]
            )
        }
    fd = {"view_transform": Viewmaker(in_channels, budget=o["budget"], width=int(o["width"]), seed=seed)}
    if o["views"] == "simclr+viewmaker":
        return fd
    tau = float(o["temperature"])
    return fd | {
        "augment": NoAugment(),
        "temperature_schedule": TemperatureSchedule(tau_min=tau, tau_max=tau, period=1),
    }


def baseline(
    name: str,
    preset: Preset,
    train: LabeledImages,
    method: str,
    *,
    scale: str,
    seed: int = 0,
    device: str = "auto",
    data_seed: int = 0,
    progress: bool = True,
    **options: float,
) -> torch.nn.Module:
    """SimCLR trained as baseline ``method`` (ifm | ts | fd, see :func:`baseline_kwargs`), cached."""
    kwargs = baseline_kwargs(method, preset, train.images.shape[1], seed=seed, **options)
    variant = f"{method}:{json.dumps(baseline_options(method, preset, **options), sort_keys=True)}"
    return simclr(
        name,
        preset,
        train,
        scale=scale,
        seed=seed,
        device=device,
        variant=variant,
        data_seed=data_seed,
        progress=progress,
        **kwargs,
    )


def moco(
    name: str,
    preset: Preset,
    train: LabeledImages,
    *,
    scale: str,
    seed: int = 0,
    device: str = "auto",
    queue_size: int = 4096,
    momentum: float = 0.99,
    temperature: float = 0.2,
    bn_splits: int = 8,
    data_seed: int = 0,
    progress: bool = True,
) -> MoCo:
    """A MoCo-v2 model (:class:`mcl.moco.MoCo`) around the recipe's network, trained on ``train`` with
    the recipe's epochs, batch size, learning rate and augmentations, cached like :func:`simclr`.

    MoCo's own knobs keep MoCo-v2's CIFAR values (queue 4096, momentum 0.99, temperature 0.2, 8 BatchNorm
    splits emulating shuffling BN); the recipe's temperature (SimCLR's) is not used. Probe it like any
    model: ``features`` is the query network's backbone."""
    knobs = {
        "queue_size": queue_size,
        "momentum": momentum,
        "temperature": temperature,
        "bn_splits": bn_splits,
    }
    key = run_key(
        name,
        **_data_inputs(name, preset, data_seed),
        recipe=asdict(preset.recipe),
        seed=seed,
        variant="moco",
        **knobs,
    )
    model = MoCo(build_model(preset.recipe, train.images.shape[1], seed), **knobs)
    config = preset.recipe.config(
        seed=seed, device=device, progress=progress, checkpoint_dir=str(runs_dir(scale) / key)
    )
    with computing(runs_dir(scale) / key):
        train_moco(model, train.images, config, augment=preset.recipe.augment(tuple(train.images.shape[2:])))
    return model.eval()


def ensemble_seeds(seed: int, n_models: int) -> list[int]:
    """Seeds of an equal-budget SimCLR ensemble: ``seed`` (shared with MCL's stage 0) and ``n_models - 1``
    others far from every seed a chapter uses for its repeats."""
    return [seed + 1000 * i for i in range(n_models)]


def random_model(preset: Preset, train: LabeledImages, *, seed: int = 0) -> torch.nn.Module:
    """The untrained network of the recipe (the random-initialisation control)."""
    return build_model(preset.recipe, train.images.shape[1], seed).eval()


# ------------------------------------------------------------------------------------------ cached probes
def probes_dir(scale: str) -> Path:
    """Where probe results are kept: ``probes/`` beside the results folder (``_build/<scale>/probes``)."""
    return results_dir(scale).parent / "probes"


# the library modules a probe's numbers come from (the key hashes them and every module they import)
PROBE_MODULES = ("mcl.evaluate",)


def probe(
    models: list[torch.nn.Module],
    train: LabeledImages,
    test: LabeledImages,
    *,
    scale: str,
    device: str = "auto",
) -> dict[str, float]:
    """:func:`mcl.evaluate.probe_models` of ``models`` (their backbone features concatenated, one linear
    probe per attribute), stored under ``probes_dir(scale)`` and read back when asked again.

    Chapters probe the same models (chapter 3's SimCLR rows are chapter 1's runs, chapter 2's concatenation
    is chapter 3's MCL row), and probing a concatenation of three models costs about half a training run on
    the CPU. The key hashes every model's weights (:func:`mclbook.runcache.weights_digest`), both splits'
    images and labels, the device, the CPU threads and the source of the probe's modules, so a stored probe
    is the probe the code would compute; it is computed under a lock, once, when chapters run side by side."""
    from mcl.device import resolve_device
    from mcl.evaluate import probe_models

    if not models:
        raise ValueError("models is empty; pass the model(s) whose features to probe")
    device = str(resolve_device(device))
    key = runcache.run_key(
        code=PROBE_MODULES,
        models=[runcache.weights_digest(model) for model in models],
        train=runcache.labeled_digest(train),
        test=runcache.labeled_digest(test),
        device=device,
    )
    path = probes_dir(scale) / f"{key}.json"
    with exclusive(path):
        if path.exists():
            return json.loads(path.read_text())
        with cpu_slot():
            accuracies = probe_models(models, train, test, device=device)
        partial = path.with_name(f"{path.name}.partial")
        partial.write_text(json.dumps(accuracies))
        partial.replace(path)  # whole or absent, even when the process is killed while writing
    return accuracies


# ------------------------------------------------------------------------------------------ runs as data
RUN_METHODS = ("simclr", "mcl", *BASELINES)


@dataclass(frozen=True)
class Run:
    """One cached training run of experiment ``name``, as data (so a worker process can train it): ``method``
    "simclr" (:func:`simclr`), "mcl" (every stage of :func:`multistage`) or a baseline ("ifm", "ts", "fd":
    :func:`baseline`, with ``options`` its settings as sorted ``(name, value)`` pairs); ``data_seed`` the
    seed :func:`load_data` drew its training data with."""

    name: str
    method: str
    seed: int = 0
    options: tuple[tuple[str, Any], ...] = ()
    data_seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in RUN_METHODS:
            raise ValueError(f"method={self.method!r}; a run is one of {RUN_METHODS}")


def trained(
    run: Run, preset: Preset, train: LabeledImages, *, scale: str, device: str = "auto", progress: bool = True
) -> list[torch.nn.Module]:
    """The models of ``run`` (MCL: one per stage; otherwise one), loaded from the run cache or trained on
    ``train`` (the data :func:`load_data` gives with ``seed=run.data_seed``)."""
    common = {
        "scale": scale,
        "seed": run.seed,
        "device": device,
        "progress": progress,
        "data_seed": run.data_seed,
    }
    if run.method == "simclr":
        return [simclr(run.name, preset, train, **common)]
    if run.method == "mcl":
        return list(multistage(run.name, preset, train, **common).models)
    return [baseline(run.name, preset, train, run.method, **common, **dict(run.options))]


def comparison_plan(
    name: str,
    preset: Preset,
    seeds: list[int],
    *,
    baselines: tuple[str, ...] | list[str] = (),
    **options: dict[str, float | str | None],
) -> dict[tuple[int, str], list[Run]]:
    """Chapter 3's runs on one data set: ``(seed, method) -> runs whose models are concatenated``, per seed
    SimCLR, MCL and the equal-budget SimCLR ensemble (:func:`ensemble_seeds`, as many models as MCL has
    stages), and at the first seed each of ``baselines`` ("ifm", "ts", "fd") with its ``options[key]``."""
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"baselines {sorted(unknown)} unknown; choose from {BASELINES}")
    plan: dict[tuple[int, str], list[Run]] = {}
    for s in seeds:
        plan[s, "SimCLR"] = [Run(name, "simclr", s)]
        plan[s, "MCL"] = [Run(name, "mcl", s)]
        plan[s, "SimCLR ensemble"] = [
            Run(name, "simclr", e) for e in ensemble_seeds(s, preset.recipe.n_stages)
        ]
        if s == seeds[0]:
            for key in BASELINES:
                if key in baselines:
                    settings = {k: v for k, v in options.get(key, {}).items() if v is not None}
                    plan[s, key.upper()] = [Run(name, key, s, tuple(sorted(settings.items())))]
    return plan


def training_workers() -> int:
    """Worker processes a :class:`Trainer` trains ahead with: ``MCL_WORKERS`` (the build sets it when it runs
    chapters side by side, see :mod:`mclbook.build`), else 1 (every run trains in the chapter's process)."""
    value = os.environ.get("MCL_WORKERS", "1")
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"MCL_WORKERS={value!r} must be an int >= 1 (worker processes that train ahead)")
    return int(value)


_WORKER_DATA: dict[str, tuple[LabeledImages, LabeledImages]] = {}


def _work(runs: list[Run], preset: Preset, scale: str, device: str, threads: int, probe_them: bool) -> None:
    """In a worker process: train ``runs`` (or load them) and, with ``probe_them``, probe their models."""
    torch.set_num_threads(threads)  # the run key holds the threads: the chapter's, so the chapter finds it
    data_key = json.dumps([runs[0].name, preset.data, runs[0].data_seed], sort_keys=True, default=str)
    if data_key not in _WORKER_DATA:
        _WORKER_DATA[data_key] = load_data(runs[0].name, preset, seed=runs[0].data_seed)
    train, test = _WORKER_DATA[data_key]
    models = [model for run in runs for model in trained(run, preset, train, scale=scale, device=device)]
    if probe_them:
        probe(models, train, test, scale=scale, device=device)


class Trainer:
    """Trains a chapter's runs ahead in ``workers`` processes while the chapter goes through them.

    The chapter asks for models in its own order (:meth:`models`); the workers take the groups of runs from
    the other end (:meth:`start`), and probe them when asked to. Every run (and probe) is computed under its
    lock in its cache, so whoever reaches it first computes it and the other one waits for it, then loads
    it: the two meet in the middle, every CPU stays busy, and each run is trained once, by the code path the
    chapter uses alone. Workers use the chapter's CPU
    threads, so a run has the key, and the weights, it would have had trained in the chapter.

    With one worker (the default outside the build, :func:`training_workers`) nothing runs ahead. Use it
    as a context manager: leaving the block waits for the workers and raises the first error of a run the
    chapter did not ask for."""

    def __init__(self, *, scale: str, device: str = "auto", workers: int | None = None) -> None:
        self.scale, self.device = scale, device
        self.workers = training_workers() if workers is None else workers
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers={workers!r} must be an int >= 1 (None: MCL_WORKERS, else 1)")
        self._pool: Any = None
        self._futures: list[Any] = []

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if self._pool is None:
            return
        self._pool.shutdown(wait=True, cancel_futures=kind is not None)
        if kind is None:
            for future in self._futures:
                future.result()

    def start(self, groups: list[tuple[list[Run], Preset]], *, probe: bool = False) -> None:
        """Hand ``(runs, their data set's preset)`` groups, in the order the chapter will ask for them, to the
        workers, which take them last first: a worker trains a group's runs and, with ``probe``, probes the
        concatenation of their models (:func:`probe`, stored for the chapter to read back). A group's
        runs share one data set and ``data_seed``."""
        if self.workers == 1:
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # forking a running kernel is not safe
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        threads = torch.get_num_threads()
        seen: set[tuple[Run, ...]] = set()
        for runs, preset in reversed(groups):
            if {(run.name, run.data_seed) for run in runs} != {(runs[0].name, runs[0].data_seed)}:
                raise ValueError(f"a group's runs must share one data set and data_seed, got {runs}")
            if tuple(runs) not in seen:
                seen.add(tuple(runs))
                self._futures.append(
                    self._pool.submit(_work, list(runs), preset, self.scale, self.device, threads, probe)
                )

    def models(self, runs: list[Run], preset: Preset, train: LabeledImages) -> list[torch.nn.Module]:
        """The models of ``runs``, in order (MCL's run gives one per stage): loaded when trained, waited for
        while a worker trains them, trained here otherwise."""
        return [
            model
            for run in runs
            for model in trained(run, preset, train, scale=self.scale, device=self.device)
        ]
