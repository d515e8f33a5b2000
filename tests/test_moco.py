"""MoCo-v2 with per-group queues (mcl.moco) against naive formulas and invariants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcl.fit import TrainConfig
from mcl.losses import info_nce
from mcl.moco import MoCo, train_moco


class TinyNet(nn.Module):
    """A stand-in contrastive network: forward(x) -> z [B, 6], features(x) -> h [B, 8]."""

    def __init__(self, bn: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2),
            nn.BatchNorm2d(8) if bn else nn.Identity(),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(8, 6)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def naive_info_nce(q, k, queue, t, mask=None):
    total = 0.0
    for i in range(len(q)):
        pos = torch.exp(torch.dot(q[i], k[i]) / t)
        neg = sum(
            (
                torch.exp(torch.dot(q[i], queue[j]) / t)
                for j in range(len(queue))
                if mask is None or mask[i, j]
            ),
            torch.zeros((), dtype=q.dtype),
        )
        total = total - torch.log(pos / (pos + neg))
    return total / len(q)


def _unit(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def test_info_nce_matches_naive_values_and_gradients():
    q, k, queue = _unit(5, 4, seed=0).requires_grad_(True), _unit(5, 4, seed=1), _unit(9, 4, seed=2)
    mask = torch.rand(5, 9, generator=torch.Generator().manual_seed(3)) > 0.4
    for m in (None, mask, mask[0]):
        m2 = None if m is None else m.expand(5, 9)
        got = info_nce(q, k, queue, 0.2, negative_mask=m)
        want = naive_info_nce(q, k, queue, 0.2, m2)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(torch.autograd.grad(got, q)[0], torch.autograd.grad(want, q)[0])


def test_info_nce_without_negatives_is_zero_and_rejects_bad_input():
    q, k = _unit(3, 4, seed=4), _unit(3, 4, seed=5)
    assert info_nce(q, k, q.new_zeros(0, 4), 0.2).item() == 0.0
    none = torch.zeros(3, 2, dtype=torch.bool)
    assert info_nce(q, k, _unit(2, 4, seed=6), 0.2, negative_mask=none).item() == 0
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, k, _unit(2, 4, seed=6), 0.0)
    with pytest.raises(ValueError, match="queue"):
        info_nce(q, k, _unit(2, 5, seed=6), 0.2)
    with pytest.raises(ValueError, match="negative_mask"):
        info_nce(q, k, _unit(2, 4, seed=6), 0.2, negative_mask=torch.ones(3, 3, dtype=torch.bool))


def test_queue_is_fifo_and_matches_a_naive_ring_buffer():
    moco = MoCo(TinyNet(), queue_size=5)
    capacity = 5
    ring_keys, ring_index, pointer = [None] * capacity, [-1] * capacity, 0
    counter = 0
    for b in (3, 4, 1, 12, 5, 2):  # 12 > capacity: only the last 5 of that batch survive
        keys = _unit(b, 6, seed=100 + counter).float()
        index = torch.arange(counter, counter + b)
        moco.enqueue(keys, index)
        for j in range(b):  # naive: one key at a time
            ring_keys[pointer], ring_index[pointer] = keys[j], counter + j
            pointer = (pointer + 1) % capacity
        counter += b
        got_keys, got_index = moco.queue()
        assert got_index.tolist() == ring_index
        assert moco._pointer[0] == pointer
        for slot in range(capacity):
            if ring_index[slot] >= 0:
                torch.testing.assert_close(got_keys[slot], ring_keys[slot])
    assert got_keys.shape == (capacity, 6)
    # After 27 keys the queue holds exactly the 5 most recent ones.
    assert sorted(got_index.tolist()) == list(range(counter - capacity, counter))


def test_per_group_queues_are_sized_by_group_and_bounded_by_the_data():
    moco = MoCo(TinyNet(), queue_size=4)
    group_of = torch.tensor([7, 7, 7, 7, 7, 7, 2, 2, 9, 9, 9])  # sizes: 2 -> 2, 7 -> 6, 9 -> 3
    moco.configure_queues(group_of)
    assert moco.num_queues == 3
    assert moco._capacity == [2, 4, 3]  # labels sorted: 2, 7, 9; capacity min(4, n_g)
    assert moco.queue_index.numel() == 9 <= len(group_of)
    moco.enqueue(_unit(3, 6, seed=7).float(), torch.tensor([0, 1, 2]), 7)
    assert moco.queue(7)[1].tolist() == [0, 1, 2, -1]
    assert moco.queue(2)[1].tolist() == [-1, -1] and moco.queue(9)[1].tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="label"):
        moco.negatives(5, torch.tensor([0]))
    moco.configure_queues(group_of)  # same layout: contents kept
    assert moco.queue(7)[1].tolist() == [0, 1, 2, -1]
    moco.configure_queues(None, num_samples=3)  # new layout: emptied, one queue of min(4, 3)
    assert moco.queue()[1].tolist() == [-1, -1, -1]


def test_negatives_mask_empty_slots_and_the_anchor_itself():
    moco = MoCo(TinyNet(), queue_size=4)
    moco.enqueue(_unit(3, 6, seed=8).float(), torch.tensor([10, 11, 12]))
    keys, mask, queued = moco.negatives(None, torch.tensor([11, 20]))
    assert queued.tolist() == [10, 11, 12, -1]
    assert mask.tolist() == [[True, False, True, False], [True, True, True, False]]
    assert keys.shape == (4, 6)


def test_momentum_update_follows_the_formula():
    moco = MoCo(TinyNet(), momentum=0.9)
    with torch.no_grad():
        for p in moco.query.parameters():
            p.normal_()
    q0 = [p.detach().clone() for p in moco.query.parameters()]
    k0 = [p.detach().clone() for p in moco.key.parameters()]
    moco.momentum_update()
    for p_k, a, b in zip(moco.key.parameters(), k0, q0, strict=True):
        torch.testing.assert_close(p_k, 0.9 * a + 0.1 * b)
    assert all(not p.requires_grad for p in moco.key.parameters())


def test_key_network_gets_no_gradient_and_split_bn_unpermutes_keys():
    torch.manual_seed(0)
    moco = MoCo(TinyNet(bn=False), bn_splits=4)
    x1, x2 = torch.rand(8, 3, 9, 9), torch.rand(8, 3, 9, 9)
    q, k = moco(x1, x2)
    assert not k.requires_grad
    info_nce(q, k, _unit(5, 6, seed=9).float(), 0.2).backward()
    assert all(p.grad is None for p in moco.key.parameters())
    assert all(p.grad is not None for p in moco.query.parameters())
    # Without BN the chunked, permuted key pass must give each sample its own key.
    torch.testing.assert_close(k, F.normalize(moco.key(x2), dim=1))
    torch.testing.assert_close(q, F.normalize(moco.query(x1), dim=1))


def test_split_bn_uses_batch_statistics_of_chunks_and_a_shuffled_key_batch():
    moco = MoCo(TinyNet(bn=True), bn_splits=2)
    x1, x2 = torch.rand(8, 3, 9, 9), torch.rand(8, 3, 9, 9)
    torch.manual_seed(3)
    q, k = moco(x1, x2)
    torch.manual_seed(3)
    perm = torch.randperm(8)  # the permutation forward drew
    want_q = torch.cat([moco.query(x1[:4]), moco.query(x1[4:])])
    want_k = torch.empty(8, 6)
    want_k[perm] = torch.cat([moco.key(x2[perm[:4]]), moco.key(x2[perm[4:]])])
    torch.testing.assert_close(q, F.normalize(want_q, dim=1))
    torch.testing.assert_close(k, F.normalize(want_k, dim=1))
    assert not torch.allclose(q, F.normalize(moco.query(x1), dim=1))  # whole-batch BN differs


def _check_negatives_stay_in_group(seen, group_of):
    used = 0
    for _, index, queued, mask in seen:
        for row, i in enumerate(index):
            negatives = [queued[j] for j in range(len(queued)) if mask[row, j]]
            assert all(group_of[j] == group_of[i] for j in negatives)  # only the anchor's own group
            assert i not in negatives  # never the anchor's own earlier key
            used += len(negatives)
    return used


def _spy_negatives(moco):
    seen = []
    original = moco.negatives

    def spy(labels, index):
        keys, mask, queued = original(labels, index)
        seen.append((labels, index.tolist(), queued.tolist(), mask.clone()))
        return keys, mask, queued

    moco.negatives = spy
    return seen


@pytest.mark.slow
def test_train_moco_per_group_queues_never_mix_groups():
    torch.manual_seed(0)
    from mcl.augment import SimCLRAugment
    from mcl.sampling import FeatureAwareBatchSampler

    group_of = torch.arange(48) % 3  # three groups of 16
    images = torch.randint(0, 256, (48, 3, 12, 12), dtype=torch.uint8)
    moco = MoCo(TinyNet(), queue_size=12, bn_splits=2)
    seen = _spy_negatives(moco)
    config = TrainConfig(epochs=3, batch_size=4, progress=False, device="cpu")
    history = train_moco(
        moco,
        images,
        config,
        augment=SimCLRAugment(12),
        batch_sampler=FeatureAwareBatchSampler(group_of, 4),
        group_of=group_of,
    )
    assert len(history.losses) == 3 and all(math.isfinite(v) for v in history.losses)
    assert len(seen) == 3 * 12
    for labels, *_ in seen:
        assert len(set(labels.tolist())) == 1  # the sampler's batches are homogeneous
    assert _check_negatives_stay_in_group(seen, group_of) > 0
    for label in range(3):  # the queues themselves hold only their group's samples
        assert all(group_of[j] == label for j in moco.queue(label)[1].tolist() if j >= 0)


def test_mixed_batches_take_each_anchors_negatives_from_its_own_group():
    from mcl.augment import SimCLRAugment

    torch.manual_seed(0)
    group_of = torch.tensor([0, 1, 2]).repeat_interleave(torch.tensor([10, 7, 7]))
    images = torch.randint(0, 256, (24, 3, 12, 12), dtype=torch.uint8)
    moco = MoCo(TinyNet(), queue_size=6, bn_splits=2)
    seen = _spy_negatives(moco)
    config = TrainConfig(epochs=3, batch_size=8, progress=False, device="cpu")  # seeded shuffle: mixed
    history = train_moco(moco, images, config, augment=SimCLRAugment(12), group_of=group_of)
    assert all(math.isfinite(v) for v in history.losses)
    assert any(len(set(labels.tolist())) > 1 for labels, *_ in seen)
    assert _check_negatives_stay_in_group(seen, group_of) > 0
    for label in range(3):
        assert all(group_of[j] == label for j in moco.queue(label)[1].tolist() if j >= 0)


def test_train_moco_plain_has_one_queue_and_checks_bn_splits():
    from mcl.augment import SimCLRAugment

    images = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    config = TrainConfig(epochs=1, batch_size=8, progress=False, device="cpu")
    with pytest.raises(ValueError, match="bn_splits"):  # default 8 chunks need batches >= 16
        train_moco(MoCo(TinyNet()), images, config, augment=SimCLRAugment(12))
    moco = MoCo(TinyNet(), queue_size=64, bn_splits=1)
    history = train_moco(moco, images, config, augment=SimCLRAugment(12))
    assert moco.num_queues == 1 and moco.queue()[0].shape == (16, 6)  # min(queue_size, N)
    assert math.isfinite(history.losses[0])


def test_queue_state_survives_a_state_dict_round_trip():
    moco = MoCo(TinyNet(), queue_size=4)
    moco.configure_queues(torch.tensor([0, 0, 0, 1, 1]))
    moco.enqueue(_unit(3, 6, seed=10).float(), torch.tensor([0, 1, 2]), 0)
    fresh = MoCo(TinyNet(), queue_size=4)
    fresh.load_state_dict(moco.state_dict())
    assert fresh._capacity == [3, 2] and fresh._pointer == moco._pointer
    torch.testing.assert_close(fresh.queue(0)[0], moco.queue(0)[0])
    assert fresh.queue(0)[1].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"queue_size": 0}, "queue_size"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"temperature": 0}, "temperature"),
        ({"bn_splits": 0}, "bn_splits"),
    ],
)
def test_moco_rejects_bad_hyper_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MoCo(TinyNet(), **kwargs)
