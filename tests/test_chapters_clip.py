"""The CLIP chapters (06-08) at smoke scale: their results files hold complete, well-formed metrics."""

from __future__ import annotations

import json

import pytest
from conftest import read_results

from mclbook.paper import MMVP_PATTERNS

pytestmark = pytest.mark.slow  # executes chapters or spawns processes

CHAPTERS = ("06_clip_blind_pairs", "07_mcl_clip", "08_soup_and_retrieval")


def check_mmvp_entry(entry: dict) -> None:
    """One MMVP entry: every pattern once, fractions that are multiples of 1 / pairs, the mean as average."""
    assert list(entry["per_pattern"]) == MMVP_PATTERNS
    assert list(entry["pairs"]) == MMVP_PATTERNS
    for pattern, accuracy in entry["per_pattern"].items():
        n = entry["pairs"][pattern]
        assert n >= 1
        assert 0.0 <= accuracy <= 1.0
        assert abs(accuracy * n - round(accuracy * n)) < 1e-6, (pattern, accuracy, n)
    mean = sum(entry["per_pattern"].values()) / len(MMVP_PATTERNS)
    assert entry["average"] == pytest.approx(mean)


def test_each_clip_chapter_wrote_results_with_provenance(smoke_book):
    for name in CHAPTERS:
        payload = json.loads((smoke_book / f"{name}.json").read_text())
        assert payload["scale"] == "smoke"
        prov = payload["provenance"]
        assert prov["seed"] == 0 and prov["wall_time_s"] > 0
        assert prov["parameters"]["arch"] == "mcl-tiny-vit"


def test_blind_pairs_chapter_scores_stage0_per_pattern(smoke_book):
    metrics = read_results(smoke_book, "06_clip_blind_pairs")
    check_mmvp_entry(metrics["mmvp"]["stage 0"])
    assert metrics["chance"] == 0.25
    below = [p for p, v in metrics["mmvp"]["stage 0"]["per_pattern"].items() if v <= 0.25]
    assert metrics["patterns_at_or_below_chance"] == below
    losses = metrics["stage0"]["losses"]
    assert len(losses) >= 1 and all(loss > 0 for loss in losses)


def test_mcl_chapter_scores_every_stage_and_the_concatenation(smoke_book):
    metrics = read_results(smoke_book, "07_mcl_clip")
    n = metrics["n_stages"]
    expected = {f"stage {s}" for s in range(n)} | {"MCL"}
    assert expected <= set(metrics["mmvp"])
    for entry in metrics["mmvp"].values():
        check_mmvp_entry(entry)
    # stage 0 here is the same cached model chapter 06 scored
    stage0 = read_results(smoke_book, "06_clip_blind_pairs")["mmvp"]["stage 0"]
    assert metrics["mmvp"]["stage 0"]["per_pattern"] == pytest.approx(stage0["per_pattern"])
    ami = metrics["stage_ami"]
    assert len(ami) == n and all(len(row) == n for row in ami)
    assert all(ami[i][i] == pytest.approx(1.0) for i in range(n))
    assert all(ami[i][j] == pytest.approx(ami[j][i]) for i in range(n) for j in range(n))
    assert len(metrics["sampler"]) == n - 1
    for row in metrics["sampler"]:
        assert row["pseudo-label groups"] >= 2
        assert row["homogeneous batches / epoch"] + row["mixed batches / epoch"] >= 1
    assert set(metrics["property_ami"]) == {f"stage {s}" for s in range(n)}
    assert sorted(metrics["losses"]) == [f"stage {s}" for s in range(1, n)]


def test_soup_chapter_reports_monotone_recall_in_unit_range(smoke_book):
    metrics = read_results(smoke_book, "08_soup_and_retrieval")
    assert "scenes" in metrics["retrieval"]
    n_stages = read_results(smoke_book, "07_mcl_clip")["n_stages"]
    for set_name, by_model in metrics["retrieval"].items():
        assert set(by_model) == {f"stage {s}" for s in range(n_stages)} | {"soup"}, set_name
        for values in by_model.values():
            for direction in ("i2t", "t2i"):
                r1, r5, r10 = (values[f"{direction}@{k}"] for k in (1, 5, 10))
                assert 0.0 <= r1 <= r5 <= r10 <= 1.0
    n_images, n_captions = metrics["retrieval_sizes"]["scenes"]
    assert n_images == n_captions >= 10  # one caption per held-out scene
    for name in ("stage 0", "MCL", "soup"):
        check_mmvp_entry(metrics["mmvp"][name])
    mcl = read_results(smoke_book, "07_mcl_clip")["mmvp"]["MCL"]
    assert metrics["mmvp"]["MCL"]["per_pattern"] == pytest.approx(mcl["per_pattern"])
