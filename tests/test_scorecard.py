"""The scorecard's verdicts follow its written thresholds, on metrics made up for each case."""

import pytest

from mclbook import scorecard
from mclbook.scorecard import NOT_REPRODUCED, NOT_RUN, PARTLY, REPRODUCED


def claim(key):
    return next(c for c in scorecard.CLAIMS if c.key == key)


def suppression(accuracy, gain):
    return {"suppression": {"trifeature/shape": {"accuracy_gap": accuracy, "gain_gap": gain}}}


@pytest.mark.parametrize(
    "accuracy, gain, verdict",
    [
        ([0.12, 0.11, 0.13], [0.15, 0.10, 0.2], REPRODUCED),  # both readings >= 0.10
        ([0.12, 0.11, 0.13], [-0.2, -0.1, -0.15], PARTLY),  # one reading only
        ([0.06, 0.07, 0.05], [0.0, 0.01, -0.01], PARTLY),  # one reading between 0.05 and 0.10
        ([0.01, 0.0, 0.02], [-0.1, 0.0, 0.01], NOT_REPRODUCED),
    ],
)
def test_suppression_needs_both_readings(accuracy, gain, verdict):
    finding = scorecard.judge(
        claim("suppression-trifeature"), {"01_feature_suppression": suppression(accuracy, gain)}
    )
    assert finding.verdict == verdict


def runs(gaps, column="trifeature/shape"):
    rows = []
    for seed, gap in enumerate(gaps):
        rows.append({"method": "SimCLR ensemble", "column": column, "seed": seed, "accuracy": 0.7})
        rows.append({"method": "MCL", "column": column, "seed": seed, "accuracy": 0.7 + gap})
    return {"runs": rows}


@pytest.mark.parametrize(
    "gaps, verdict",
    [
        ([0.06, 0.05, 0.07], REPRODUCED),
        ([0.06], PARTLY),  # the threshold on one seed only
        ([0.02, 0.04, 0.03], PARTLY),
        ([-0.01, 0.0, -0.02], NOT_REPRODUCED),
    ],
)
def test_beyond_the_ensemble_needs_the_margin_on_three_seeds(gaps, verdict):
    finding = scorecard.judge(claim("beyond-ensemble-trifeature"), {"03_baselines": runs(gaps)})
    assert finding.verdict == verdict and f"{len(gaps)} seed" in finding.ours


def test_a_missing_chapter_is_not_run_and_a_missing_number_is_said():
    assert scorecard.judge(claim("stages-differ"), {}).verdict == NOT_RUN
    finding = scorecard.judge(claim("stages-differ"), {"04_what_each_stage_learns": {}})
    assert finding.verdict == NOT_RUN and "stage_ami" in finding.ours


def test_mmvp_gain_needs_five_points_on_three_seeds_and_separate_intervals():
    def m(per_seed, apart):
        cell = {"average": 20.0, "interval": [19.0, 21.0]}
        summary = {
            "gain_per_seed": {str(s): g for s, g in enumerate(per_seed)},
            "intervals_overlap": not apart,
            "stage 0 + stage 1": cell,
            "stage 0 + control": cell,
        }
        return {"search:clip_search": {"candidates": {scorecard.CLIP_ROW: {"summary": summary}}}}

    key = claim("mcl-clip-mmvp")
    assert scorecard.judge(key, m([6.0, 5.5, 7.0], True)).verdict == REPRODUCED
    assert scorecard.judge(key, m([6.0, 5.5], True)).verdict == PARTLY  # two seeds only
    assert scorecard.judge(key, m([6.0, 5.5, 7.0], False)).verdict == PARTLY
    assert scorecard.judge(key, m([1.0, -0.5, 2.0], True)).verdict == PARTLY
    assert scorecard.judge(key, m([-1.0, -0.5, 0.0], False)).verdict == NOT_REPRODUCED
    assert "3 seeds" in scorecard.judge(key, m([6.0, 5.5, 7.0], True)).ours


def test_the_clip_record_summary_follows_from_its_per_pair_outcomes():
    """The committed CLIP search record's seed-averaged intervals and gains, recomputed from the per-pair
    outcomes stored with every run (book/search_clip.py's summarize)."""
    import importlib.util
    from pathlib import Path

    from mclbook.results import search_record

    path = Path(__file__).resolve().parents[1] / "book" / "search_clip.py"
    spec = importlib.util.spec_from_file_location("search_clip", path)
    search_clip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(search_clip)
    row = search_record("clip_search")["candidates"][scorecard.CLIP_ROW]
    again = search_clip.summarize(row["runs"])
    assert again["gain_per_seed"] == pytest.approx(row["summary"]["gain_per_seed"])
    for column in ("stage 0 + stage 1", "stage 0 + control"):
        assert again[column]["average"] == pytest.approx(row["summary"][column]["average"])
        assert again[column]["interval"] == pytest.approx(row["summary"][column]["interval"])
    assert again["intervals_overlap"] == row["summary"]["intervals_overlap"]


def test_every_claim_shows_in_a_chapter_of_the_book():
    from pathlib import Path

    from mclbook.build import chapters_in_toc

    root = Path(__file__).resolve().parents[1]
    chapters = {Path(c).name for c in chapters_in_toc(root / "_toc.yml")}
    assert {c.chapter for c in scorecard.CLAIMS} <= chapters
