"""Property-based tests (hypothesis) of MCL's core: the losses, k-means, the pseudo-labels and the sampler,
on random shapes, group sizes, ranks and seeds. Each checks an invariant the unit tests check on fixed
inputs: a loss equals its naive float64 reference, k-means labels partition the points (each point with
its nearest centroid), combined labels equal a naive Cartesian product, every batch or block comes from
one group, ranks partition the global batch, no index repeats, same seed same batches.

Deterministic (``derandomize``, no example database) and small (the file runs in seconds).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_losses import naive_clip, naive_grouped_nt_xent, naive_nt_xent
from test_sampling import naive_combine

from mcl.cluster import kmeans
from mcl.losses import clip_loss, grouped_loss, info_nce, nt_xent
from mcl.sampling import FeatureAwareBatchSampler, combine_labels

FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

seeds = st.integers(0, 2**31 - 1)
temperatures = st.floats(0.05, 5.0)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ losses
@FAST
@given(n=st.integers(2, 6), d=st.integers(1, 5), t=temperatures, seed=seeds)
def test_nt_xent_equals_its_float64_reference(n, d, t, seed):
    z1, z2 = _randn(n, d, seed=seed), _randn(n, d, seed=seed + 1)
    torch.testing.assert_close(nt_xent(z1, z2, t), naive_nt_xent(z1, z2, t), rtol=1e-9, atol=1e-12)


@FAST
@given(n_groups=st.integers(1, 3), block=st.integers(2, 4), d=st.integers(1, 4), t=temperatures, seed=seeds)
def test_grouped_loss_keeps_negatives_within_blocks(n_groups, block, d, t, seed):
    n = n_groups * block
    z1, z2 = _randn(n, d, seed=seed), _randn(n, d, seed=seed + 1)
    groups = [i // block for i in range(n)]
    got = grouped_loss(nt_xent, n_groups)(z1, z2, t)
    torch.testing.assert_close(got, naive_grouped_nt_xent(z1, z2, t, groups), rtol=1e-9, atol=1e-12)


@FAST
@given(n=st.integers(2, 6), d=st.integers(1, 5), t=st.floats(0.01, 5.0), seed=seeds)
def test_clip_loss_equals_its_float64_reference(n, d, t, seed):
    image = torch.nn.functional.normalize(_randn(n, d, seed=seed), dim=1)
    text = torch.nn.functional.normalize(_randn(n, d, seed=seed + 1), dim=1)
    torch.testing.assert_close(
        clip_loss(image, text, t), naive_clip(image, text, 1 / t), rtol=1e-9, atol=1e-12
    )


def naive_info_nce(q, k, queue, t, mask):
    """-log exp(q.k / t) / (exp(q.k / t) + sum over the kept queue keys of exp(q.key / t)), averaged."""
    total = 0.0
    for i in range(len(q)):
        positive = math.exp(float(q[i] @ k[i]) / t)
        negatives = sum(math.exp(float(q[i] @ queue[j]) / t) for j in range(len(queue)) if mask[i][j])
        total -= math.log(positive / (positive + negatives))
    return total / len(q)


@FAST
@given(b=st.integers(1, 5), n_queue=st.integers(0, 6), d=st.integers(1, 4), t=temperatures, seed=seeds)
def test_info_nce_equals_its_float64_reference(b, n_queue, d, t, seed):
    q, k, queue = (
        torch.nn.functional.normalize(_randn(n, d, seed=seed + i), dim=1)
        for i, n in enumerate((b, b, n_queue))
    )
    mask = torch.rand(b, n_queue, generator=torch.Generator().manual_seed(seed)) < 0.7
    got = float(info_nce(q, k, queue, t, negative_mask=mask))
    assert math.isclose(got, naive_info_nce(q, k, queue, t, mask.tolist()), rel_tol=1e-9, abs_tol=1e-12)


# ----------------------------------------------------------------------------------------------- k-means
@FAST
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 5),
    k=st.integers(1, 6),
    spherical=st.booleans(),
    seed=seeds,
    chunk=st.sampled_from([None, 1, 7]),
)
def test_kmeans_labels_partition_the_points_each_to_its_nearest_centroid(n, d, k, spherical, seed, chunk):
    k = min(k, n)
    x = _randn(n, d, seed=seed) * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # spherical, D = 1: fewer distinct directions than k
        result = kmeans(x, k, spherical=spherical, seed=seed % 1000, chunk_size=chunk)
    labels, centroids = result.labels, result.centroids.double()
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < k  # every point in exactly one of the k clusters
    if spherical:
        cost = 1 - torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(centroids, dim=1).T
    else:
        cost = torch.cdist(x, centroids).square()
    own = cost.gather(1, labels[:, None]).squeeze(1)
    assert bool((own <= cost.min(1).values + 1e-4 * (1 + cost.min(1).values)).all())  # float32 centroids
    assert math.isclose(result.inertia, float(own.sum()), rel_tol=1e-4, abs_tol=1e-4)
    if not spherical and len(torch.unique(x, dim=0)) >= k:  # distinct points: no cluster is left empty
        assert len(torch.unique(labels)) == k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        again = kmeans(x, k, spherical=spherical, seed=seed % 1000, chunk_size=chunk)
    assert torch.equal(again.labels, labels)  # same seed, same clustering


# ------------------------------------------------------------------------------------------ pseudo-labels
@FAST
@given(
    n=st.integers(1, 40),
    ks=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    mode=st.sampled_from(["product", "latest"]),
    seed=seeds,
)
def test_combined_labels_equal_the_naive_cartesian_product(n, ks, mode, seed):
    rng = np.random.default_rng(seed)
    stages = [rng.integers(-2, k - 2, n) for k in ks]  # negative and gapped ids too
    got = combine_labels(stages, mode=mode)
    assert got.dtype == torch.int64 and got.tolist() == naive_combine(stages, mode)
    if mode == "product":  # two samples share a pseudo-label iff they share every stage's id
        same = got[:, None] == got[None, :]
        every = np.all([s[:, None] == s[None, :] for s in stages], axis=0)
        assert np.array_equal(same.numpy(), every)


# ---------------------------------------------------------------------------------------------- sampler
@FAST
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    batch_size=st.integers(2, 8),
    world_size=st.integers(1, 3),
    groups_per_batch=st.integers(1, 3),
    merge=st.booleans(),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
)
def test_sampler_batches_come_from_one_group_and_ranks_partition_them(
    sizes, batch_size, world_size, groups_per_batch, merge, seed, epoch
):
    global_batch = batch_size * world_size
    if global_batch % groups_per_batch or global_batch // groups_per_batch < 2:
        groups_per_batch = 1
    policy = "merge" if merge and groups_per_batch == 1 else "drop"
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(7 * np.arange(len(sizes)) - 3, sizes))  # gapped, negative labels
    samplers = [
        FeatureAwareBatchSampler(
            labels,
            batch_size,
            seed=seed,
            rank=r,
            world_size=world_size,
            small_groups=policy,
            groups_per_batch=groups_per_batch,
        )
        for r in range(world_size)
    ]
    for s in samplers:
        s.set_epoch(epoch)
    per_rank = [list(s) for s in samplers]
    assert all(len(batches) == len(samplers[0]) for batches in per_rank)  # every rank steps together
    expected = samplers[0].global_batches()
    block = samplers[0].block_size
    used = []
    for step, ranks in enumerate(zip(*per_rank, strict=True)):
        gathered = [i for rows in ranks for i in rows]
        assert gathered == expected[step].tolist()  # ranks in order partition the global batch
        if step < samplers[0].n_homogeneous_batches:
            assert len(gathered) == global_batch
            for b in range(groups_per_batch):  # every block from one group
                assert len(set(labels[gathered[b * block : (b + 1) * block]].tolist())) == 1
        else:  # merged leftovers: every rank gets at least 2
            assert all(len(rows) >= 2 for rows in ranks)
        used += gathered
    assert len(used) == len(set(used))  # no index repeats within an epoch
    assert len(used) == len(labels) - samplers[0].n_dropped
    if policy == "merge" and samplers[0].n_mixed_batches:
        assert samplers[0].n_dropped == 0
    twin = FeatureAwareBatchSampler(
        labels,
        batch_size,
        seed=seed,
        world_size=world_size,
        small_groups=policy,
        groups_per_batch=groups_per_batch,
    )
    twin.set_epoch(epoch)
    assert list(twin) == per_rank[0]  # same seed and epoch, same batches
