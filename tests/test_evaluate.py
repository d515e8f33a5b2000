"""Linear probes and kNN against scikit-learn and closed-form cases."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from mcl.evaluate import (
    fit_logistic_regression,
    knn_accuracy,
    linear_probe,
    nearest_neighbours,
    occlusion_map,
    probe_attributes,
)


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


def sklearn_objective(x, y, weight, bias, C=1.0):
    """scikit-learn's LogisticRegression objective: mean cross-entropy + ||W||^2 / (2 C N)."""
    return float(F.cross_entropy(x @ weight + bias, y) + weight.square().sum() / (2 * C * len(x)))


@pytest.mark.slow
@pytest.mark.parametrize(("dim", "classes", "C"), [(16, 3, 1.0), (40, 10, 1.0), (40, 10, 0.01)])
def test_logistic_regression_matches_scikit_learn(dim, classes, C):
    x, y = blobs(1500, dim, classes, 8.0, dim + classes)  # overlapping classes: a non-trivial optimum
    x = x.double()
    weight, bias = fit_logistic_regression(x, y, C=C, tol=1e-8)
    ref = LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(x.numpy(), y.numpy())
    ref_w, ref_b = torch.from_numpy(ref.coef_.T), torch.from_numpy(ref.intercept_)
    ours, theirs = sklearn_objective(x, y, weight, bias, C), sklearn_objective(x, y, ref_w, ref_b, C)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert torch.linalg.norm(weight - ref_w) / torch.linalg.norm(ref_w) < 1e-3
    predicted = (x @ weight + bias).argmax(1).numpy()
    assert np.mean(predicted == ref.predict(x.numpy())) > 0.995


def test_probe_attributes_match_the_scikit_learn_pipeline():
    x, shape = blobs(2000, 24, 5, 7.0, 11)
    texture = (
        x[:, 0] + 3 * torch.randn(2000, generator=torch.Generator().manual_seed(12)) > 0
    ).long() * 7 + 3
    labels = {"shape": shape, "texture": texture}  # texture's classes are 3 and 10: any integers work
    ours = probe_attributes(
        x[:1500], {k: v[:1500] for k, v in labels.items()}, x[1500:], {k: v[1500:] for k, v in labels.items()}
    )
    scaler = StandardScaler().fit(x[:1500].numpy())
    for name, y in labels.items():
        ref = LogisticRegression(max_iter=1000).fit(scaler.transform(x[:1500].numpy()), y[:1500].numpy())
        reference = ref.score(scaler.transform(x[1500:].numpy()), y[1500:].numpy())
        assert ours[name] == pytest.approx(reference, abs=0.006)  # at most 3 of 500 test points flip


def test_probe_attributes_rejects_bad_input():
    x, y = blobs(100, 4, 2, 1.0, 13)
    with pytest.raises(ValueError, match="single class"):
        probe_attributes(x, {"a": torch.zeros(100)}, x, {"a": y})
    with pytest.raises(ValueError, match="differ in length"):
        probe_attributes(x, {"a": y[:50]}, x, {"a": y})
    with pytest.raises(ValueError, match="C=0"):
        linear_probe(x, y, x, y, C=0)


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


def test_nearest_neighbours_match_a_naive_search():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g)
    anchors = torch.tensor([0, 7, 49])
    got = nearest_neighbours(x, anchors, k=3)
    for row, a in zip(got.tolist(), anchors.tolist(), strict=True):
        sims = [(float(F.cosine_similarity(x[a], x[j], dim=0)), j) for j in range(50) if j != a]
        assert row == [j for _, j in sorted(sims, reverse=True)[:3]]
    with pytest.raises(ValueError, match="k="):
        nearest_neighbours(x, anchors, k=50)


def test_occlusion_map_finds_the_only_region_the_encoder_reads():
    # an encoder that reads only the top-left 4x4 corner: occluding elsewhere changes nothing
    def encode(x):
        return torch.cat([x[:, :, :4, :4].flatten(1), torch.ones(len(x), 1)], dim=1)

    images = torch.randint(
        0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8
    )
    heat = occlusion_map(encode, images, patch=4, stride=4)
    assert heat.shape == (2, 16, 16)
    assert (heat[:, :4, :4] > 0).all()
    assert heat[:, 4:, :].max() < 1e-6 and heat[:, :, 4:].max() < 1e-6
    assert heat[:, :4, :4].min() > 1e-3


def test_neighbour_agreement_against_a_naive_loop():
    from mcl.evaluate import neighbour_agreement

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    unit = x / x.norm(dim=1, keepdim=True)
    hits = 0
    for i in range(40):
        sims = [(float(unit[i] @ unit[j]), j) for j in range(40) if j != i]
        hits += sum(int(y[j] == y[i]) for _, j in sorted(sims, reverse=True)[:4])
    assert neighbour_agreement(x, y, k=4) == pytest.approx(hits / (40 * 4))
    clustered = torch.cat(
        [torch.randn(20, 5, generator=g) * 0.01 + 10, torch.randn(20, 5, generator=g) * 0.01 - 10]
    )
    assert neighbour_agreement(clustered, torch.arange(40) // 20, k=3) == 1.0
    with pytest.raises(ValueError, match="labels must be"):
        neighbour_agreement(x, y[:10])
