"""mcl.sampling: pseudo-labels against a naive tuple version; the batch sampler's invariants."""

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mcl.sampling import FeatureAwareBatchSampler, combine_labels


# ------------------------------------------------------------------------------------ combine_labels
def naive_combine(stages, mode):
    """A dict of tuples, ids given in lexicographic order of the tuples."""
    n = len(stages[0])
    keys = (
        [tuple(int(s[i]) for s in stages) for i in range(n)]
        if mode == "product"
        else [(int(stages[-1][i]),) for i in range(n)]
    )
    ids = {key: j for j, key in enumerate(sorted(set(keys)))}
    return [ids[key] for key in keys]


@pytest.mark.parametrize("mode", ["product", "latest"])
@pytest.mark.parametrize("n_stages", [1, 2, 3, 4])
def test_combine_labels_equals_naive_tuples(mode, n_stages):
    rng = np.random.default_rng(n_stages)
    # uneven K per stage, non-contiguous and negative ids, numpy and torch inputs mixed
    stages = [rng.choice([-3, 0, 2, 7, 11][: 2 + s], size=400) for s in range(n_stages)]
    stages = [torch.from_numpy(s) if i % 2 else s for i, s in enumerate(stages)]
    got = combine_labels(stages, mode=mode)
    assert got.dtype == torch.int64 and got.shape == (400,)
    assert got.tolist() == naive_combine(stages, mode)


def test_product_refines_every_stage_and_latest_is_the_bug():
    rng = np.random.default_rng(0)
    s0, s1 = rng.integers(0, 10, 2000), rng.integers(0, 10, 2000)
    prod = combine_labels([s0, s1]).numpy()
    # two samples share a product label iff they share both stage ids
    for a, b in itertools.islice(itertools.combinations(range(2000), 2), 0, 200000, 97):
        assert (prod[a] == prod[b]) == (s0[a] == s0[b] and s1[a] == s1[b])
    assert len(np.unique(prod)) == len(set(zip(s0.tolist(), s1.tolist(), strict=True)))
    latest = combine_labels([s0, s1], mode="latest").numpy()
    assert np.array_equal(latest, s1)  # ids 0..9 all present: compaction is the identity


def test_combine_labels_validation():
    with pytest.raises(ValueError, match="mode"):
        combine_labels([np.zeros(3, int)], mode="union")
    with pytest.raises(ValueError, match="different lengths"):
        combine_labels([np.zeros(3, int), np.zeros(4, int)])
    with pytest.raises(ValueError, match="non-empty"):
        combine_labels([])
    with pytest.raises(ValueError, match="1-D"):
        combine_labels([np.zeros((3, 2), int)])
    with pytest.raises(ValueError, match="integer"):
        combine_labels([np.zeros(3)])


# ------------------------------------------------------------------------------------------ sampler
def skewed_labels(n=1000, seed=0):
    """Groups of very different sizes, including ones smaller than a batch; non-contiguous label values."""
    rng = np.random.default_rng(seed)
    sizes = [300, 220, 150, 120, 90, 60, 30, 17, 8, 5]
    labels = np.concatenate([np.full(s, 3 * g + 1) for g, s in enumerate(sizes)])
    labels = np.concatenate([labels, rng.choice(labels, n - labels.size)])
    return rng.permutation(labels)


def group_of(labels, batch):
    return {int(v) for v in labels[np.asarray(batch)]}


@pytest.mark.parametrize("batch_size", [2, 16, 25])
@pytest.mark.parametrize("epoch", [0, 3])
def test_drop_batches_are_homogeneous_without_repeats(batch_size, epoch):
    labels = skewed_labels()
    s = FeatureAwareBatchSampler(labels, batch_size, seed=1)
    s.set_epoch(epoch)
    batches = list(s)
    assert len(batches) == len(s)
    assert all(len(b) == batch_size for b in batches)
    assert all(len(group_of(labels, b)) == 1 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))
    assert all(isinstance(i, int) for i in flat)


def test_drop_counts_are_exact():
    labels = skewed_labels()
    bs = 16
    s = FeatureAwareBatchSampler(labels, bs, small_groups="drop")
    _, sizes = np.unique(labels, return_counts=True)
    used = sum(len(b) for b in s)
    assert s.n_groups == len(sizes)
    assert s.n_dropped == int((sizes % bs).sum()) == len(labels) - used
    assert s.n_merged == 0 and s.n_mixed_batches == 0
    assert s.n_trained_groups == int((sizes >= bs).sum())
    assert len(s) == int((sizes // bs).sum())
    # with 2 ranks the global batch is 32: more is dropped, counted per epoch over all ranks
    s2 = [FeatureAwareBatchSampler(labels, bs, rank=r, world_size=2) for r in range(2)]
    used2 = sum(len(b) for x in s2 for b in x)
    assert s2[0].n_dropped == int((sizes % (2 * bs)).sum()) == len(labels) - used2
    text = s.summary()
    assert str(s.n_dropped) in text and str(s.n_groups) in text and "drop" in text


def test_drop_reshuffles_which_samples_are_left_out():
    labels = skewed_labels()
    s = FeatureAwareBatchSampler(labels, 16)
    used = []
    for epoch in range(4):
        s.set_epoch(epoch)
        used.append({i for b in s for i in b})
    assert len({frozenset(u) for u in used}) == 4
    assert len(set.union(*used)) > len(used[0])


def test_visiting_order_is_round_robin_in_label_order():
    labels = np.repeat([5, 1, 9], [3 * 4, 1 * 4, 2 * 4])  # groups 1, 5, 9 with 1, 3, 2 batches of 4
    s = FeatureAwareBatchSampler(labels, 4)
    order = [group_of(labels, b).pop() for b in s]
    assert order == [1, 5, 9, 5, 9, 5]


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("n_blocks", [2, 4])
def test_blocks_each_come_from_one_group_and_consecutive_blocks_from_different_groups(world_size, n_blocks):
    labels = skewed_labels()
    bs = 16
    samplers = [
        FeatureAwareBatchSampler(labels, bs, rank=r, world_size=world_size, groups_per_batch=n_blocks, seed=2)
        for r in range(world_size)
    ]
    block = bs * world_size // n_blocks
    assert samplers[0].block_size == block
    steps = list(zip(*[list(x) for x in samplers], strict=True))
    assert len(steps) == len(samplers[0])
    _, sizes = np.unique(labels, return_counts=True)
    n_blocks_total = int((sizes // block).sum())  # one-group blocks available per epoch, naively counted
    assert len(steps) == n_blocks_total // n_blocks
    flat = []
    for step in steps:
        global_batch = [i for rank_rows in step for i in rank_rows]  # ranks in order = the gathered batch
        assert len(global_batch) == bs * world_size
        groups = [group_of(labels, global_batch[b * block : (b + 1) * block]) for b in range(n_blocks)]
        assert all(len(g) == 1 for g in groups)
        flat += global_batch
    assert len(flat) == len(set(flat))
    assert samplers[0].n_dropped == len(labels) - len(flat)
    # while at least n_blocks groups still have blocks (the first round), a batch's blocks differ in group
    first = [
        group_of(labels, [i for r in steps[0] for i in r][b * block : (b + 1) * block]).pop()
        for b in range(n_blocks)
    ]
    assert len(set(first)) == n_blocks


def test_blocks_visit_groups_round_robin_and_one_block_per_batch_is_the_default():
    labels = np.repeat([5, 1, 9], [3 * 4, 1 * 4, 2 * 4])  # groups 1, 5, 9 with 1, 3, 2 blocks of 4
    s = FeatureAwareBatchSampler(labels, 8, groups_per_batch=2)
    order = [[group_of(labels, b[:4]).pop(), group_of(labels, b[4:]).pop()] for b in s]
    assert order == [[1, 5], [9, 5], [9, 5]]
    one, default = (
        FeatureAwareBatchSampler(labels, 4, groups_per_batch=1),
        FeatureAwareBatchSampler(labels, 4),
    )
    assert list(one) == list(default)


def test_same_seed_and_epoch_same_batches_other_epoch_or_seed_differ():
    labels = skewed_labels()
    a = FeatureAwareBatchSampler(labels, 8, seed=3)
    b = FeatureAwareBatchSampler(labels, 8, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again without set_epoch repeats the epoch
    b.set_epoch(3)
    assert list(a) != list(b)
    c = FeatureAwareBatchSampler(labels, 8, seed=4)
    c.set_epoch(2)
    assert list(a) != list(c)


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("policy", ["drop", "merge"])
def test_ranks_partition_each_global_batch(world_size, policy):
    labels = skewed_labels()
    bs = 8
    ranks = [
        FeatureAwareBatchSampler(labels, bs, seed=5, rank=r, world_size=world_size, small_groups=policy)
        for r in range(world_size)
    ]
    for s in ranks:
        s.set_epoch(1)
    per_rank = [list(s) for s in ranks]
    lengths = {len(p) for p in per_rank} | {len(s) for s in ranks}
    assert len(lengths) == 1  # every rank yields the same number of batches, as len() says
    seen = []
    n_mixed = 0
    for step in zip(*per_rank, strict=True):
        union = [i for b in step for i in b]
        assert len(union) == len(set(union))  # ranks' batches are disjoint
        assert all(len(b) >= 2 for b in step)
        if len(group_of(labels, union)) > 1:
            n_mixed += 1
        else:
            assert all(len(b) == bs for b in step)  # same group at the same step on every rank
        seen.extend(union)
    assert len(seen) == len(set(seen))  # no repeats across steps
    assert n_mixed <= ranks[0].n_mixed_batches
    if policy == "drop":
        assert n_mixed == 0
        assert len(seen) == len(labels) - ranks[0].n_dropped
    else:
        assert sorted(seen) == list(range(len(labels)))


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("n", [1000, 1001, 1013])
def test_merge_covers_every_index_once_with_exact_counts(world_size, n):
    labels = skewed_labels(n=n, seed=n)
    bs = 16
    ranks = [
        FeatureAwareBatchSampler(labels, bs, rank=r, world_size=world_size, small_groups="merge")
        for r in range(world_size)
    ]
    s = ranks[0]
    steps = list(zip(*[list(x) for x in ranks], strict=True))
    flat = [i for step in steps for b in step for i in b]
    assert sorted(flat) == list(range(n))
    assert len(steps) == len(s) == s.n_homogeneous_batches + s.n_mixed_batches
    _, sizes = np.unique(labels, return_counts=True)
    gbs = bs * world_size
    assert s.n_merged == int((sizes % gbs).sum()) and s.n_dropped == 0
    assert s.n_homogeneous_batches == int((sizes // gbs).sum())
    homogeneous = [step for step in steps if len(group_of(labels, [i for b in step for i in b])) == 1]
    assert len(homogeneous) >= s.n_homogeneous_batches
    # the mixed batches come last
    assert all(
        len(group_of(labels, [i for b in step for i in b])) == 1 for step in steps[: s.n_homogeneous_batches]
    )
    assert sum(len(b) for step in steps[s.n_homogeneous_batches :] for b in step) == s.n_merged
    assert "merge" in s.summary() and str(s.n_merged) in s.summary()


def test_merge_with_a_tiny_pool():
    # one group of 33 with global batch 16: 2 full batches, 1 leftover, folded into no batch -> dropped
    s = FeatureAwareBatchSampler(np.zeros(33, int), 16, small_groups="merge")
    assert (s.n_merged, s.n_dropped, len(s)) == (0, 1, 2)
    assert sum(len(b) for b in s) == 32
    # leftovers 1 + 15 + 2 = 18: one full pooled batch of 16 and a batch of 2 of its own
    labels = np.repeat([0, 1, 2], [33, 15, 2])
    s = FeatureAwareBatchSampler(labels, 16, small_groups="merge")
    assert (s.n_merged, s.n_dropped, s.n_mixed_batches) == (18, 0, 2)
    assert [len(b) for b in s] == [16, 16, 16, 2]
    # leftovers 0 + 15 + 2 = 17: a pooled batch of 16 and 1 left, folded into it (a batch of 17)
    labels = np.repeat([0, 1, 2], [32, 15, 2])
    s = FeatureAwareBatchSampler(labels, 16, small_groups="merge")
    assert (s.n_merged, s.n_dropped, s.n_mixed_batches) == (17, 0, 1)
    assert [len(b) for b in s] == [16, 16, 17]
    assert sorted(i for b in s for i in b) == list(range(49))


def test_groups_smaller_than_a_batch_never_train_under_drop():
    labels = np.repeat([0, 1, 2], [40, 7, 3])
    s = FeatureAwareBatchSampler(labels, 8)
    for epoch in range(3):
        s.set_epoch(epoch)
        assert {int(labels[i]) for b in s for i in b} == {0}
    assert s.n_trained_groups == 1 and s.n_dropped == 10 + 0 and s.n_groups == 3
    assert "2 group(s) never train" in s.summary()


def test_works_with_a_dataloader():
    labels = torch.from_numpy(skewed_labels())
    data = TensorDataset(torch.arange(len(labels)), labels)
    s = FeatureAwareBatchSampler(labels, 10, seed=2)
    s.set_epoch(1)
    loader = DataLoader(data, batch_sampler=s)
    assert len(loader) == len(s)
    got = [(idx.tolist(), lab) for idx, lab in loader]
    assert [idx for idx, _ in got] == list(s)
    assert all(len(torch.unique(lab)) == 1 for _, lab in got)


def test_labels_on_any_input_type_and_defaults_without_distributed():
    labels = skewed_labels()
    a = FeatureAwareBatchSampler(labels, 8)
    b = FeatureAwareBatchSampler(torch.from_numpy(labels), 8)
    c = FeatureAwareBatchSampler(labels.tolist(), 8)
    assert list(a) == list(b) == list(c)
    assert (a.rank, a.world_size) == (0, 1)  # torch.distributed is not initialised here


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"batch_size": 1}, "batch_size"),
        ({"batch_size": 8.0}, "batch_size"),
        ({"batch_size": 8, "rank": 2, "world_size": 2}, "rank"),
        ({"batch_size": 8, "rank": -1, "world_size": 2}, "rank"),
        ({"batch_size": 8, "world_size": 0}, "world_size"),
        ({"batch_size": 8, "small_groups": "pad"}, "small_groups"),
        ({"batch_size": 8, "seed": -1}, "seed"),
        ({"batch_size": 8, "groups_per_batch": 0}, "groups_per_batch"),
        ({"batch_size": 8, "groups_per_batch": 3}, "groups_per_batch"),
        ({"batch_size": 8, "groups_per_batch": 8}, "groups_per_batch"),
        ({"batch_size": 8, "groups_per_batch": 2, "small_groups": "merge"}, "small_groups"),
    ],
)
def test_sampler_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureAwareBatchSampler(np.zeros(20, int), **kwargs)


def test_sampler_label_validation():
    with pytest.raises(ValueError, match="1-D"):
        FeatureAwareBatchSampler(np.zeros((4, 5), int), 2)
    with pytest.raises(ValueError, match="empty"):
        FeatureAwareBatchSampler(np.zeros(0, int), 2)
    with pytest.raises(ValueError, match="integer"):
        FeatureAwareBatchSampler(np.zeros(10), 2)
    with pytest.raises(ValueError, match="epoch"):
        FeatureAwareBatchSampler(np.zeros(10, int), 2).set_epoch(-1)
