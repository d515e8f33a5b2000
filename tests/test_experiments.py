"""The chapters' shared experiment helpers: cached runs, controls and baseline wiring."""

import fcntl
from dataclasses import asdict

import pytest
import torch

from mcl.augment import NoAugment
from mcl.data.base import LabeledImages
from mcl.evaluate import probe_models as reference_probe
from mcl.losses import IFMLoss, grouped_loss, nt_xent
from mcl.schedules import TemperatureSchedule
from mcl.simclr import SimCLRRecipe
from mcl.viewmaker import Viewmaker
from mclbook import experiments
from mclbook.scales import Preset

TINY = Preset(
    {"n_train": 1, "n_test": 1, "size": 16},
    SimCLRRecipe(width=4, proj_dim=8, epochs=1, batch_size=64, n_stages=2, k=3),
)


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("MCL_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


def lock_held(path: str) -> bool:
    """Is the lock file ``path`` held through another open file (by this process or another)?"""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def tiny_images(n=192):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    return LabeledImages(images, {"a": torch.arange(n) % 3})


@pytest.mark.slow
def test_a_cached_run_is_loaded_not_retrained(results):
    data = tiny_images()
    first = experiments.simclr("tiny", TINY, data, scale="smoke", seed=3, device="cpu", progress=False)
    (checkpoint,) = experiments.runs_dir("smoke").glob("*/last.pt")
    stamp = checkpoint.stat().st_mtime_ns
    again = experiments.simclr("tiny", TINY, data, scale="smoke", seed=3, device="cpu", progress=False)
    assert checkpoint.stat().st_mtime_ns == stamp  # nothing was trained or written
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True)
    )
    other = experiments.simclr("tiny", TINY, data, scale="smoke", seed=4, device="cpu", progress=False)
    assert len(list(experiments.runs_dir("smoke").glob("*/last.pt"))) == 2
    assert not torch.equal(other.encoder.blocks[0].weight, first.encoder.blocks[0].weight)


@pytest.mark.slow
def test_mcl_stage_zero_is_the_simclr_run_of_the_same_seed(results):
    data = tiny_images()
    result = experiments.multistage("tiny", TINY, data, scale="smoke", seed=1, device="cpu", progress=False)
    plain = experiments.simclr("tiny", TINY, data, scale="smoke", seed=1, device="cpu", progress=False)
    for a, b in zip(result.models[0].state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert len(result.models) == 2 and result.samplers[1] is not None


@pytest.mark.slow
def test_mcl_locks_only_the_stage_it_trains(results, monkeypatch):
    from mcl import simclr

    def held(folder):  # is the folder's lock held (by another process)?
        return lock_held(f"{folder}.lock")

    seen = []  # per stage: (its own folder locked, stage 0's folder locked) while it trains
    original = simclr.train_recipe

    def spy(data, recipe, *, checkpoint_dir, **kwargs):
        seen.append((held(checkpoint_dir), held(stage_zero)))
        return original(data, recipe, checkpoint_dir=checkpoint_dir, **kwargs)

    data = tiny_images()
    stage_zero = experiments.runs_dir("smoke") / experiments.run_key(
        "tiny",
        experiment="tiny",
        data=TINY.data,
        data_seed=0,
        recipe=asdict(TINY.recipe),
        seed=1,
        variant="simclr",
    )
    monkeypatch.setattr(simclr, "train_recipe", spy)
    experiments.multistage("tiny", TINY, data, scale="smoke", seed=1, device="cpu", progress=False)
    assert seen == [(True, True), (True, False)]  # stage 1 trains while stage 0 is free to load


@pytest.mark.slow
def test_stages_can_start_from_the_previous_stage(monkeypatch):
    from mcl import simclr

    starts = []  # the weights each stage's training starts from
    original = simclr.train_recipe

    def spy(data, recipe, *, model, **kwargs):
        starts.append(model.encoder.blocks[0].weight.detach().clone())
        return original(data, recipe, model=model, **kwargs)

    monkeypatch.setattr(simclr, "train_recipe", spy)
    data = tiny_images()
    warm = simclr.mcl_simclr(data, TINY.recipe.with_overrides(stage_init="previous"), seed=1, progress=False)
    assert torch.equal(starts[1], warm.models[0].encoder.blocks[0].weight)  # stage 1 starts where 0 ended
    assert not torch.equal(warm.models[1].encoder.blocks[0].weight, warm.models[0].encoder.blocks[0].weight)
    fresh = simclr.mcl_simclr(data, TINY.recipe, seed=1, progress=False)
    assert torch.equal(starts[3], simclr.build_model(TINY.recipe, 3, seed=2).encoder.blocks[0].weight)
    assert torch.equal(fresh.models[0].encoder.blocks[0].weight, warm.models[0].encoder.blocks[0].weight)
    first = simclr.mcl_simclr(
        data,
        TINY.recipe.with_overrides(stage_init="first", n_stages=3, batch_size=16, combine="latest"),
        seed=1,
        progress=False,
    )
    assert torch.equal(starts[5], first.models[0].encoder.blocks[0].weight)  # stage 1 starts where 0 ended
    assert torch.equal(starts[6], first.models[0].encoder.blocks[0].weight)  # and so does stage 2
    assert not torch.equal(starts[6], first.models[1].encoder.blocks[0].weight)
    with pytest.raises(ValueError, match="stage_init"):
        SimCLRRecipe(stage_init="warm")


def test_stages_train_on_blocks_of_groups_with_negatives_within_a_block(monkeypatch):
    from mcl import simclr

    seen = []  # (sampler, loss value on a fixed pair) per stage

    def spy(data, recipe, *, batch_sampler, loss_fn, **kwargs):
        z1, z2 = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)).chunk(2)
        seen.append((batch_sampler, float(loss_fn(torch.cat([z1, z2]), torch.cat([z2, z1]), 0.5))))
        return simclr.build_model(recipe, 3, seed=0), None

    monkeypatch.setattr(simclr, "train_recipe", spy)
    recipe = TINY.recipe.with_overrides(groups_per_batch=2)
    simclr.mcl_simclr(tiny_images(), recipe, seed=1, progress=False)
    z1, z2 = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)).chunk(2)
    whole = float(nt_xent(torch.cat([z1, z2]), torch.cat([z2, z1]), 0.5))
    halves = float(grouped_loss(nt_xent, 2)(torch.cat([z1, z2]), torch.cat([z2, z1]), 0.5))
    assert seen[0][0] is None and seen[0][1] == whole  # stage 0: plain SimCLR
    for sampler, value in seen[1:]:
        assert sampler.groups_per_batch == 2 and value == halves
    with pytest.raises(ValueError, match="groups_per_batch"):
        SimCLRRecipe(batch_size=64, groups_per_batch=3)


def test_without_digit_blanks_the_digit_half_only():
    images = torch.randint(1, 256, (4, 3, 32, 64), dtype=torch.uint8)
    data = LabeledImages(
        images,
        {"cifar": torch.arange(4), "mnist": torch.arange(4)},
        {"cifar": list("abcd"), "mnist": list("wxyz")},
    )
    out = experiments.without_digit(data)
    assert torch.equal(out.images[..., :32], images[..., :32]) and out.images[..., 32:].max() == 0
    assert list(out.labels) == ["cifar"]
    with pytest.raises(ValueError, match="side-by-side"):
        experiments.without_digit(LabeledImages(images[..., :32].contiguous(), {"cifar": torch.arange(4)}))


def test_baseline_keywords_and_errors():
    assert isinstance(experiments.baseline_kwargs("ifm", TINY, 3)["loss_fn"], IFMLoss)
    schedule = experiments.baseline_kwargs("ts", TINY, 3)["temperature_schedule"]
    assert isinstance(schedule, TemperatureSchedule)
    assert schedule(0) == pytest.approx(1.0)
    fd = experiments.baseline_kwargs("fd", TINY, 3)  # Tamkin et al.: the viewmaker alone, temperature 0.07
    assert isinstance(fd["view_transform"], Viewmaker) and isinstance(fd["augment"], NoAugment)
    assert [fd["temperature_schedule"](e) for e in range(3)] == [0.07] * 3
    after_simclr = experiments.baseline_kwargs("fd", TINY, 3, views="simclr+viewmaker")
    assert set(after_simclr) == {"view_transform"}  # the recipe's augmentation and temperature
    with pytest.raises(ValueError, match="views='both'"):
        experiments.baseline_kwargs("fd", TINY, 3, views="both")
    with pytest.raises(ValueError, match="not a baseline"):
        experiments.baseline_kwargs("mixup", TINY, 3)
    with pytest.raises(ValueError, match="unknown data arguments"):
        experiments.with_data(TINY, n_trian=3)
    assert experiments.with_data(TINY, size=None, n_train=2).data == {"n_train": 2, "n_test": 1, "size": 16}


def test_ensemble_seeds_start_at_the_seed_and_do_not_overlap_repeats():
    seeds = [experiments.ensemble_seeds(s, 3) for s in range(3)]
    assert [s[0] for s in seeds] == [0, 1, 2]
    assert len({x for s in seeds for x in s}) == 9


def test_cifar_only_control_keeps_the_photos_and_drops_the_digit(monkeypatch):
    photos = torch.randint(1, 256, (4, 3, 32, 32), dtype=torch.uint8)
    side = LabeledImages(
        torch.cat([photos, torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)], dim=3),
        {"cifar": torch.tensor([3, 1, 4, 1]), "mnist": torch.tensor([5, 9, 2, 6])},
        {"cifar": list("abcdefghij"), "mnist": list("0123456789")},
    )
    asked = []

    def fake_load(name, setup, *, seed=0):
        asked.append((name, setup.data["composition"], seed))
        return side, side

    monkeypatch.setattr(experiments, "load_data", fake_load)
    setup = Preset({"n_train": 4, "n_test": 4, "composition": "overlay"}, TINY.recipe)
    train, test = experiments.load_cifar_only(setup, seed=2)
    assert asked == [("cifar_mnist", "side", 2)]  # the same photos, loaded side by side
    assert torch.equal(train.images, photos) and list(train.labels) == ["cifar"]
    assert torch.equal(train.labels["cifar"], side.labels["cifar"])
    train, _ = experiments.load_cifar_only(experiments.with_data(setup, composition="side"))
    assert train.images.shape == (4, 3, 32, 64) and train.images[..., 32:].max() == 0
    assert torch.equal(train.images[..., :32], photos)
    with pytest.raises(ValueError, match="no CIFAR-only control"):
        experiments.load_cifar_only(experiments.with_data(setup, composition="tiles"))


@pytest.mark.slow
def test_moco_run_is_cached_and_probed_through_its_query_backbone(results):
    data = tiny_images()
    first = experiments.moco("tiny", TINY, data, scale="smoke", seed=3, device="cpu", progress=False)
    (checkpoint,) = experiments.runs_dir("smoke").glob("*/last.pt")
    stamp = checkpoint.stat().st_mtime_ns
    again = experiments.moco("tiny", TINY, data, scale="smoke", seed=3, device="cpu", progress=False)
    assert checkpoint.stat().st_mtime_ns == stamp
    assert torch.equal(first.query.encoder.blocks[0].weight, again.query.encoder.blocks[0].weight)
    untrained = experiments.random_model(TINY, data, seed=3)
    assert not torch.equal(first.query.encoder.blocks[0].weight, untrained.encoder.blocks[0].weight)
    x = data.float_images()[:5]
    assert torch.equal(first.features(x), first.query.features(x)) and not first.training
    experiments.moco("tiny", TINY, data, scale="smoke", seed=3, device="cpu", progress=False, temperature=0.1)
    experiments.simclr("tiny", TINY, data, scale="smoke", seed=3, device="cpu", progress=False)
    assert len(list(experiments.runs_dir("smoke").glob("*/last.pt"))) == 3


def test_a_probe_is_stored_once_and_read_back_unchanged(results, monkeypatch):
    import mcl.evaluate

    data = tiny_images()
    train, test = data.subset(slice(0, 128)), data.subset(slice(128, None))
    model = experiments.random_model(TINY, train, seed=0)
    reference = reference_probe([model], train, test, device="cpu")
    calls = []
    monkeypatch.setattr(
        mcl.evaluate, "probe_models", lambda *a, **k: calls.append(1) or reference_probe(*a, **k)
    )
    first = experiments.probe([model], train, test, scale="smoke", device="cpu")
    again = experiments.probe([model], train, test, scale="smoke", device="cpu")
    assert first == again == reference and list(first) == list(reference) and len(calls) == 1
    other = experiments.random_model(TINY, train, seed=1)  # other weights: probed anew
    assert experiments.probe([model, other], train, test, scale="smoke", device="cpu") == reference_probe(
        [model, other], train, test, device="cpu"
    )
    relabeled = LabeledImages(test.images, {"a": (test.labels["a"] + 1) % 3})  # other labels: probed anew
    experiments.probe([model], train, relabeled, scale="smoke", device="cpu")
    assert len(calls) == 3 and len(list(experiments.probes_dir("smoke").glob("*.json"))) == 3


def test_comparison_plan_lists_chapter_3s_runs_in_its_order():
    plan = experiments.comparison_plan(
        "trifeature", TINY, [0, 1], baselines=("fd", "ifm"), ts={"period": 3}, fd={"views": "viewmaker"}
    )
    assert list(plan) == [
        (0, "SimCLR"), (0, "MCL"), (0, "SimCLR ensemble"), (0, "IFM"), (0, "FD"),
        (1, "SimCLR"), (1, "MCL"), (1, "SimCLR ensemble"),
    ]  # fmt: skip
    assert plan[1, "SimCLR ensemble"] == [experiments.Run("trifeature", "simclr", s) for s in (1, 1001)]
    assert plan[0, "FD"] == [experiments.Run("trifeature", "fd", 0, (("views", "viewmaker"),))]
    with pytest.raises(ValueError, match="baselines \\['moco'\\] unknown"):
        experiments.comparison_plan("trifeature", TINY, [0], baselines=("moco",))
    with pytest.raises(ValueError, match="method='supervised'"):
        experiments.Run("trifeature", "supervised")


def test_training_workers_come_from_mcl_workers(monkeypatch):
    monkeypatch.delenv("MCL_WORKERS", raising=False)
    assert experiments.training_workers() == 1
    monkeypatch.setenv("MCL_WORKERS", "3")
    assert experiments.training_workers() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("MCL_WORKERS", bad)
        with pytest.raises(ValueError, match="MCL_WORKERS="):
            experiments.training_workers()
    with pytest.raises(ValueError, match="workers=0"):
        experiments.Trainer(scale="smoke", workers=0)


@pytest.mark.slow
def test_runs_trained_ahead_by_workers_equal_runs_trained_in_the_chapter(tmp_path, monkeypatch):
    """Two worker processes train and probe groups of runs (Trifeature, 1,000 renders at 16 px) while this
    process asks for them in order: every model equals, weight for weight, the one trained here alone, each
    run has one checkpoint and each group one stored probe."""
    setup = TINY
    train, _ = experiments.load_data("trifeature", setup)
    groups = [
        [experiments.Run("trifeature", "mcl", 0)],
        [experiments.Run("trifeature", "simclr", 0), experiments.Run("trifeature", "simclr", 1000)],
        [experiments.Run("trifeature", "ifm", 0)],
        [experiments.Run("trifeature", "fd", 0)],  # its viewmaker's weights and noise are seeded too
    ]

    def weights(folder: str, workers: int) -> list[dict[str, torch.Tensor]]:
        monkeypatch.setenv("MCL_RESULTS_DIR", str(tmp_path / folder / "results"))
        torch.rand(5)  # this process's global RNG has a history; the workers' have none
        with experiments.Trainer(scale="smoke", device="cpu", workers=workers) as trainer:
            trainer.start([(group, setup) for group in groups], probe=True)
            models = [m for group in groups for m in trainer.models(group, setup, train)]
        return [m.state_dict() for m in models]

    alone = weights("alone", 1)
    assert not list(experiments.probes_dir("smoke").glob("*.json"))  # one process: nothing probed ahead
    ahead = weights("ahead", 2)
    assert len(alone) == len(ahead) == setup.recipe.n_stages + 4
    for a, b in zip(alone, ahead, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    checkpoints = sorted(p.parent.name for p in experiments.runs_dir("smoke").glob("*/last.pt"))
    assert len(checkpoints) == len(set(checkpoints)) == setup.recipe.n_stages + 3
    assert len(list(experiments.probes_dir("smoke").glob("*.json"))) == len(groups)  # the workers probed
