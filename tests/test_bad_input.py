"""Every reasonable mistake at a public entry point ends in one error that names the argument, parameter or
file (and how to fix it), raised before any training: a table of cases, each with the error type and the
words its message must contain.

``CASES`` need nothing but their arguments; ``FILE_CASES`` get a temporary folder and an environment of their
own (no mirror, no download), and check that nothing was written or run that should not have been.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mcl.cluster import kmeans
from mcl.data import sources
from mcl.data.base import LabeledImages
from mcl.evaluate import knn_accuracy, linear_probe, nearest_neighbours, probe_attributes
from mcl.fit import CheckpointError, LoopConfig, TrainConfig, fit, load_file
from mcl.losses import clip_loss, ifm_nt_xent, info_nce, nt_xent
from mcl.moco import MoCo
from mcl.sampling import FeatureAwareBatchSampler, combine_labels
from mcl.simclr import SimCLRRecipe, mcl_simclr, train_recipe
from mcl.stages import run_multistage
from mclbook import clip_experiments, experiments
from mclbook.parameters import check_parameters
from mclbook.scales import preset


@dataclass
class Case:
    id: str
    run: Callable[[], object]
    error: type[BaseException]
    names: tuple[str, ...]  # words the message must contain: the argument, parameter or file


def _z(n=6, d=4, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _with_nan(x, row=2):
    x = x.clone()
    x[row, 0] = float("nan")
    return x


X, Y = _z(40, 5, 1), torch.arange(40) % 2
TINY = LabeledImages(
    torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)),
    {"y": torch.arange(24) % 2},
)
RECIPE = SimCLRRecipe(width=4, proj_dim=8, epochs=1, batch_size=8, n_stages=2, k=2)


def _never(*_args, **_kwargs):
    raise AssertionError("called: the bad argument was not caught before the work started")


def _trifeature(split="train", **options):
    from mcl.data.trifeature import load_trifeature

    return load_trifeature(split, **({"n_per_combination": 1} | options))


@functools.cache
def _tiny_clip():
    from mcl.clip import create_clip

    return create_clip("mcl-tiny-vit", image_size=32, seed=0)


CLIP_IMAGES = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
CAPTIONS = ["a red circle"] * 8


def _mcl_clip(**overrides):
    from mcl.clip import ClipTrainConfig, mcl_clip

    config = ClipTrainConfig(epochs=1, batch_size=4, device="cpu", progress=False)
    return mcl_clip(_tiny_clip(), CLIP_IMAGES, CAPTIONS, config, **({"k": 2, "progress": False} | overrides))


def _clip_config(**fields):
    from mcl.clip import ClipTrainConfig

    return ClipTrainConfig(**fields)


def _train_clip_captions():
    from mcl.clip import ClipTrainConfig, train_clip

    config = ClipTrainConfig(epochs=1, batch_size=4, device="cpu", progress=False)
    return train_clip(_tiny_clip(), CLIP_IMAGES, CAPTIONS[:5], config)


def _multistage(**overrides):
    kwargs = dict(n_stages=2, build=_never, train=_never, embed=_never, batch_size=8) | overrides
    return run_multistage(**kwargs, progress=False)


CASES = [
    # --- losses: shapes, finiteness, temperature range
    Case("nt_xent NaN row", lambda: nt_xent(_with_nan(_z()), _z(seed=1)), ValueError, ("z1", "row 2")),
    Case("nt_xent tiny temperature", lambda: nt_xent(_z(), _z(seed=1), 1e-30), ValueError, ("temperature",)),
    Case("nt_xent D=0", lambda: nt_xent(torch.zeros(4, 0), torch.zeros(4, 0)), ValueError, ("z1", "D=0")),
    Case("nt_xent N=1", lambda: nt_xent(_z(1), _z(1, seed=1)), ValueError, ("z1", "N=1")),
    Case("nt_xent shapes", lambda: nt_xent(_z(6), _z(5)), ValueError, ("z1", "z2")),
    Case("nt_xent int", lambda: nt_xent(torch.ones(4, 3, dtype=torch.long), _z(4, 3)), ValueError, ("z1",)),
    Case("nt_xent temperature True", lambda: nt_xent(_z(), _z(seed=1), True), ValueError, ("temperature",)),
    Case("info_nce NaN queue", lambda: info_nce(_z(), _z(), _with_nan(_z(8))), ValueError, ("queue",)),
    Case("info_nce list", lambda: info_nce(_z().tolist(), _z(), _z()), ValueError, ("q",)),
    Case("info_nce queue width", lambda: info_nce(_z(), _z(), _z(8, 3)), ValueError, ("queue", "D=4")),
    Case("info_nce tiny temperature", lambda: info_nce(_z(), _z(), _z(), 1e-9), ValueError, ("temperature",)),
    Case(
        "clip_loss NaN logit_scale",
        lambda: clip_loss(_z(), _z(), logit_scale=torch.tensor(float("nan"))),
        ValueError,
        ("logit_scale",),
    ),
    Case("clip_loss temperature 0", lambda: clip_loss(_z(), _z(), 0.0), ValueError, ("temperature",)),
    Case("ifm eps < 0", lambda: ifm_nt_xent(_z(), _z(), eps=-0.1), ValueError, ("eps",)),
    Case("TrainConfig tiny temperature", lambda: TrainConfig(temperature=1e-6), ValueError, ("temperature",)),
    Case(
        "MoCo tiny temperature",
        lambda: MoCo(torch.nn.Linear(2, 2), temperature=1e-6),
        ValueError,
        ("temperature",),
    ),
    # --- evaluations: NaN features, widths, empty splits, labels, options
    Case(
        "linear_probe NaN train", lambda: linear_probe(_with_nan(X), Y, X, Y), ValueError, ("train_x", "NaN")
    ),
    Case("linear_probe NaN test", lambda: linear_probe(X, Y, _with_nan(X), Y), ValueError, ("test_x", "NaN")),
    Case(
        "linear_probe inf",
        lambda: linear_probe(X.masked_fill(X > 1, float("inf")), Y, X, Y),
        ValueError,
        ("train_x",),
    ),
    Case("knn NaN train", lambda: knn_accuracy(_with_nan(X), Y, X, Y, k=3), ValueError, ("train_x", "NaN")),
    Case("knn NaN test", lambda: knn_accuracy(X, Y, _with_nan(X), Y, k=3), ValueError, ("test_x", "NaN")),
    Case(
        "linear_probe widths",
        lambda: linear_probe(X, Y, X[:, :3], Y),
        ValueError,
        ("train_x", "test_x", "D=3"),
    ),
    Case(
        "knn widths", lambda: knn_accuracy(X, Y, X[:, :3], Y, k=3), ValueError, ("train_x", "test_x", "D=3")
    ),
    Case("knn empty test", lambda: knn_accuracy(X, Y, X[:0], Y[:0], k=3), ValueError, ("test_x", "empty")),
    Case(
        "linear_probe empty test", lambda: linear_probe(X, Y, X[:0], Y[:0]), ValueError, ("test_x", "empty")
    ),
    Case(
        "linear_probe empty train", lambda: linear_probe(X[:0], Y[:0], X, Y), ValueError, ("train_x", "empty")
    ),
    Case("linear_probe 1-D", lambda: linear_probe(X[:, 0], Y, X[:, 0], Y), ValueError, ("train_x", "2-D")),
    Case("knn labels length", lambda: knn_accuracy(X, Y[:30], X, Y, k=3), ValueError, ("train_y", "(40,)")),
    Case("knn float labels", lambda: knn_accuracy(X, Y + 0.5, X, Y, k=3), ValueError, ("train_y", "integer")),
    Case(
        "knn negative labels",
        lambda: knn_accuracy(X, Y - 1, X, Y - 1, k=3),
        ValueError,
        ("train_y", "negative"),
    ),
    Case("knn k float", lambda: knn_accuracy(X, Y, X, Y, k=3.0), ValueError, ("k=3.0",)),
    Case("knn k > N", lambda: knn_accuracy(X, Y, X, Y, k=41), ValueError, ("k=41",)),
    Case("probe labels float", lambda: linear_probe(X, Y + 0.5, X, Y), ValueError, ("train_labels['y']",)),
    Case(
        "probe labels length", lambda: linear_probe(X, Y[:30], X, Y), ValueError, ("'y'", "differ in length")
    ),
    Case(
        "probe attributes differ",
        lambda: probe_attributes(X, {"a": Y}, X, {"b": Y}),
        ValueError,
        ("different attributes",),
    ),
    Case("probe C nan", lambda: linear_probe(X, Y, X, Y, C=float("nan")), ValueError, ("C=nan",)),
    Case("probe C str", lambda: linear_probe(X, Y, X, Y, C="1"), ValueError, ("C='1'",)),
    Case("probe max_iter 0", lambda: linear_probe(X, Y, X, Y, max_iter=0), ValueError, ("max_iter=0",)),
    Case("probe tol < 0", lambda: linear_probe(X, Y, X, Y, tol=-1.0), ValueError, ("tol=-1.0",)),
    Case(
        "nearest_neighbours NaN",
        lambda: nearest_neighbours(_with_nan(X), [0], k=2),
        ValueError,
        ("features",),
    ),
    # --- k-means
    Case("kmeans NaN", lambda: kmeans(_with_nan(X), 3), ValueError, ("x", "NaN")),
    Case("kmeans k > N", lambda: kmeans(X, 41), ValueError, ("k=41",)),
    Case("kmeans int x", lambda: kmeans(torch.ones(5, 2, dtype=torch.long), 2), ValueError, ("x", "float")),
    Case("kmeans tol nan", lambda: kmeans(X, 2, tol=float("nan")), ValueError, ("tol=nan",)),
    Case("kmeans seed -1", lambda: kmeans(X, 2, seed=-1), ValueError, ("seed=-1",)),
    # --- pseudo-labels and the sampler
    Case(
        "combine float ids", lambda: combine_labels([np.array([0.5, 1.0])]), ValueError, ("stage_labels[0]",)
    ),
    Case(
        "combine lengths",
        lambda: combine_labels([[0, 1], [0, 1, 2]]),
        ValueError,
        ("stage_labels", "lengths"),
    ),
    Case("combine mode", lambda: combine_labels([[0, 1]], mode="sum"), ValueError, ("mode='sum'",)),
    Case("combine empty", lambda: combine_labels([]), ValueError, ("stage_labels",)),
    Case("sampler batch 1", lambda: FeatureAwareBatchSampler([0, 1, 0], 1), ValueError, ("batch_size=1",)),
    Case(
        "sampler 2-D labels",
        lambda: FeatureAwareBatchSampler(np.zeros((4, 2), int), 2),
        ValueError,
        ("labels",),
    ),
    Case(
        "sampler rank",
        lambda: FeatureAwareBatchSampler([0] * 8, 2, rank=2, world_size=2),
        ValueError,
        ("rank=2",),
    ),
    Case(
        "sampler groups_per_batch",
        lambda: FeatureAwareBatchSampler([0] * 8, 4, groups_per_batch=3),
        ValueError,
        ("groups_per_batch=3",),
    ),
    # --- the multistage driver and the SimCLR recipe: checked before stage 0 trains
    Case("run_multistage combine", lambda: _multistage(combine="prod"), ValueError, ("combine='prod'",)),
    Case(
        "run_multistage small_groups",
        lambda: _multistage(small_groups="x"),
        ValueError,
        ("small_groups='x'",),
    ),
    Case("run_multistage n_stages 1.5", lambda: _multistage(n_stages=1.5), ValueError, ("n_stages=1.5",)),
    Case("run_multistage k 1", lambda: _multistage(k=1), ValueError, ("k=1",)),
    Case(
        "run_multistage groups_per_batch",
        lambda: _multistage(groups_per_batch=3),
        ValueError,
        ("groups_per_batch=3",),
    ),
    Case("recipe epochs 0", lambda: SimCLRRecipe(epochs=0), ValueError, ("epochs=0",)),
    Case("recipe epochs 1.5", lambda: SimCLRRecipe(epochs=1.5), ValueError, ("epochs=1.5",)),
    Case("recipe epochs abc", lambda: SimCLRRecipe(epochs="abc"), ValueError, ("epochs='abc'",)),
    Case("recipe n_stages 1", lambda: SimCLRRecipe(n_stages=1), ValueError, ("n_stages=1",)),
    Case("recipe combine", lambda: SimCLRRecipe(combine="prod"), ValueError, ("combine='prod'",)),
    Case("recipe cluster_on", lambda: SimCLRRecipe(cluster_on="proj"), ValueError, ("cluster_on='proj'",)),
    Case(
        "recipe small_groups", lambda: SimCLRRecipe(small_groups="keep"), ValueError, ("small_groups='keep'",)
    ),
    Case("recipe encoder", lambda: SimCLRRecipe(encoder="resnet50"), ValueError, ("encoder='resnet50'",)),
    Case("recipe lr", lambda: SimCLRRecipe(lr="abc"), ValueError, ("lr='abc'",)),
    Case("recipe temperature", lambda: SimCLRRecipe(temperature=1e-9), ValueError, ("temperature",)),
    Case("recipe crop_scale", lambda: SimCLRRecipe(crop_scale=0), ValueError, ("crop_scale=0",)),
    Case(
        "recipe rest_shift", lambda: SimCLRRecipe(rest_shift=2), ValueError, ("rest_shift=2", "augment_width")
    ),
    Case(
        "recipe merge with blocks",
        lambda: SimCLRRecipe(groups_per_batch=2, small_groups="merge"),
        ValueError,
        ("small_groups='merge'", "groups_per_batch"),
    ),
    Case("recipe unknown field", lambda: RECIPE.with_overrides(epoch=3), ValueError, ("epoch",)),
    Case(
        "train_recipe tensor", lambda: train_recipe(TINY.images, RECIPE, device="cpu"), ValueError, ("data",)
    ),
    Case(
        "mcl_simclr k > N",
        lambda: mcl_simclr(TINY, RECIPE.with_overrides(k=30), device="cpu", progress=False),
        ValueError,
        ("k=30",),
    ),
    Case(
        "mcl_simclr seed 1.5",
        lambda: mcl_simclr(TINY, RECIPE, seed=1.5, progress=False),
        ValueError,
        ("seed=1.5",),
    ),
    Case(
        "train_recipe device", lambda: train_recipe(TINY, RECIPE, device="gpu"), ValueError, ("device='gpu'",)
    ),
    Case("LoopConfig epochs 0", lambda: LoopConfig(epochs=0), ValueError, ("epochs=0",)),
    Case("TrainConfig epochs abc", lambda: TrainConfig(epochs="abc"), ValueError, ("epochs='abc'",)),
    Case("TrainConfig lr nan", lambda: TrainConfig(lr=float("nan")), ValueError, ("lr=nan",)),
    Case("TrainConfig batch 1", lambda: TrainConfig(batch_size=1), ValueError, ("batch_size=1",)),
    # --- generated data
    Case("trifeature size str", lambda: _trifeature(size="32"), ValueError, ("size='32'",)),
    Case("trifeature size 4", lambda: _trifeature(size=4), ValueError, ("size=4",)),
    Case("trifeature split", lambda: _trifeature(split="val"), ValueError, ("split='val'",)),
    Case("trifeature n", lambda: _trifeature(n_per_combination=0), ValueError, ("n_per_combination=0",)),
    # --- CLIP: checked before stage 0 is embedded or trained
    Case("mcl_clip combine", lambda: _mcl_clip(combine="prod"), ValueError, ("combine='prod'",)),
    Case(
        "mcl_clip small_groups", lambda: _mcl_clip(small_groups="keep"), ValueError, ("small_groups='keep'",)
    ),
    Case("mcl_clip k > N", lambda: _mcl_clip(k=9), ValueError, ("k=9",)),
    Case("mcl_clip n_stages 0", lambda: _mcl_clip(n_stages=0), ValueError, ("n_stages=0",)),
    Case(
        "mcl_clip unlocked_groups", lambda: _mcl_clip(unlocked_groups=99), ValueError, ("unlocked_groups=99",)
    ),
    Case("mcl_clip init", lambda: _mcl_clip(init="last"), ValueError, ("init='last'",)),
    Case("train_clip captions", _train_clip_captions, ValueError, ("captions", "8 images")),
    Case("ClipTrainConfig epochs '2'", lambda: _clip_config(epochs="2"), ValueError, ("epochs='2'",)),
    Case(
        "ClipTrainConfig max_logit_scale",
        lambda: _clip_config(max_logit_scale=1e6),
        ValueError,
        ("max_logit_scale",),
    ),
    Case(
        "ClipTrainConfig schedule",
        lambda: _clip_config(schedule="linear"),
        ValueError,
        ("schedule='linear'",),
    ),
    # --- the book's presets and a chapter's parameters (what papermill's -p injects)
    Case(
        "preset epochs abc",
        lambda: preset("trifeature", "smoke", epochs="abc"),
        ValueError,
        ("epochs='abc'",),
    ),
    Case("preset epochs 1.5", lambda: preset("trifeature", "smoke", epochs=1.5), ValueError, ("epochs=1.5",)),
    Case("preset epochs 0", lambda: preset("cifar10", "book", epochs=0), ValueError, ("epochs=0",)),
    Case("preset n_stages 1", lambda: preset("trifeature", "book", n_stages=1), ValueError, ("n_stages=1",)),
    Case(
        "preset batch_size",
        lambda: preset("trifeature", "book", batch_size=63),
        ValueError,
        ("batch_size=63",),
    ),
    Case("preset scale", lambda: preset("trifeature", "huge"), ValueError, ("scale='huge'",)),
    Case("preset experiment", lambda: preset("mnist", "book"), ValueError, ("'mnist'",)),
    Case(
        "with_data size abc",
        lambda: experiments.with_data(preset("trifeature", "smoke"), size="abc"),
        ValueError,
        ("size='abc'",),
    ),
    Case(
        "with_data n_train 1.5",
        lambda: experiments.with_data(preset("cifar10", "smoke"), n_train=1.5),
        ValueError,
        ("n_train=1.5",),
    ),
    Case(
        "clip preset epochs abc",
        lambda: clip_experiments.clip_preset("smoke", epochs="abc"),
        ValueError,
        ("epochs",),
    ),
    Case(
        "clip preset n_stages 1",
        lambda: clip_experiments.clip_preset("book", n_stages=1),
        ValueError,
        ("n_stages=1",),
    ),
    Case(
        "clip preset lr", lambda: clip_experiments.clip_preset("book", lr="fast"), ValueError, ("lr='fast'",)
    ),
    Case(
        "clip preset lock_text",
        lambda: clip_experiments.clip_preset("book", lock_text="no"),
        ValueError,
        ("lock_text",),
    ),
    Case(
        "chapter epochs abc",
        lambda: check_parameters({"__annotations__": {"epochs": int}, "epochs": "abc"}),
        ValueError,
        ("epochs='abc'", "epochs: int"),
    ),
    Case(
        "chapter seed 1.5",
        lambda: check_parameters({"__annotations__": {"seed": int}, "seed": 1.5}),
        ValueError,
        ("seed=1.5",),
    ),
    Case(
        "chapter datasets a string",
        lambda: check_parameters({"__annotations__": {"datasets": list[str]}, "datasets": "trifeature"}),
        ValueError,
        ("datasets='trifeature'", "list[str]", "-y"),
    ),
    Case(
        "chapter n_seeds 0",
        lambda: check_parameters({"__annotations__": {"n_seeds": int}, "n_seeds": 0}),
        ValueError,
        ("n_seeds=0",),
    ),
    Case(
        "chapter scale 1",
        lambda: check_parameters({"__annotations__": {"scale": str}, "scale": 1}),
        ValueError,
        ("scale=1",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_named(case: Case):
    with pytest.raises(case.error) as caught:
        case.run()
    message = str(caught.value)
    for name in case.names:
        assert name in message, f"{case.id}: {name!r} not in {message!r}"


def test_chapter_parameter_checks_accept_good_values():
    annotations = {"seed": int, "epochs": int, "lr": float, "scale": str, "datasets": list[str], "on": bool}
    good = {"seed": 0, "epochs": None, "lr": 1, "scale": "smoke", "datasets": ["trifeature"], "on": False}
    check_parameters({"__annotations__": annotations, **good})
    check_parameters({})  # a namespace without parameters


# --------------------------------------------------------------------------------- files and environment
@pytest.fixture
def env(tmp_path, monkeypatch):
    """A data root of its own, no mirror, no download."""
    monkeypatch.delenv(sources.ENV_MIRROR, raising=False)
    monkeypatch.setenv(sources.ENV_ROOT, str(tmp_path / "root"))
    monkeypatch.setenv(sources.ENV_OFFLINE, "1")
    monkeypatch.delenv(sources.ENV_TIMEOUT, raising=False)
    return tmp_path


def _root_is_a_file(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    (tmp / "afile").write_text("x")
    monkeypatch.setenv(sources.ENV_ROOT, str(tmp / "afile"))
    return sources.data_root, ("MCL_DATA_ROOT", str(tmp / "afile"), "not a folder")


def _root_argument_is_a_file(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    (tmp / "afile").write_text("x")
    return lambda: sources.data_root(tmp / "afile"), ("root=", str(tmp / "afile"))


def _bad_timeout(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    monkeypatch.setenv(sources.ENV_TIMEOUT, "abc")
    monkeypatch.delenv(sources.ENV_OFFLINE)  # the download is tried, so the timeout is read
    return lambda: sources.find("mnist"), ("MCL_DOWNLOAD_TIMEOUT", "'abc'")


def _negative_timeout(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    monkeypatch.setenv(sources.ENV_TIMEOUT, "-5")
    return sources.download_timeout, ("MCL_DOWNLOAD_TIMEOUT", "'-5'")


def _truncated_mnist_gz(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    from mcl.data.mnist import load_mnist

    raw = tmp / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{name}.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\0"))
    whole = gzip.compress(b"\0\0\x08\x03\0\0\0\x02\0\0\0\x1c\0\0\0\x1c" + bytes(2 * 28 * 28))
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])
    return lambda: load_mnist("test"), (str(raw / "t10k-images-idx3-ubyte.gz"), "truncated")


def _cifar_batch(tmp: Path, payload: bytes) -> Path:
    folder = tmp / "root" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    good = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(good)
    (folder / "test_batch").write_bytes(payload)
    return folder / "test_batch"


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _cifar_batch_that_runs_code(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    from mcl.data.cifar import load_cifar10

    path = _cifar_batch(tmp, pickle.dumps({b"data": _RunsCode(tmp / "ran"), b"labels": [0]}))

    def run():
        try:
            load_cifar10("test")
        finally:
            assert not (tmp / "ran").exists(), "the batch's pickle ran code"

    return run, (str(path), "refused", "could run code")


def _truncated_cifar_batch(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    from mcl.data.cifar import load_cifar10

    whole = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    path = _cifar_batch(tmp, whole[:50])
    return lambda: load_cifar10("test"), (str(path), "truncated")


def _corrupt_checkpoint(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    path = tmp / "3f9a2c" / "last.pt"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 not a checkpoint")
    return lambda: load_file(path), (str(path), "not a readable checkpoint")


def _checkpoint_dir_is_a_file(tmp: Path, monkeypatch) -> tuple[Callable, tuple[str, ...]]:
    (tmp / "afile").write_text("x")
    config = TrainConfig(
        epochs=1, batch_size=2, device="cpu", progress=False, checkpoint_dir=str(tmp / "afile")
    )
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(net.parameters())
    return lambda: fit(_never, {"net": net}, optimizer, config, n=4, device=torch.device("cpu")), (
        "checkpoint_dir=",
        str(tmp / "afile"),
    )


FILE_CASES = [
    ("MCL_DATA_ROOT a file", _root_is_a_file, ValueError),
    ("data_root(root=a file)", _root_argument_is_a_file, ValueError),
    ("MCL_DOWNLOAD_TIMEOUT=abc", _bad_timeout, ValueError),
    ("MCL_DOWNLOAD_TIMEOUT=-5", _negative_timeout, ValueError),
    ("truncated MNIST .gz", _truncated_mnist_gz, ValueError),
    ("CIFAR batch whose pickle runs code", _cifar_batch_that_runs_code, ValueError),
    ("truncated CIFAR batch", _truncated_cifar_batch, ValueError),
    ("corrupt checkpoint", _corrupt_checkpoint, CheckpointError),
    ("checkpoint_dir a file", _checkpoint_dir_is_a_file, CheckpointError),
]


@pytest.mark.parametrize(("setup", "error"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_file_or_setting_is_named(env, monkeypatch, setup, error):
    run, names = setup(env, monkeypatch)
    with pytest.raises(error) as caught:
        run()
    message = str(caught.value)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"


def test_data_prepare_exits_nonzero_when_a_data_set_was_not_found(env, capsys):
    from mcl.__main__ import data_prepare, main

    assert data_prepare(["mnist"]) == 1
    err = capsys.readouterr().err
    assert "not found: mnist (train), mnist (test)" in err and "MNIST" in err
    assert data_prepare(["imagenet"]) == 1  # asked for by name: its absence fails too
    assert main(["data", "prepare", "--only", "nothing"]) == 2
    (env / "afile").write_text("x")
    assert main(["data", "list", "--root", str(env / "afile")]) == 2
    assert str(env / "afile") in capsys.readouterr().err


def test_data_prepare_without_only_ignores_the_data_sets_put_in_place_by_hand(env, monkeypatch):
    import mcl.__main__ as cli

    def not_found():
        raise sources.DataNotFoundError("nothing here")

    def preparers():
        return {
            "imagenet": [("val", not_found)],
            "flickr30k": [("test", not_found)],
            "mnist": [("test", lambda: [])],
        }

    monkeypatch.setattr(cli, "_real_preparers", preparers)
    monkeypatch.setattr(cli, "_generated_preparers", dict)
    assert cli.data_prepare() == 0
    monkeypatch.setattr(cli, "_real_preparers", lambda: preparers() | {"mnist": [("test", not_found)]})
    assert cli.data_prepare() == 1


def test_the_data_cache_removes_a_stale_temporary_left_by_a_killed_write(env):
    from mcl.data import cache
    from mcl.files import STALE_SECONDS

    root = env / "root"
    folder = cache.cache_dir(root)
    folder.mkdir(parents=True)
    stale = folder / ".mnist-test.images.npy.k1ll3d.tmp"  # what atomic_write leaves when killed mid-write
    stale.write_bytes(bytes(1024))
    fresh = folder / ".mnist-test.images.npy.wr1t1ng.tmp"  # another writer, still busy
    fresh.write_bytes(b"")
    old = os.path.getmtime(stale) - STALE_SECONDS - 60
    os.utime(stale, (old, old))
    cache.save(root, "mnist-test", {"images": np.zeros((2, 3), np.uint8)})
    assert not stale.exists() and fresh.exists()
    assert cache.load(root, "mnist-test") is not None
