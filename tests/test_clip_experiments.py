"""Tests of mclbook.clip_experiments: presets, cached data and models, scoring, soup and retrieval sets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mcl.clip import create_clip
from mcl.clip.eval import bootstrap_average, evaluate_mmvp
from mcl.data.mmvp import PATTERNS
from mcl.data.scenes import PROPERTIES, make_captioned_scenes
from mclbook import clip_experiments as ce
from mclbook.paper import MMVP_PATTERNS


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_preset(**kw) -> ce.ClipPreset:
    base = dict(
        image_size=32,
        n_train=24,
        stage0_epochs=1,
        epochs=1,
        batch_size=8,
        n_stages=2,
        k=2,
        mmvp_pairs_per_pattern=1,
        n_retrieval=6,
        retrieval=("scenes",),
    )
    return ce.clip_preset("smoke", **(base | kw))


def test_presets_apply_non_none_overrides_and_reject_unknown_ones():
    book = ce.clip_preset("book")
    assert book.arch == "mcl-tiny-vit" and book.pretrained is None and book.mmvp == "synthetic"
    paper = ce.clip_preset("paper")
    assert (paper.arch, paper.pretrained, paper.k, paper.epochs, paper.mmvp) == (
        "ViT-L-14",
        "openai",
        10,
        20,
        "real",
    )
    changed = ce.clip_preset("book", k=7, epochs=None, retrieval=["scenes"])
    assert changed.k == 7 and changed.epochs == book.epochs and changed.retrieval == ("scenes",)
    with pytest.raises(ValueError, match="unknown preset override.*n_stage"):
        ce.clip_preset("book", n_stage=3)
    with pytest.raises(ValueError, match="scale='huge'"):
        ce.clip_preset("huge")
    with pytest.raises(ValueError, match="combine='first'"):
        ce.clip_preset("book", combine="first")
    with pytest.raises(ValueError, match="stage0_epochs=0"):
        ce.clip_preset("book", stage0_epochs=0)
    with pytest.raises(ValueError, match="retrieval=.*imagenet"):
        ce.clip_preset("book", retrieval=("coco", "imagenet"))


def test_scene_specs_reproduce_the_generated_captions_and_property_codes():
    images, captions = make_captioned_scenes(12, size=48, seed=5)
    specs = ce.scene_specs(12, 5)
    from mcl.data.scenes import caption

    assert [caption(s) for s in specs] == captions
    props = ce.scene_properties(specs)
    assert set(props) == set(PROPERTIES)
    for prop, codes in props.items():
        assert codes.shape == (12,)
        # equal codes <=> equal property values
        values = [str(s.value(prop)) for s in specs]
        for i in range(12):
            for j in range(12):
                assert (codes[i] == codes[j]) == (values[i] == values[j])


def test_load_scenes_caches_and_reloads_identical_data(tmp_path):
    a_img, a_cap, a_props = ce.load_scenes(10, size=48, seed=2, cache=tmp_path)
    files = list(tmp_path.glob("scenes-*.pt"))
    assert len(files) == 1
    b_img, b_cap, b_props = ce.load_scenes(10, size=48, seed=2, cache=tmp_path)
    assert torch.equal(a_img, b_img) and a_cap == b_cap
    assert all(np.array_equal(a_props[p], b_props[p]) for p in PROPERTIES)
    direct, _ = make_captioned_scenes(10, size=48, seed=2)
    assert torch.equal(direct, a_img)


def test_synthetic_mmvp_is_written_once_in_the_cache(tmp_path):
    preset = tiny_preset()
    pairs = ce.load_mmvp(preset, tmp_path)
    assert [p.pattern for p in pairs] == list(PATTERNS)
    csv = next(tmp_path.glob("mmvp-synthetic-*/Questions.csv"))
    stamp = csv.stat().st_mtime_ns
    again = ce.load_mmvp(preset, tmp_path)
    assert csv.stat().st_mtime_ns == stamp and [p.statements for p in again] == [p.statements for p in pairs]
    assert not list(tmp_path.glob("mmvp-tmp-*"))


def test_real_mmvp_missing_names_the_folder(tmp_path):
    preset = dataclasses.replace(tiny_preset(), mmvp="real", mmvp_root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ce.load_mmvp(preset, tmp_path)


def test_stage0_is_trained_once_then_loaded_from_the_cache(tmp_path):
    preset = tiny_preset()
    data = ce.load_training_data(preset, tmp_path)
    assert len(data) == 24 and data.properties is not None
    first, history = ce.train_stage0(preset, data, device="cpu", seed=0, cache=tmp_path, progress=False)
    assert history is not None and len(history.losses) == 1
    untrained = create_clip(preset.arch, image_size=32, seed=0)
    assert not torch.equal(first.visual.proj, untrained.visual.proj)
    again, history2 = ce.train_stage0(preset, data, device="cpu", seed=0, cache=tmp_path, progress=False)
    assert history2.losses == history.losses
    for (name, p), q in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    # another seed is another run
    assert ce.stage0_key(preset, data, 1) != ce.stage0_key(preset, data, 0)
    assert ce.mcl_key(preset, data, 0) != ce.mcl_key(dataclasses.replace(preset, k=3), data, 0)


def test_stage_scores_match_evaluate_mmvp_and_the_metrics_are_fractions(tmp_path):
    preset = tiny_preset()
    pairs = ce.load_mmvp(preset, tmp_path)
    models = [create_clip("mcl-tiny-vit", image_size=32, seed=s).eval() for s in (0, 1, 2)]
    scores = ce.mmvp_stage_scores(models, pairs, device="cpu")
    assert list(scores) == ["stage 0", "stage 1", "stage 2", "stages 0-1", "MCL"]
    alone = evaluate_mmvp(models[1], pairs, device="cpu")
    assert torch.allclose(scores["stage 1"].probs, alone.probs, atol=1e-5)
    both = evaluate_mmvp(models, pairs, device="cpu")
    assert torch.allclose(scores["MCL"].probs, both.probs, atol=1e-5)
    metrics = ce.mmvp_metrics(scores["MCL"])
    assert list(metrics["per_pattern"]) == MMVP_PATTERNS
    assert metrics["pairs"] == dict.fromkeys(MMVP_PATTERNS, 1)
    right = scores["MCL"].right.float().numpy()
    assert np.allclose(list(metrics["per_pattern"].values()), right)
    assert metrics["average"] == pytest.approx(right.mean())
    _, low, high = bootstrap_average(scores["MCL"].right, scores["MCL"].patterns, n_boot=ce.N_BOOT)
    assert metrics["interval"] == pytest.approx([low / 100, high / 100])
    assert metrics["interval"][0] <= metrics["average"] <= metrics["interval"][1]
    table = ce.mmvp_table(scores, {"ViT stage 0": {p: 10.0 for p in MMVP_PATTERNS + ["average"]}})
    assert list(table.columns) == MMVP_PATTERNS + ["average", "95 % interval"]
    assert table.index[0] == "paper: ViT stage 0" and "this run: MCL" in table.index
    assert table.loc["this run: MCL", "average"] == pytest.approx(round(100 * right.mean(), 1))
    assert table.loc["paper: ViT stage 0", "95 % interval"] == ""
    assert table.loc["this run: MCL", "95 % interval"] == f"[{low:.1f}, {high:.1f}]"


def test_property_ami_finds_the_property_a_clustering_follows():
    rng = np.random.default_rng(0)
    props = {"color": rng.integers(0, 6, 600), "shape": rng.integers(0, 3, 600)}
    table = ce.property_ami([torch.as_tensor(props["color"]), torch.as_tensor(props["shape"])], props)
    assert table.loc["stage 0", "color"] == pytest.approx(1.0)
    assert table.loc["stage 1", "shape"] == pytest.approx(1.0)
    assert abs(table.loc["stage 0", "shape"]) < 0.02


def test_group_examples_takes_the_largest_groups_members_without_repeats():
    labels = torch.tensor([0] * 3 + [1] * 10 + [2] * 6)
    groups = ce.group_examples(labels, n_groups=2, per_group=4)
    assert len(groups) == 2
    assert set(labels[groups[0]].tolist()) == {1} and set(labels[groups[1]].tolist()) == {2}
    assert all(len(set(g.tolist())) == len(g) == 4 for g in groups)
    assert len(ce.group_examples(labels, n_groups=5, per_group=5)[2]) == 3


def test_soup_of_averages_all_or_only_the_mcl_stages():
    models = [create_clip("mcl-tiny-vit", image_size=32, seed=s) for s in (0, 1, 2)]
    everything = ce.soup_of(tiny_preset(soup="all"), models)
    mcl_only = ce.soup_of(tiny_preset(soup="mcl"), models)
    projs = [m.visual.proj.detach() for m in models]
    assert torch.allclose(everything.visual.proj, sum(projs) / 3, atol=1e-6)
    assert torch.allclose(mcl_only.visual.proj, (projs[1] + projs[2]) / 2, atol=1e-6)


def test_retrieval_sets_report_missing_data_sets_and_recall_is_monotone(tmp_path, monkeypatch):
    monkeypatch.setenv("MCL_DATA_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("MCL_DATA_MIRROR", "")
    monkeypatch.setenv("MCL_DATA_OFFLINE", "1")
    preset = tiny_preset(retrieval=("scenes", "coco"))
    sets, missing = ce.retrieval_sets(preset, 32, cache=tmp_path)
    assert list(sets) == ["scenes"] and list(missing) == ["coco"]
    images, captions = sets["scenes"]
    assert images.shape == (6, 3, 64, 64) and all(len(c) == 1 for c in captions)
    train, _ = make_captioned_scenes(6, size=64, seed=0)
    assert not torch.equal(train, images)  # held out: another random stream than the training scenes
    model = create_clip("mcl-tiny-vit", image_size=32, seed=0).eval()
    table = ce.retrieval_table({"m": model}, sets, device="cpu", ks=(1, 3, 6))
    recall = table["scenes"]["m"]
    assert recall["i2t@6"] == 1.0 and recall["t2i@6"] == 1.0  # 6 candidates: top-6 always hits
    assert recall["i2t@1"] <= recall["i2t@3"] <= recall["i2t@6"]


def test_the_search_summary_reads_the_rows_it_names():
    def run(gain):
        entry = {"average": 20.0, "interval": [19.0, 21.0]}
        return {"mmvp": dict.fromkeys(ce.SEARCH_COLUMNS, entry), "gain": {"mean": gain, "interval": [0, 1]}}

    def summary(gains, overlap):
        entry = {"average": 24.0, "interval": [23.0, 25.0]}
        return dict.fromkeys(ce.SEARCH_COLUMNS, entry) | {
            "seeds": list(range(len(gains))),
            "gain_per_seed": {str(s): g for s, g in enumerate(gains)},
            "gain_mean": float(np.mean(gains)),
            "gain_seed_sd": float(np.std(gains, ddof=1)),
            "intervals_overlap": overlap,
        }

    record = {
        "target": 5.0,
        "candidates": {
            ce.SEARCH_PRESET_ROW: {
                "runs": {"0": run(3.0), "1": run(1.0)},
                "summary": summary([3.0, 1.0], False),
            },
            ce.SEARCH_LONGER_ROW: {
                "runs": {"0": run(6.0), "1": run(2.0)},
                "summary": summary([6.0, 2.0], True),
            },
            "a": {"runs": {"0": run(-1.0)}},
            "b": {"runs": {"0": run(4.0)}},
            "only seed 1": {"runs": {"1": run(9.0)}},
        },
    }
    numbers = ce.clip_search_numbers(record)
    assert numbers["gain"] == 2.0 and numbers["gains"] == "3.0, 1.0" and numbers["apart"] == "do not overlap"
    assert numbers["longer_gain"] == 4.0 and numbers["mcl"] == "24.0 % [23.0, 25.0]"
    # the settings run at seed 0 only, against the preset's seed-0 gain (3.0)
    assert (numbers["n_others"], numbers["n_better"]) == (2, 1)
    assert (numbers["others_worst"], numbers["others_best"]) == (-1.0, 4.0)
    table = ce.clip_search_table(record)
    assert table.loc[(ce.SEARCH_PRESET_ROW, "mean 0, 1"), "gain"].startswith("2.0 (sd 1.4")
    assert table.loc[("b", "0"), "stage 0"] == "20.0 [19.0, 21.0]"
    assert len(table) == (2 + 1) + (2 + 1) + 1 + 1 + 1  # two seeds and their mean, twice; three single rows
