"""The CUDA paths (bf16 autocast, channels_last, k-means, the training loop, CLIP), on a GPU only: skipped
where none is available. `make paper-check` runs them first on a lent GPU."""

import pytest
import torch

from mcl.augment import SimCLRAugment
from mcl.device import resolve_device
from mcl.fit import TrainConfig, load_file
from mcl.models import ContrastiveNet, build_encoder, embed
from mcl.simclr import train_simclr

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def tiny(seed=0):
    torch.manual_seed(seed)
    return ContrastiveNet(build_encoder("small_cnn", 3, width=8), proj_dim=16)


def images(n=256, size=32):
    return torch.randint(
        0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"


def test_simclr_trains_on_cuda_and_its_checkpoint_loads_on_the_cpu(tmp_path):
    model = tiny()
    before = [p.detach().clone() for p in model.parameters()]
    config = TrainConfig(epochs=2, batch_size=64, device="cuda", progress=False, checkpoint_dir=str(tmp_path))
    history = train_simclr(model, images(), config, augment=SimCLRAugment(32))
    assert all(torch.isfinite(torch.tensor(history.losses)))
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, model.parameters(), strict=True))
    state = load_file(tmp_path / "last.pt", map_location="cpu")
    cpu = tiny()
    cpu.load_state_dict(state["modules"]["model"])
    x = images(64)
    on_gpu = embed(model.features, x, device="cuda", normalize=True)
    on_cpu = embed(cpu.features, x, device="cpu", normalize=True)
    assert torch.nn.functional.cosine_similarity(on_gpu, on_cpu).min() > 0.99  # bf16 autocast on CUDA


def test_mcl_stages_run_on_cuda():
    from mcl.data.base import LabeledImages
    from mcl.simclr import SimCLRRecipe, mcl_simclr

    data = LabeledImages(images(512), {"a": torch.arange(512) % 4})
    recipe = SimCLRRecipe(width=8, proj_dim=16, epochs=1, batch_size=64, n_stages=2, k=4, groups_per_batch=4)
    result = mcl_simclr(data, recipe, device="cuda", progress=False)
    assert len(result.models) == 2 and result.samplers[1].n_homogeneous_batches > 0


def test_tiny_clip_trains_on_cuda():
    from mcl.clip import ClipTrainConfig, create_clip, train_clip
    from mcl.data.scenes import make_captioned_scenes

    scenes, captions = make_captioned_scenes(128, size=64, seed=0)
    model = create_clip("mcl-tiny-vit", None, device="cuda", seed=0)
    history = train_clip(
        model, scenes, captions, ClipTrainConfig(epochs=1, batch_size=32, device="cuda", progress=False)
    )
    assert torch.isfinite(torch.tensor(history.losses)).all()
