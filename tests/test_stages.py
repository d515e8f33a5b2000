"""The multistage driver: what each stage is trained with, and the concatenated representation."""

import pytest
import torch
import torch.nn.functional as F

from mcl.cluster import ami
from mcl.stages import concat_features, run_multistage

N = 96


def attributes():
    """Three independent binary attributes; stage s's stub model embeds attribute s."""
    idx = torch.arange(N)
    return [(idx // 4) % 2, (idx // 2) % 2, idx % 2]


def stub_embedding(attribute: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return F.normalize(centres[attribute] + 0.05 * torch.randn(N, 3, generator=g), dim=1)


def test_driver_trains_each_stage_with_the_product_of_earlier_clusters():
    attrs = attributes()
    seen = []

    def train(model, sampler, stage):
        batches = [] if sampler is None else list(sampler)
        seen.append((stage, sampler, batches))
        return {"stage": stage}

    result = run_multistage(
        n_stages=3,
        build=lambda s: {"stage": s},
        train=train,
        embed=lambda m: stub_embedding(attrs[m["stage"]], m["stage"]),
        batch_size=4,
        k=2,
        progress=False,
    )
    assert [m["stage"] for m in result.models] == [0, 1, 2]
    assert [h["stage"] for h in result.histories] == [0, 1, 2]
    assert seen[0][1] is None and result.pseudo_labels[0] is None
    for s in range(3):  # each stage's clusters recover the attribute its model embeds
        assert ami(result.cluster_ids[s], attrs[s]) == pytest.approx(1.0)
    # stage 2 is trained on groups = (attribute 0, attribute 1): 4 groups, every batch homogeneous in both
    assert int(result.pseudo_labels[2].max()) + 1 == 4
    for batch in seen[2][2]:
        assert len({(int(attrs[0][i]), int(attrs[1][i])) for i in batch}) == 1
    # stage 1 batches are homogeneous in attribute 0 only
    assert any(len({int(attrs[1][i]) for i in b}) > 1 for b in seen[1][2])
    assert all(len({int(attrs[0][i]) for i in b}) == 1 for b in seen[1][2])


def test_latest_mode_forgets_earlier_stages():
    attrs = attributes()
    result = run_multistage(
        n_stages=3,
        build=lambda s: {"stage": s},
        train=lambda m, smp, s: None,
        embed=lambda m: stub_embedding(attrs[m["stage"]], 0),
        batch_size=4,
        k=2,
        combine="latest",
        cluster_last=False,
        progress=False,
    )
    assert len(result.cluster_ids) == 2
    assert ami(result.pseudo_labels[2], attrs[1]) == pytest.approx(1.0)


def test_driver_validates_arguments():
    kwargs = dict(build=lambda s: None, train=lambda m, smp, s: None, embed=lambda m: None, batch_size=4)
    with pytest.raises(ValueError, match="n_stages"):
        run_multistage(n_stages=0, **kwargs)
    with pytest.raises(ValueError, match="k=1"):
        run_multistage(n_stages=2, k=1, **kwargs)


def test_concat_normalises_once_and_per_stage_weighs_stages_equally():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g) * 10, torch.randn(5, 4, generator=g)
    joint = concat_features([a, b])
    assert torch.allclose(joint.norm(dim=1), torch.ones(5))
    assert torch.allclose(joint, torch.cat([a, b], 1) / torch.cat([a, b], 1).norm(dim=1, keepdim=True))
    per = concat_features([a, b], normalize="per_stage")
    assert torch.allclose(per.norm(dim=1), torch.ones(5))
    assert torch.allclose(per[:, :3].norm(dim=1), per[:, 3:].norm(dim=1))
    assert torch.equal(concat_features([a, b], normalize="none"), torch.cat([a, b], 1))
    with pytest.raises(ValueError, match="normalize="):
        concat_features([a], normalize="l1")


def test_driver_says_what_to_change_when_no_group_fills_a_batch():
    attrs = attributes()
    with pytest.raises(
        ValueError, match=r"fill no batch of 1 block\(s\) of 64; use a smaller batch_size or k"
    ):
        run_multistage(
            n_stages=2,
            build=lambda s: {"stage": s},
            train=lambda m, sampler, s: None,
            embed=lambda m: stub_embedding(attrs[m["stage"]], 0),
            batch_size=64,
            k=2,
            progress=False,
        )
