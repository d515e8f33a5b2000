"""The paper's numbers as data: internal consistency checks (averages agree with their rows)."""

import pytest

from mclbook import paper


@pytest.mark.parametrize("method", list(paper.BASELINES))
def test_baseline_average_matches_row(method):
    row = paper.BASELINES[method]
    values = [row[c] for c in paper.BASELINE_COLUMNS if c != "average"]
    assert sum(values) / len(values) == pytest.approx(row["average"], abs=0.006)


def test_clip_mmvp_average_matches_row():
    values = [paper.CLIP_MMVP[p] for p in paper.MMVP_PATTERNS]
    assert sum(values) / len(values) == pytest.approx(paper.CLIP_MMVP["average"], abs=0.05)


def test_stage_ami_is_symmetric_with_unit_diagonal():
    ami = paper.STAGE_AMI
    assert all(ami[i][i] == 1.0 for i in range(3))
    assert all(ami[i][j] == ami[j][i] for i in range(3) for j in range(3))
