"""MMVP-VLM: the loader on the real layout (written synthetically), its errors, the synthetic pairs, the
captions."""

import csv
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from mcl.data.mmvp import (
    CSV_COLUMNS,
    IMAGES_DIR,
    PATTERN_ABBREVIATIONS,
    PATTERN_PROPERTY,
    PATTERNS,
    QUESTIONS_CSV,
    load_mmvp_vlm,
    load_pair_images,
    make_captioned_scenes,
    synthetic_pair_specs,
    write_synthetic_mmvp,
)
from mcl.data.scenes import PROPERTIES, SceneSpec, caption, describe, render_scene, render_scenes


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_synthetic_mmvp(tmp_path_factory.mktemp("mmvp") / "MMVP_VLM")


@pytest.fixture()
def small(tmp_path):
    return write_synthetic_mmvp(tmp_path / "small", pairs_per_pattern=1, seed=3)


def test_pattern_names_and_abbreviations():
    assert len(PATTERNS) == 9 and list(PATTERN_ABBREVIATIONS) == list(PATTERNS)
    assert list(PATTERN_ABBREVIATIONS.values()) == [
        "O&D",
        "PSF",
        "S&C",
        "Q&C",
        "P&R",
        "C&A",
        "S&P",
        "Texts",
        "V&P",
    ]
    assert sorted(PATTERN_PROPERTY.values()) == sorted(PROPERTIES)


def test_round_trip_has_the_real_layout(bench):
    with (bench / QUESTIONS_CSV).open(newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 1 + 270
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 271))
    assert len(list((bench / IMAGES_DIR).glob("*/*.jpg"))) == 270
    pairs = load_mmvp_vlm(bench)
    assert len(pairs) == 135
    assert [p.pattern for p in pairs] == [p for p in PATTERNS for _ in range(15)]  # blocks of 15, as scored
    for k, pair in enumerate(pairs):
        assert [int(p.stem) for p in pair.image_paths] == [2 * k + 1, 2 * k + 2]
        assert all(
            p.parent.name == pair.pattern and p.parent.parent.name == IMAGES_DIR for p in pair.image_paths
        )


def test_statements_match_their_images(bench):
    """Each statement is its own scene's clause for the pattern, and each image is its own scene's render."""
    pairs = load_mmvp_vlm(bench)
    specs = synthetic_pair_specs(15, seed=0)
    for pair, (pattern, s1, s2) in zip(pairs, specs, strict=True):
        prop = PATTERN_PROPERTY[pattern]
        assert pair.pattern == pattern
        assert pair.statements == (describe(s1, prop), describe(s2, prop))
        assert pair.statements[0] != pair.statements[1]
        images = load_pair_images(pair, size=64).float()
        renders = torch.from_numpy(np.stack([render_scene(s1), render_scene(s2)])).permute(0, 3, 1, 2).float()
        own = (images - renders).abs().mean((1, 2, 3))
        swapped = (images - renders.flip(0)).abs().mean((1, 2, 3))
        assert (own < 2.0).all(), own  # only JPEG error
        assert (own < swapped).all(), (pattern, own, swapped)


def test_each_pair_differs_only_in_its_patterns_property():
    names = {
        "orientation": "arrow",
        "presence": "dot",
        "state": "filled",
        "quantity": "count",
        "position": "side",
        "color": "color",
        "shape": "shape",
        "text": "word",
        "viewpoint": "near",
    }
    for pattern, s1, s2 in synthetic_pair_specs(15, seed=1):
        a, b = dataclasses.asdict(s1), dataclasses.asdict(s2)
        assert [k for k in a if a[k] != b[k]] == [names[PATTERN_PROPERTY[pattern]]]
        image1, image2 = render_scene(s1).astype(int), render_scene(s2).astype(int)
        assert np.abs(image1 - image2).max() > 0, pattern
    # orientation pairs contrast opposite directions
    for pattern, s1, s2 in synthetic_pair_specs(15, seed=1):
        if pattern == "Orientation":
            assert {s1.arrow, s2.arrow} in ({"left", "right"}, {"up", "down"})


def test_statements_use_the_caption_vocabulary(bench):
    _, captions = make_captioned_scenes(400, seed=0)
    clauses = {c for cap in captions for c in cap.split(", ")}
    statements = {s for pair in load_mmvp_vlm(bench) for s in pair.statements}
    assert statements <= clauses, statements - clauses


def test_captions_state_every_property():
    rng = np.random.default_rng(0)
    from mcl.data.scenes import sample_scene

    for _ in range(50):
        spec = sample_scene(rng)
        parts = caption(spec).split(", ")
        assert parts == [describe(spec, p) for p in PROPERTIES]
    spec = SceneSpec(
        arrow="up",
        dot=True,
        filled=False,
        count=2,
        side="right",
        color="blue",
        shape="square",
        word="dog",
        near=False,
    )
    assert caption(spec) == (
        "the arrow points up, the objects have a dot, the objects are hollow, there are two objects, "
        "the objects are right of the star, the objects are blue, the objects are squares, the text "
        "says dog, "
        "the objects are seen from far away"
    )


def test_captioned_scenes_types_and_determinism():
    images, captions = make_captioned_scenes(40, seed=4)
    assert images.dtype == torch.uint8 and images.shape == (40, 3, 64, 64) and len(captions) == 40
    again, captions_again = make_captioned_scenes(40, seed=4)
    other, captions_other = make_captioned_scenes(40, seed=5)
    assert torch.equal(images, again) and captions == captions_again
    assert not torch.equal(images, other) and captions != captions_other
    assert make_captioned_scenes(0)[0].shape == (0, 3, 64, 64)


def test_scenes_stay_inside_the_image():
    """The widest row (three objects up close, jitter at its extremes) leaves the border columns empty."""
    for dx, arrow in ((-0.035, "up"), (0.035, "right"), (0.035, "down")):
        spec = SceneSpec(
            arrow=arrow, count=3, near=True, background=240, row_offset=(dx, 0.04), band_offset=(0.04, 0.03)
        )
        img = render_scenes([spec])[0].int()
        assert (img[:, :, 0] == 240).all() and (img[:, :, -1] == 240).all()
        assert (img[:, 0, :] == 240).all() and (img[:, -1, :] == 240).all()


def test_synthetic_benchmark_is_deterministic(tmp_path):
    a = write_synthetic_mmvp(tmp_path / "a", pairs_per_pattern=1, seed=2)
    b = write_synthetic_mmvp(tmp_path / "b", pairs_per_pattern=1, seed=2)
    c = write_synthetic_mmvp(tmp_path / "c", pairs_per_pattern=1, seed=9)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 1 + 18
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


def test_missing_questions_csv_is_named(small):
    (small / QUESTIONS_CSV).unlink()
    with pytest.raises(
        FileNotFoundError, match="Questions.csv is missing.*huggingface.co/datasets/MMVP/MMVP_VLM"
    ):
        load_mmvp_vlm(small)


def test_missing_image_is_named(small):
    missing = small / IMAGES_DIR / "Color" / "12.jpg"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=f"image {missing}"):
        load_mmvp_vlm(small)


def test_missing_folders_are_named(small, tmp_path):
    shutil.rmtree(small / IMAGES_DIR / "Text")
    with pytest.raises(FileNotFoundError, match="pattern folder .*Text is missing"):
        load_mmvp_vlm(small)
    shutil.rmtree(small / IMAGES_DIR)
    with pytest.raises(FileNotFoundError, match="MLLM_VLM Images is missing"):
        load_mmvp_vlm(small)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mmvp_vlm(tmp_path / "nowhere")


def rewrite_csv(root, edit):
    path = root / QUESTIONS_CSV
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(edit(rows))


def test_malformed_questions_csv_raises(small):
    rewrite_csv(small, lambda rows: [["Question ID", "Type", "Text"]] + rows[1:])
    with pytest.raises(ValueError, match="lacks the column"):
        load_mmvp_vlm(small)
    rewrite_csv(small, lambda rows: [list(CSV_COLUMNS)] + rows[1:] + [["19", "Color", "odd one out"]])
    with pytest.raises(ValueError, match="even"):
        load_mmvp_vlm(small)
    rewrite_csv(small, lambda rows: rows[:1] + [rows[2], rows[1]] + rows[3:-1])
    with pytest.raises(ValueError, match="not a pair"):
        load_mmvp_vlm(small)
    rewrite_csv(small, lambda rows: rows[:1] + [rows[2], rows[1]] + rows[3:])
    rewrite_csv(small, lambda rows: rows[:2] + [[rows[2][0], "Color", rows[2][2]]] + rows[3:])
    with pytest.raises(ValueError, match="different Types"):
        load_mmvp_vlm(small)


def test_pair_images_are_resized_and_centre_cropped(small, tmp_path):
    pair = load_mmvp_vlm(small)[0]
    assert load_pair_images(pair, size=32).shape == (2, 3, 32, 32)
    # a wide image: the shorter side goes to size, the centre is kept
    from PIL import Image

    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, 20:60] = 200
    for p in pair.image_paths:
        Image.fromarray(wide).save(p, quality=95, subsampling=0)
    images = load_pair_images(pair, size=20)
    assert images.shape == (2, 3, 20, 20) and (images.float().mean() - 200).abs() < 3
    with pytest.raises(ValueError, match="size"):
        load_pair_images(pair, size=0)


def test_captions_leave_out_clauses_with_their_probability():
    from mcl.data.scenes import caption_scenes, sample_scene

    rng = np.random.default_rng(0)
    specs = [sample_scene(rng) for _ in range(2000)]
    mention = {"orientation": 0.0, "text": 0.25}
    captions = caption_scenes(specs, mention=mention, seed=3)
    assert captions == caption_scenes(specs, mention=mention, seed=3)  # deterministic per seed
    assert captions != caption_scenes(specs, mention=mention, seed=4)
    for spec, cap in zip(specs, captions, strict=True):
        clauses = cap.split(", ")
        # the clauses kept are the full caption's, in its order; the other seven are always there
        full = [describe(spec, p) for p in PROPERTIES]
        assert clauses == [c for c in full if c in clauses]
        assert describe(spec, "orientation") not in clauses
        assert {describe(spec, p) for p in PROPERTIES if p not in mention} <= set(clauses)
    kept = np.mean([describe(s, "text") in c.split(", ") for s, c in zip(specs, captions, strict=True)])
    assert abs(kept - 0.25) < 4 * np.sqrt(0.25 * 0.75 / len(specs))
    assert caption_scenes(specs[:5]) == [caption(s) for s in specs[:5]]
    assert caption_scenes(specs[:1], mention=dict.fromkeys(PROPERTIES, 0.0)) == [""]


def test_leaving_out_clauses_keeps_the_images():
    images, captions = make_captioned_scenes(12, seed=2)
    same, fewer = make_captioned_scenes(12, seed=2, mention={"color": 0.0, "shape": 0.5})
    assert torch.equal(images, same)
    assert all("red" not in c and "blue" not in c for c in fewer) and captions != fewer


def test_mention_is_checked():
    from mcl.data.scenes import caption_scenes

    spec = SceneSpec()
    with pytest.raises(ValueError, match="colour"):
        caption_scenes([spec], mention={"colour": 0.5})
    with pytest.raises(ValueError, match="probabilities"):
        caption_scenes([spec], mention={"color": 1.5})
    with pytest.raises(ValueError, match="not a scene property"):
        caption(spec, ["size"])
