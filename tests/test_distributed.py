"""Several processes: two gloo processes on the CPU reproduce the one-process run on the same global batch.

The two-process part spawns 2 workers once (module fixture); each writes what it computed to a file and the
tests compare it with the same computation done here in one process.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mcl.clip import (
    ClipTrainConfig,
    clip_batch_loss,
    create_clip,
    get_tokenizer,
    lock_clip,
    normalize_images,
    train_clip,
)
from mcl.distributed import (
    DistributedRandomBatchSampler,
    all_gather_with_grad,
    embed_sharded,
    gather_rows,
    gathered_loss,
    shard_range,
)
from mcl.losses import nt_xent
from mcl.sampling import FeatureAwareBatchSampler

pytestmark = pytest.mark.slow  # executes chapters or spawns processes

os.environ.setdefault("HF_HUB_OFFLINE", "1")
WORLD = 2
GLOBAL = 8  # global batch of the gradient checks
COLOURS = ["red", "green", "blue", "yellow"]


def data(n=32):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    captions = [f"a {COLOURS[i % 4]} thing number {i}" for i in range(n)]
    labels = torch.arange(n) % 2  # two pseudo-label groups of 16
    return images, captions, labels


def clip_model():
    model = create_clip("mcl-tiny-vit", image_size=32, seed=0)
    lock_clip(model, None, lock_text=False)  # everything trains: both towers' gradients are checked
    return model


def simclr_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 15 * 15, 8))


def clip_inputs(model):
    images, captions, _ = data()
    x = normalize_images(model, images[:GLOBAL].float() / 255)
    return x, get_tokenizer("mcl-tiny-vit")(captions[:GLOBAL])


def views():
    g = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL, 3, 32, 32, generator=g), torch.randn(GLOBAL, 3, 32, 32, generator=g)


def train_config(batch_size):
    return ClipTrainConfig(epochs=1, batch_size=batch_size, lr=1e-3, seed=0, device="cpu", progress=False)


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        out = {}
        rows = slice(rank * GLOBAL // WORLD, (rank + 1) * GLOBAL // WORLD)
        # CLIP: loss and DDP-averaged gradients on this rank's half of the global batch
        model = clip_model()
        wrapped = nn.parallel.DistributedDataParallel(model)
        x, tokens = clip_inputs(model)
        loss = clip_batch_loss(wrapped, x[rows], tokens[rows])
        loss.backward()
        out["clip_loss"] = loss.detach()
        out["clip_grads"] = {n: p.grad.clone() for n, p in model.named_parameters()}
        # SimCLR: NT-Xent over the gathered views
        net = simclr_net()
        ddp_net = nn.parallel.DistributedDataParallel(net)
        v1, v2 = views()
        z1, z2 = ddp_net(torch.cat([v1[rows], v2[rows]])).chunk(2)
        loss = gathered_loss(nt_xent)(z1, z2, 0.5)
        loss.backward()
        out["simclr_loss"] = loss.detach()
        out["simclr_grads"] = {n: p.grad.clone() for n, p in net.named_parameters()}
        # uneven shards: gather_rows and all_gather_with_grad
        local = torch.arange(3.0 - rank).repeat(2, 1).T + 10 * rank  # rank 0: 3 rows, rank 1: 2 rows
        out["gathered_rows"] = gather_rows(local)
        leaf = local.clone().requires_grad_(True)
        gathered = all_gather_with_grad(leaf)
        (gathered * torch.arange(1.0, 6.0)[:, None]).sum().backward()
        out["uneven_grad"] = leaf.grad.clone()
        out["embedded"] = embed_sharded(lambda t: t * 2.0, torch.arange(7.0)[:, None])
        # train_clip: one epoch with the feature-aware sampler (per-rank batch 4, global 8)
        images, captions, labels = data()
        model = create_clip("mcl-tiny-vit", image_size=32, seed=0)
        lock_clip(model, 2)
        sampler = FeatureAwareBatchSampler(labels, 4, seed=0)
        out["rank_batches"] = [list(b) for b in (sampler.set_epoch(0) or sampler)]
        history = train_clip(model, images, captions, train_config(4), batch_sampler=sampler)
        out["train_losses"] = history.losses
        out["trained"] = {k: v.clone() for k, v in model.state_dict().items()}
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    # fork: the workers inherit the imported torch and open_clip (a spawned process re-imports them: ~10 s)
    mp.start_processes(
        _worker, args=(str(folder / "init"), str(folder)), nprocs=WORLD, join=True, start_method="fork"
    )
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_process_clip_loss_and_gradients_equal_the_one_process_run(ranks):
    model = clip_model()
    x, tokens = clip_inputs(model)
    loss = clip_batch_loss(model, x, tokens)
    loss.backward()
    for out in ranks:
        assert out["clip_loss"].item() == pytest.approx(loss.item(), rel=1e-5)
        for name, p in model.named_parameters():
            assert torch.allclose(out["clip_grads"][name], p.grad, rtol=1e-4, atol=1e-6), name
    assert model.logit_scale.grad.abs() > 0


def test_two_process_simclr_loss_and_gradients_equal_the_one_process_run(ranks):
    net = simclr_net()
    v1, v2 = views()
    z1, z2 = net(torch.cat([v1, v2])).chunk(2)
    loss = nt_xent(z1, z2, 0.5)
    loss.backward()
    for out in ranks:
        assert out["simclr_loss"].item() == pytest.approx(loss.item(), rel=1e-5)
        for name, p in net.named_parameters():
            diff = (out["simclr_grads"][name] - p.grad).abs().max().item()
            assert torch.allclose(out["simclr_grads"][name], p.grad, rtol=1e-4, atol=1e-6), (name, diff)


def test_uneven_gathers_keep_rank_order_and_route_gradients(ranks):
    expected = torch.cat([torch.arange(3.0).repeat(2, 1).T, torch.arange(2.0).repeat(2, 1).T + 10])
    weights = torch.arange(1.0, 6.0)[:, None].expand(5, 2)
    for rank, out in enumerate(ranks):
        assert torch.equal(out["gathered_rows"], expected)
        # both ranks computed the same sum; the all-reduce gives each row WORLD times its weight
        own = weights[:3] if rank == 0 else weights[3:]
        assert torch.equal(out["uneven_grad"], WORLD * own)
        assert torch.equal(out["embedded"], torch.arange(7.0)[:, None] * 2)


def test_two_process_training_with_the_feature_aware_sampler_equals_one_process(ranks):
    images, captions, labels = data()
    batches = [[*a, *b] for a, b in zip(ranks[0]["rank_batches"], ranks[1]["rank_batches"], strict=True)]
    one = FeatureAwareBatchSampler(labels, 8, seed=0)
    assert batches == [list(b) for b in one]  # the ranks partition the one-process global batches
    assert all(len({int(labels[i]) for i in b}) == 1 for b in batches)
    model = create_clip("mcl-tiny-vit", image_size=32, seed=0)
    lock_clip(model, 2)
    history = train_clip(model, images, captions, train_config(8), batch_sampler=one)
    for out in ranks:
        assert out["train_losses"] == pytest.approx(history.losses, rel=1e-5)
        for name, value in model.state_dict().items():
            assert torch.allclose(out["trained"][name], value, atol=1e-5), name


def test_random_batch_sampler_partitions_global_batches():
    samplers = [DistributedRandomBatchSampler(50, 4, seed=3, rank=r, world_size=3) for r in range(3)]
    for s in samplers:
        s.set_epoch(2)
    per_rank = [list(s) for s in samplers]
    assert all(len(b) == 4 for batches in per_rank for b in batches) and len(per_rank[0]) == 50 // 12
    seen = [i for step in zip(*per_rank, strict=True) for b in step for i in b]
    assert len(seen) == len(set(seen)) == 48
    single = DistributedRandomBatchSampler(50, 12, seed=3, rank=0, world_size=1)
    single.set_epoch(2)
    assert [i for b in single for i in b] == seen  # the global batches do not depend on world_size
    with pytest.raises(ValueError, match="rank=3"):
        DistributedRandomBatchSampler(50, 4, rank=3, world_size=3)
    with pytest.raises(ValueError, match="n=10"):
        DistributedRandomBatchSampler(10, 4, rank=0, world_size=3)


def test_shard_range_covers_rows_once():
    shards = [shard_range(10, r, 3) for r in range(3)]
    assert [list(s) for s in shards] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert embed_sharded(lambda t: t + 1, torch.zeros(3, 2)).equal(torch.ones(3, 2))  # one process: identity
