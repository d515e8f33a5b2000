"""Chapter 1 (feature suppression) at smoke scale: the results file it writes has every method, data set and
attribute, with accuracies and gains that are consistent with each other."""

import json
from pathlib import Path

import pytest
from conftest import ROOT, read_results

pytestmark = pytest.mark.slow  # executes chapters or spawns processes

ATTRIBUTES = {"trifeature": ["shape", "texture", "color"], "cifar_mnist": ["cifar", "mnist"]}
METHODS = ["SimCLR", "MoCo-v2", "random init"]
CONTROLS = {  # data set -> (control methods, the attributes they are probed on)
    "cifar_mnist": (["SimCLR, CIFAR only", "random init, CIFAR only"], ["cifar"]),
    "trifeature": (["SimCLR, one colour", "random init, one colour"], ["shape", "texture"]),
}


@pytest.fixture(scope="module")
def metrics(smoke_book: Path) -> dict:
    return read_results(smoke_book, "01_feature_suppression")


def test_one_probe_per_method_data_set_and_attribute(metrics):
    probes = metrics["probes"]
    assert set(probes) == set(ATTRIBUTES)
    for name, methods in probes.items():
        controls, control_attributes = CONTROLS[name]
        assert set(methods) == set(METHODS + controls)
        for method, by_attribute in methods.items():
            expected = control_attributes if method in controls else ATTRIBUTES[name]
            assert list(by_attribute) == expected, (name, method)
            for row in by_attribute.values():
                assert len(row["seeds"]) == len(metrics["seeds"][name]) >= 1
                assert all(0.0 <= a <= 1.0 for a in row["seeds"])
                assert row["mean"] == pytest.approx(sum(row["seeds"]) / len(row["seeds"]))
                assert row["std"] >= 0.0


def test_gains_and_suppression_follow_from_the_probes(metrics):
    probes = metrics["probes"]
    for name, attributes in ATTRIBUTES.items():
        for attribute in attributes:
            gain = metrics["gain_over_random"][f"{name}/{attribute}"]
            for method in ("SimCLR", "MoCo-v2"):
                trained, untrained = probes[name][method][attribute], probes[name]["random init"][attribute]
                assert gain[method] == pytest.approx(trained["mean"] - untrained["mean"])
    cm = probes["cifar_mnist"]
    control_gain = cm["SimCLR, CIFAR only"]["cifar"]["mean"] - cm["random init, CIFAR only"]["cifar"]["mean"]
    for method in ("SimCLR", "MoCo-v2"):
        method_gain = cm[method]["cifar"]["mean"] - cm["random init"]["cifar"]["mean"]
        assert metrics["cifar_suppression"][method] == pytest.approx(control_gain - method_gain)
    tri = probes["trifeature"]
    for attribute in ("shape", "texture"):
        control_gain = (
            tri["SimCLR, one colour"][attribute]["mean"] - tri["random init, one colour"][attribute]["mean"]
        )
        simclr_gain = tri["SimCLR"][attribute]["mean"] - tri["random init"][attribute]["mean"]
        assert metrics["trifeature_control_gap"]["gain_over_random"][attribute] == pytest.approx(
            control_gain - simclr_gain
        )
        accuracy_gap = tri["SimCLR, one colour"][attribute]["mean"] - tri["SimCLR"][attribute]["mean"]
        assert metrics["trifeature_control_gap"]["accuracy"][attribute] == pytest.approx(accuracy_gap)


def test_neighbour_agreement_covers_each_model_and_attribute(metrics):
    agreement = metrics["neighbour_agreement"]
    assert set(agreement) == {f"{name}/{method}" for name in ATTRIBUTES for method in METHODS}
    for key, row in agreement.items():
        assert sorted(row) == sorted(ATTRIBUTES[key.split("/")[0]])
        assert all(0.0 <= v <= 1.0 for v in row.values())


def test_the_committed_search_record_is_complete():
    search = json.loads((ROOT / "book" / "data" / "cifar_mnist_search.json").read_text())
    assert search["candidates"] and search["margin"] == 0.05
    for row in search["candidates"].values():
        assert row["command"].startswith(".venv/bin/python book/search_cifar_mnist.py")
        probes = {k: v["cifar"] for k, v in row["probes"].items()}
        assert set(probes) == {"simclr", "control", "random", "random_control"}
        expected = (probes["control"] - probes["random_control"]) - (probes["simclr"] - probes["random"])
        assert row["suppression"] == pytest.approx(expected)
        assert row["shows"] == (row["suppression"] >= search["margin"])
