"""The bootstrap interval of an MMVP average, against a naive loop and closed-form cases."""

import numpy as np
import pytest
import torch

from mcl.clip.eval import bootstrap_average, score_mmvp


def naive_bootstrap(right, patterns, n_boot, level, seed):
    """The stratified percentile bootstrap written out: the same draws (one [n_boot, n] block per pattern,
    in order of first appearance), then one replicate at a time in plain Python."""
    rng = np.random.default_rng(seed)
    order = list(dict.fromkeys(patterns))
    members = {name: [float(r) for r, p in zip(right, patterns, strict=True) if p == name] for name in order}
    draws = {name: rng.integers(len(members[name]), size=(n_boot, len(members[name]))) for name in order}
    replicates = []
    for b in range(n_boot):
        per_pattern = [sum(members[n][i] for i in draws[n][b]) / len(members[n]) for n in order]
        replicates.append(100.0 * sum(per_pattern) / len(order))
    replicates.sort()
    average = 100.0 * sum(sum(v) / len(v) for v in members.values()) / len(order)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return average, low, high


@pytest.mark.parametrize("dtype", [torch.bool, torch.float64])
def test_bootstrap_matches_a_naive_loop(dtype):
    gen = torch.Generator().manual_seed(0)
    patterns = ["a"] * 7 + ["b"] * 12 + ["c"] * 5
    patterns = [patterns[i] for i in torch.randperm(len(patterns), generator=gen)]  # interleaved
    right = torch.rand(len(patterns), generator=gen) < 0.4
    right = right.to(dtype) if dtype != torch.bool else right
    got = bootstrap_average(right, patterns, n_boot=300, level=0.9, seed=5)
    want = naive_bootstrap(right.tolist(), patterns, 300, 0.9, 5)
    assert got == pytest.approx(want, abs=1e-9)
    assert bootstrap_average(right, patterns, n_boot=300, level=0.9, seed=5) == got  # seeded
    assert got[1] <= got[0] <= got[2]


def test_average_is_score_mmvps_and_result_interval_agrees():
    gen = torch.Generator().manual_seed(1)
    img, txt = torch.randn(30, 2, 8, generator=gen), torch.randn(30, 2, 8, generator=gen)
    patterns = ["x"] * 10 + ["y"] * 20
    result = score_mmvp(img, txt, patterns)
    interval = result.interval(n_boot=200, seed=3)
    assert interval[0] == pytest.approx(result.average)
    assert interval == bootstrap_average(result.right, patterns, n_boot=200, seed=3)


def test_degenerate_and_closed_form_cases():
    patterns = ["a"] * 50 + ["b"] * 50
    # a pattern all right and one all wrong: every replicate is the same, 50 %
    right = torch.tensor([True] * 50 + [False] * 50)
    assert bootstrap_average(right, patterns) == pytest.approx((50.0, 50.0, 50.0))
    # half right in every pattern, many pairs: the interval approaches the normal one, whose half-width is
    # 1.96 * 100 * sqrt(p (1 - p) / n) / (number of patterns) * sqrt(number of patterns)
    n = 400
    right = torch.tensor(([True, False] * (n // 2)) * 2)
    average, low, high = bootstrap_average(right, ["a"] * n + ["b"] * n, n_boot=4000, seed=0)
    half = 1.96 * 100 * np.sqrt(0.25 / n) / np.sqrt(2)
    assert average == 50.0
    assert (high - low) / 2 == pytest.approx(half, rel=0.08)


def test_bootstrap_rejects_bad_arguments():
    right, patterns = torch.ones(4, dtype=torch.bool), ["a"] * 4
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_average(right, patterns, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_average(right, patterns, level=1.0)
    with pytest.raises(ValueError, match="len\\(patterns\\)"):
        bootstrap_average(right, patterns[:3])
