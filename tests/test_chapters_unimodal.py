"""The unimodal chapters at smoke scale: the results files they write hold what the book shows."""

import math

import numpy as np
import pytest
from conftest import SMOKE, read_results

pytestmark = pytest.mark.slow  # executes chapters or spawns processes

ATTRIBUTES = ["shape", "texture", "color"]


def accuracy(value) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def test_the_book_html_is_built_with_every_chapter(smoke_book):
    html = SMOKE / "_build" / "html"
    assert (html / "index.html").exists()
    for chapter in [
        "presets",
        "01_feature_suppression",
        "02_mcl_step_by_step",
        "03_baselines",
        "04_what_each_stage_learns",
        "05_linear_eval_by_stage",
        "06_clip_blind_pairs",
        "07_mcl_clip",
        "08_soup_and_retrieval",
    ]:
        page = html / "book" / f"{chapter}.html"
        assert page.exists(), page
        assert "Traceback" not in page.read_text()


def test_step_by_step_probes_every_stage_and_their_concatenation(smoke_book):
    m = read_results(smoke_book, "02_mcl_step_by_step")
    rows = m["probes"]
    assert {"stage 0", "stage 1", "random init", "stages 0..1"} <= set(rows)
    for row in rows.values():
        assert set(row) == set(ATTRIBUTES) and all(accuracy(v) for v in row.values())
    assert m["groups"][0] is None and m["groups"][1] >= 2  # stage 1 trains on pseudo-label groups
    assert all(math.isfinite(x) for x in m["final_loss"])
    for row in m["cluster_ami"].values():
        assert all(-0.1 <= v <= 1.0 for v in row.values())


def test_baselines_table_has_every_method_on_every_data_set(smoke_book):
    m = read_results(smoke_book, "03_baselines")
    seen = {(r["data"], r["method"]) for r in m["runs"]}
    for data in ["trifeature", "celeba", "cifar_mnist"]:
        for method in ["SimCLR", "MCL", "SimCLR ensemble", "IFM", "TS", "FD"]:
            assert (data, method) in seen
    assert all(accuracy(r["accuracy"]) for r in m["runs"])
    columns = {r["column"] for r in m["runs"]}
    assert {
        "celeba/hair",
        "celeba/smiling",
        "celeba/gender",
        "cifar_mnist/cifar",
        "cifar_mnist/mnist",
    } <= columns


def test_stage_ami_matrix_is_symmetric_with_a_unit_diagonal(smoke_book):
    m = read_results(smoke_book, "04_what_each_stage_learns")
    ami = np.array(m["stage_ami"])
    assert ami.shape[0] == ami.shape[1] >= 2
    np.testing.assert_allclose(np.diag(ami), 1.0)
    np.testing.assert_allclose(ami, ami.T)
    for row in m["neighbour_agreement"].values():
        assert all(accuracy(v) for v in row.values())


def test_linear_eval_has_mcl_and_the_equal_budget_ensemble_for_every_stage_count(smoke_book):
    acc = read_results(smoke_book, "05_linear_eval_by_stage")["accuracy"]
    assert {
        "random init",
        "MCL stage 0",
        "MCL stages 0+1",
        "SimCLR ensemble of 1",
        "SimCLR ensemble of 2",
    } <= set(acc)
    assert all(accuracy(v) for v in acc.values())
    # the ensemble of one is MCL's stage 0 itself (same seed, same run)
    assert acc["SimCLR ensemble of 1"] == pytest.approx(acc["MCL stage 0"])
