"""Linear probes and kNN against scikit-learn and closed-form cases."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from mcl.evaluate import knn_accuracy, linear_probe, probe_attributes


def blobs(n: int, d: int, classes: int, spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 5
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + spread * torch.randn(n, d, generator=g), y


def test_linear_probe_separable_data_is_perfect():
    x, y = blobs(600, 8, 4, 0.1, 0)
    assert linear_probe(x[:400], y[:400], x[400:], y[400:]) == 1.0


def test_linear_probe_random_labels_is_near_chance():
    x, _ = blobs(2000, 8, 4, 1.0, 1)
    y = torch.randint(0, 4, (2000,), generator=torch.Generator().manual_seed(2))
    acc = linear_probe(x[:1000], y[:1000], x[1000:], y[1000:])
    assert abs(acc - 0.25) < 4 * (0.25 * 0.75 / 1000) ** 0.5


def test_linear_probe_is_scale_invariant_per_feature():
    x, y = blobs(600, 8, 3, 3.0, 3)
    scaled = x * torch.logspace(-3, 3, 8)
    assert linear_probe(x[:400], y[:400], x[400:], y[400:]) == pytest.approx(
        linear_probe(scaled[:400], y[:400], scaled[400:], y[400:]), abs=0.01
    )


def test_probe_attributes_one_accuracy_per_attribute():
    x, y = blobs(400, 6, 2, 0.1, 4)
    noise = torch.randint(0, 2, (400,), generator=torch.Generator().manual_seed(5))
    acc = probe_attributes(
        x[:300], {"a": y[:300], "b": noise[:300]}, x[300:], {"a": y[300:], "b": noise[300:]}
    )
    assert set(acc) == {"a", "b"} and acc["a"] == 1.0 and acc["b"] < 0.8
    with pytest.raises(ValueError, match="different attributes"):
        probe_attributes(x, {"a": y}, x, {"b": y})


@pytest.mark.parametrize("k", [1, 5, 15])
def test_knn_matches_scikit_learn_cosine(k):
    x, y = blobs(800, 10, 2, 4.0, 6)
    ours = knn_accuracy(x[:600], y[:600], x[600:], y[600:], k=k, chunk_size=64)
    ref = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(x[:600].numpy(), y[:600].numpy())
    assert ours == pytest.approx(float(np.mean(ref.predict(x[600:].numpy()) == y[600:].numpy())))


def test_knn_rejects_bad_k():
    x, y = blobs(10, 2, 2, 1.0, 7)
    with pytest.raises(ValueError, match="k=11"):
        knn_accuracy(x, y, x, y, k=11)
