"""mcl.cluster against scikit-learn, torch.cdist, closed forms and invariants."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_mutual_info_score
from threadpoolctl import threadpool_limits

from mcl.cluster import KMeansResult, _lloyd, _Points, ami, ami_matrix, assign, kmeans


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread for torch and scikit-learn: on a shared 2-core machine, spinning thread pools are ~10x
    slower than one thread. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def blobs(n=1500, d=8, k=6, seed=0, std=1.0):
    x, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return torch.from_numpy(x.astype(np.float32)), y


@pytest.fixture(scope="module")
def gaussian():
    """Unstructured data: no true clusters, many local optima."""
    return np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)


def normalise(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# ------------------------------------------------------------------------------ against scikit-learn
def test_identical_partition_to_sklearn_on_separated_blobs():
    x, y = blobs()
    ours = kmeans(x, 6, seed=0)
    sk = KMeans(6, n_init=1, random_state=0).fit(x.numpy())
    assert ami(ours.labels, sk.labels_) == 1.0
    assert ami(ours.labels, y) == 1.0
    # same centroids up to the order of the clusters
    for j in range(6):
        mine = ours.labels == j
        other = sk.labels_[mine.numpy()][0]
        np.testing.assert_allclose(ours.centroids[j].numpy(), sk.cluster_centers_[other], atol=1e-4)
    assert ours.inertia == pytest.approx(sk.inertia_, rel=1e-4)
    assert ours.converged and ours.n_iter < 100


def test_inertia_within_one_percent_of_sklearn_on_unstructured_data(gaussian):
    sk = KMeans(10, n_init=10, random_state=0).fit(gaussian)
    # ours gets n_init=5 restarts against scikit-learn's best of 10
    ours = kmeans(torch.from_numpy(gaussian), 10, n_init=5, seed=0)
    assert ours.inertia <= 1.01 * sk.inertia_
    # inertia reported == inertia recomputed from the returned centroids
    _, cost = assign(torch.from_numpy(gaussian), ours.centroids)
    assert ours.inertia == pytest.approx(float(cost.double().sum()), rel=1e-5)


def test_single_run_inertia_close_to_sklearn_single_run(gaussian):
    sk = [KMeans(10, n_init=1, random_state=s).fit(gaussian).inertia_ for s in range(3)]
    ours = [kmeans(torch.from_numpy(gaussian), 10, seed=s).inertia for s in range(3)]
    assert np.mean(ours) <= 1.01 * np.mean(sk)


def test_spherical_matches_sklearn_on_normalised_direction_clusters():
    x, y = blobs(n=1200, d=8, k=5, seed=1, std=0.5)
    # the blob centres lie far from the origin (make_blobs' box is [-10, 10]^d): their directions separate
    xn = normalise(x.numpy())
    ours = kmeans(x, 5, spherical=True)
    sk = KMeans(5, n_init=1, random_state=0).fit(xn)
    assert ami(ours.labels, sk.labels_) == 1.0
    assert ami(ours.labels, y) == 1.0
    np.testing.assert_allclose(ours.centroids.norm(dim=1).numpy(), 1.0, atol=1e-5)
    # centroids are the normalised means of the members
    for j in range(5):
        mean = xn[(ours.labels == j).numpy()].mean(0)
        np.testing.assert_allclose(ours.centroids[j].numpy(), mean / np.linalg.norm(mean), atol=1e-5)


def test_spherical_objective_within_one_percent_of_sklearn(gaussian):
    xn = normalise(gaussian)
    sk = KMeans(10, n_init=10, random_state=0).fit(xn)
    _, sk_cost = assign(torch.from_numpy(xn), torch.from_numpy(sk.cluster_centers_), spherical=True)
    # ours: n_init=5; objective sum(1 - cos), scikit-learn's centroids scored the same way
    ours = kmeans(torch.from_numpy(gaussian), 10, spherical=True, n_init=5)
    assert ours.inertia <= 1.01 * float(sk_cost.double().sum())


def test_spherical_ignores_row_scale():
    x, _ = blobs(n=600, d=6, k=4, seed=2)
    scale = torch.rand(600, 1, generator=torch.Generator().manual_seed(0)) * 10 + 0.1
    a = kmeans(x, 4, spherical=True, seed=3)
    b = kmeans(x * scale, 4, spherical=True, seed=3)
    assert torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.centroids, b.centroids, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- naive checks, closed forms
def test_assign_matches_cdist():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 7, generator=g, dtype=torch.float64) + 5.0
    c = torch.randn(9, 7, generator=g, dtype=torch.float64) + 5.0
    labels, cost = assign(x, c)
    dist = torch.cdist(x, c) ** 2
    assert labels.dtype == torch.int64 and cost.dtype == torch.float32
    assert torch.equal(labels, dist.argmin(1))
    torch.testing.assert_close(cost, dist.min(1).values.float(), rtol=1e-5, atol=1e-5)
    # spherical: 1 - cosine similarity, naive loop
    ls, cs = assign(x, c, spherical=True)
    for i in range(0, 300, 37):
        cos = [float(x[i] @ c[j] / (x[i].norm() * c[j].norm())) for j in range(9)]
        assert int(ls[i]) == int(np.argmax(cos))
        assert float(cs[i]) == pytest.approx(1 - max(cos), abs=1e-6)


def test_assign_float32_is_precise_far_from_the_origin():
    g = torch.Generator().manual_seed(1)
    x64 = torch.randn(500, 32, generator=g, dtype=torch.float64) + 1000.0
    c64 = x64[:12] + 0.5 * torch.randn(12, 32, generator=g, dtype=torch.float64)
    labels, cost = assign(x64.float(), c64.float())
    dist = torch.cdist(x64.float().double(), c64.float().double()) ** 2
    assert torch.equal(labels, dist.argmin(1))
    torch.testing.assert_close(cost.double(), dist.min(1).values, rtol=1e-3, atol=1e-2)


def test_k_equals_one_and_k_equals_n_closed_forms():
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    one = kmeans(x, 1)
    torch.testing.assert_close(one.centroids, x.mean(0).float().unsqueeze(0))
    assert one.inertia == pytest.approx(float(((x - x.mean(0)) ** 2).sum()), rel=1e-10)
    assert torch.equal(one.labels, torch.zeros(50, dtype=torch.int64))
    every = kmeans(x, 50)
    assert every.inertia == pytest.approx(0.0, abs=1e-10)
    assert sorted(every.labels.tolist()) == list(range(50))


# ---------------------------------------------------------------------------------------- invariants
def test_chunked_equals_unchunked():
    x, _ = blobs(n=1000, d=5, k=4, seed=3, std=3.0)
    x = x.double()
    full = kmeans(x, 4, chunk_size=None, seed=1)
    small = kmeans(x, 4, chunk_size=64, seed=1)  # 15 full chunks and one of 40 rows
    assert torch.equal(full.labels, small.labels)
    torch.testing.assert_close(full.centroids, small.centroids)
    assert full.inertia == pytest.approx(small.inertia, rel=1e-12)
    assert full.n_iter == small.n_iter
    la, ca = assign(x, full.centroids)
    lb, cb = assign(x, full.centroids, chunk_size=13)
    assert torch.equal(la, lb) and torch.equal(ca, cb)


def test_deterministic_for_a_seed_on_cpu():
    x, _ = blobs(n=800, d=6, k=8, seed=4, std=4.0)
    a = kmeans(x, 8, seed=5, n_init=2)
    b = kmeans(x, 8, seed=5, n_init=2)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia and a.n_iter == b.n_iter


def test_more_restarts_never_worse(gaussian):
    x = torch.from_numpy(gaussian[:1000])
    one = kmeans(x, 10, seed=0, n_init=1)
    three = kmeans(x, 10, seed=0, n_init=3)  # its first run is the same as `one`
    assert three.inertia <= one.inertia


@pytest.mark.parametrize("second", ["duplicate", "far away"])
def test_empty_clusters_are_reseeded_from_a_bad_start(second):
    x, y = blobs(n=600, d=4, k=2, seed=5, std=0.5)
    first = x[torch.from_numpy(y == 0)].mean(0)
    # the second centre gets no point in the first E-step: a duplicate of the first (ties go to the
    # first) or a point far from all data. Far away, it stays empty forever unless it is moved to the point
    # farthest from its centroid, which lies in the other blob; then Lloyd finds the two blobs
    other = first.clone() if second == "duplicate" else torch.full((4,), 1e3)
    bar = type("NoBar", (), {"disable": True, "update": lambda self, n: None})()
    points = _Points(x, rows=64, spherical=False, offset=None)
    centers, its, converged = _lloyd(points, torch.stack([first, other]), 100, 0.0, bar)
    labels, _ = assign(x, centers)
    assert converged
    assert ami(labels, y) == 1.0


def test_fewer_distinct_points_than_k_warns():
    # only two distinct points: k-means++ must repeat a centre; the empty cluster is re-seeded, but the
    # final assignment ties it with its twin, so one cluster stays empty (as in scikit-learn), with a warning
    x = torch.cat([torch.zeros(30, 3), torch.ones(20, 3)])
    with pytest.warns(RuntimeWarning, match="only 2 distinct clusters"):
        res = kmeans(x, 3)
    assert res.inertia == pytest.approx(0.0, abs=1e-5)
    assert len(set(res.labels.tolist())) == 2
    for j in range(3):
        members = x[res.labels == j]
        assert torch.equal(members, members[:1].expand_as(members))


def test_float16_and_bfloat16_inputs():
    x, y = blobs(n=1000, d=16, k=5, seed=6)
    ref = kmeans(x, 5)
    for dtype in (torch.float16, torch.bfloat16):
        res = kmeans(x.to(dtype), 5)
        assert isinstance(res, KMeansResult)
        assert res.centroids.dtype == torch.float32 and res.labels.dtype == torch.int64
        assert ami(res.labels, y) == 1.0
        torch.testing.assert_close(res.centroids, ref.centroids, atol=0.05, rtol=0.01)
        labels, cost = assign(x.to(dtype), res.centroids)
        assert cost.dtype == torch.float32 and torch.equal(labels, res.labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, y = blobs(n=5000, d=32, k=7, seed=8)
    cpu = kmeans(x, 7, seed=2)
    gpu = kmeans(x.cuda(), 7, seed=2)
    half = kmeans(x.cuda().half(), 7, seed=2, chunk_size=1000)
    assert gpu.labels.device.type == "cuda" and gpu.centroids.device.type == "cuda"
    assert torch.equal(gpu.labels.cpu(), cpu.labels)
    torch.testing.assert_close(gpu.centroids.cpu(), cpu.centroids, atol=1e-4, rtol=1e-4)
    assert ami(half.labels, y) == 1.0
    labels, cost = assign(x.cuda(), cpu.centroids)
    assert torch.equal(labels.cpu(), cpu.labels) and cost.device.type == "cuda"


def test_progress_bar_runs(capsys):
    x, _ = blobs(n=200, d=3, k=3, seed=7)
    assert kmeans(x, 3, progress=True, n_init=2).converged


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k": 0}, "k=0"),
        ({"k": 11}, "k=11"),
        ({"k": 2.0}, "k=2.0"),
        ({"k": 2, "n_iter": 0}, "n_iter"),
        ({"k": 2, "n_init": 0}, "n_init"),
        ({"k": 2, "tol": -1.0}, "tol"),
        ({"k": 2, "tol": float("nan")}, "tol"),
        ({"k": 2, "chunk_size": 0}, "chunk_size"),
        ({"k": 2, "seed": -1}, "seed"),
    ],
)
def test_kmeans_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kmeans(torch.randn(10, 2), **kwargs)


def test_input_validation():
    with pytest.raises(ValueError, match="2-D"):
        kmeans(torch.randn(10), 2)
    with pytest.raises(ValueError, match="floating"):
        kmeans(torch.ones(10, 2, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="torch.Tensor"):
        kmeans(np.ones((10, 2)), 2)
    bad = torch.randn(10, 2)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        kmeans(bad, 2)
    with pytest.raises(ValueError, match="columns"):
        assign(torch.randn(10, 2), torch.randn(3, 4))


# ----------------------------------------------------------------------------------------------- AMI
def test_ami_matches_sklearn():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 500)
    b = np.where(rng.random(500) < 0.6, a, rng.integers(0, 7, 500))
    expected = adjusted_mutual_info_score(a, b)
    assert 0.1 < expected < 0.9
    assert ami(a, b) == pytest.approx(expected, abs=1e-12)
    assert ami(torch.from_numpy(a), list(b)) == pytest.approx(expected, abs=1e-12)
    assert ami(a, (a + 3) % 5) == pytest.approx(1.0)  # renaming clusters does not matter
    with pytest.raises(ValueError, match="different numbers"):
        ami(a, b[:-1])
    with pytest.raises(ValueError, match="1-D"):
        ami(a.reshape(10, 50), a.reshape(10, 50))


def test_ami_matrix():
    rng = np.random.default_rng(1)
    labs = [rng.integers(0, 4, 300) for _ in range(3)]
    labs.append(np.where(rng.random(300) < 0.5, labs[0], 0))
    m = ami_matrix([torch.from_numpy(labs[0])] + labs[1:])
    assert m.shape == (4, 4)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0)
    for i in range(4):
        for j in range(4):
            assert m[i, j] == pytest.approx(adjusted_mutual_info_score(labs[i], labs[j]), abs=1e-12)
    with pytest.raises(ValueError, match="empty"):
        ami_matrix([])
