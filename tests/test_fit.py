"""The training loop (mcl.fit) through SimCLR: resume equals an uninterrupted run, hooks are used, a diverged
run stops, a checkpoint of other settings is refused, errors name the fix."""

import re

import pytest
import torch
from torch import nn

from mcl.augment import SimCLRAugment
from mcl.fit import TrainConfig
from mcl.losses import nt_xent
from mcl.models import ContrastiveNet, build_encoder, embed
from mcl.simclr import train_simclr


def tiny_images(n=64, size=16, seed=0):
    return torch.randint(
        0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return ContrastiveNet(build_encoder("small_cnn", 3, width=8), proj_dim=16)


def config(**kw):
    base = dict(epochs=2, batch_size=16, lr=1e-3, seed=0, device="cpu", progress=False)
    return TrainConfig(**(base | kw))


@pytest.mark.slow
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    images, aug = tiny_images(), SimCLRAugment(16)
    full = tiny_model()
    h_full = train_simclr(full, images, config(epochs=3), augment=aug)
    part = tiny_model()
    train_simclr(part, images, config(epochs=1, checkpoint_dir=str(tmp_path)), augment=aug)
    resumed = tiny_model(seed=1)  # different weights: the checkpoint must overwrite them
    h_res = train_simclr(resumed, images, config(epochs=3, checkpoint_dir=str(tmp_path)), augment=aug)
    assert len(h_res.losses) == 3
    assert h_res.losses == pytest.approx(h_full.losses, rel=1e-5)
    for p, q in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(p.float(), q.float(), atol=1e-5)


@pytest.mark.slow
def test_temperature_schedule_and_loss_fn_are_used():
    calls = []

    def loss_fn(z1, z2, temperature):
        calls.append(temperature)
        assert torch.allclose(z1.norm(dim=1), torch.ones(len(z1)))
        return (z1 * z2).sum(1).mean() / temperature

    h = train_simclr(
        tiny_model(),
        tiny_images(),
        config(),
        augment=SimCLRAugment(16),
        loss_fn=loss_fn,
        temperature_schedule=lambda epoch: 0.1 * (epoch + 1),
    )
    assert h.temperatures == pytest.approx([0.1, 0.2])
    assert calls == pytest.approx([0.1] * 4 + [0.2] * 4)


@pytest.mark.slow
def test_view_transform_parameters_are_trained_and_its_draws_come_from_its_own_stream():
    class Transform(nn.Conv2d):
        def forward(self, x, generator):
            draws.append(torch.rand(1, generator=generator).item())
            return super().forward(x)

    runs = []
    for _ in range(2):
        draws = []
        torch.manual_seed(0)
        transform = Transform(3, 3, 1)
        before = transform.weight.detach().clone()
        torch.manual_seed(123)  # the global RNG's state must not matter
        train_simclr(
            tiny_model(), tiny_images(), config(epochs=1), augment=SimCLRAugment(16), view_transform=transform
        )
        assert not torch.equal(before, transform.weight)
        runs.append((draws, transform.weight.detach().clone()))
        torch.rand(7)
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_batch_sampler_decides_the_batches():
    seen = []

    class Recording:
        def __len__(self):
            return 2

        def set_epoch(self, epoch):
            seen.append(("epoch", epoch))

        def __iter__(self):
            yield from ([0, 1, 2, 3], [4, 5, 6, 7])

    h = train_simclr(
        tiny_model(), tiny_images(), config(epochs=1), augment=SimCLRAugment(16), batch_sampler=Recording()
    )
    assert seen == [("epoch", 0)] and len(h.losses) == 1


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match="batch_size=1"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="temperature"):
        TrainConfig(temperature=0)
    with pytest.raises(ValueError, match="uint8"):
        train_simclr(tiny_model(), tiny_images().float(), config(), augment=SimCLRAugment(16))
    with pytest.raises(ValueError, match="lower it"):
        train_simclr(tiny_model(), tiny_images(n=8), config(), augment=SimCLRAugment(16))


def test_embed_is_in_eval_mode_and_normalised():
    model = tiny_model()
    model.train()
    images = tiny_images(n=20)
    a = embed(model.features, images, batch_size=7, device="cpu")
    b = embed(model.features, images, batch_size=20, device="cpu")
    assert model.training  # restored
    assert a.shape == (20, model.feature_dim) and torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a.norm(dim=1), torch.ones(20), atol=1e-5)


class _Payload:
    """Pickles to a call of ``Path.touch`` on a marker file: code that runs when the pickle is loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_does_not_run(tmp_path):
    from mcl.fit import CheckpointError

    marker = tmp_path / "payload-ran"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"epoch": 0, "modules": {}, "optimizer": _Payload(marker), "history": {}}, run / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt holds objects other than tensors"):
        train_simclr(tiny_model(), tiny_images(), config(checkpoint_dir=str(run)), augment=SimCLRAugment(16))
    assert not marker.exists()


@pytest.mark.slow
def test_a_corrupt_checkpoint_names_its_path(tmp_path):
    from mcl.fit import CheckpointError

    run = tmp_path / "run"
    part = tiny_model()
    train_simclr(part, tiny_images(), config(epochs=1, checkpoint_dir=str(run)), augment=SimCLRAugment(16))
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"run/last\.pt is not a readable checkpoint"):
        train_simclr(tiny_model(), tiny_images(), config(checkpoint_dir=str(run)), augment=SimCLRAugment(16))


@pytest.mark.slow
def test_a_diverged_run_stops_naming_epoch_and_step_and_saves_nothing(tmp_path):
    from mcl.fit import NonFiniteLossError

    calls = []

    def diverging(z1, z2, temperature):
        calls.append(1)
        loss = nt_xent(z1, z2, temperature)
        return loss * float("nan") if len(calls) > 5 else loss  # the 6th step: epoch 1, step 1

    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, step 1.*lower the learning rate"):
        train_simclr(
            tiny_model(),
            tiny_images(),
            config(epochs=3, checkpoint_dir=str(run)),
            augment=SimCLRAugment(16),
            loss_fn=diverging,
        )
    from mcl.fit import load_file

    assert load_file(run / "last.pt")["epoch"] == 0  # epoch 0 finished and was saved; epoch 1 was not


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("lr", float("inf"), "lr=inf must be a finite number > 0"),
        ("lr", 0.0, "lr=0.0 must be a finite number > 0"),
        ("temperature", float("nan"), "temperature=nan must be a finite number > 0"),
        ("epochs", 0, "epochs=0 must be an int >= 1"),
        ("epochs", 1.5, "epochs=1.5 must be an int >= 1"),
        ("epochs", "abc", "epochs='abc' must be an int >= 1"),
        ("batch_size", 1, "batch_size=1 must be an int >= 2"),
        ("seed", -1, "seed=-1 must be an int >= 0"),
    ],
)
def test_train_config_rejects_bad_values_naming_them(field, value, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        config(**{field: value})


@pytest.mark.slow
def test_a_checkpoint_folder_of_other_settings_is_refused_not_reused(tmp_path):
    from mcl.fit import CheckpointError

    run = str(tmp_path / "run")
    train_simclr(tiny_model(), tiny_images(), config(epochs=2, checkpoint_dir=run), augment=SimCLRAugment(16))
    with pytest.raises(
        CheckpointError, match=r"other settings \(lr: 0.001 there, 0.5 now, seed: 0 there, 7 now\)"
    ):
        train_simclr(
            tiny_model(),
            tiny_images(),
            config(epochs=2, lr=0.5, seed=7, checkpoint_dir=run),
            augment=SimCLRAugment(16),
        )
    with pytest.raises(CheckpointError, match="holds 2 trained epochs, more than epochs=1"):
        train_simclr(
            tiny_model(), tiny_images(), config(epochs=1, checkpoint_dir=run), augment=SimCLRAugment(16)
        )
