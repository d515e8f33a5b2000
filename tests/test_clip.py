"""MCL for CLIP: open_clip models, the authors' locking, the loss of a batch, training, resuming, MCL
stages."""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from open_clip.utils import FrozenBatchNorm2d
from torch import nn

from mcl.clip import (
    TINY_CONFIGS,
    ClipTrainConfig,
    clip_batch_loss,
    create_clip,
    encode_images,
    encode_texts,
    get_tokenizer,
    image_groups,
    learning_rate,
    lock_clip,
    make_optimizer,
    mcl_clip,
    normalize_images,
    train_clip,
    trainable_parameter_names,
)
from mcl.clip.train import pick_captions, text_tower_frozen, tokenize_captions
from mcl.cluster import kmeans
from mcl.sampling import combine_labels

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is faster, and on a shared CPU it avoids OpenMP spin-waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square"]


def vit(seed=0):
    return create_clip("mcl-tiny-vit", image_size=32, seed=seed)


def rn(seed=0):
    return create_clip("mcl-tiny-rn", image_size=32, seed=seed)


def scenes(n=32, size=32, seed=0):
    """Images whose colour is their caption's colour word (a learnable pairing)."""
    g = torch.Generator().manual_seed(seed)
    palette = torch.tensor([[230, 30, 30], [30, 200, 30], [30, 30, 230], [230, 230, 30]], dtype=torch.uint8)
    colour = torch.arange(n) % 4
    shape = (torch.arange(n) // 4) % 2
    images = palette[colour][:, :, None, None].expand(n, 3, size, size).clone()
    images = (
        (images.int() + torch.randint(-20, 20, (n, 3, size, size), generator=g)).clamp(0, 255).to(torch.uint8)
    )
    captions = [f"a {COLOURS[c]} {SHAPES[s]}" for c, s in zip(colour.tolist(), shape.tolist(), strict=True)]
    return images, captions


def config(**kw):
    base = dict(epochs=1, batch_size=8, lr=1e-3, seed=0, device="cpu", progress=False)
    return ClipTrainConfig(**(base | kw))


# ------------------------------------------------------------------------------------------ models
def test_tiny_configs_build_and_tokenizer_loads_offline():
    for arch in TINY_CONFIGS:
        model = create_clip(arch)
        size = TINY_CONFIGS[arch]["vision_cfg"]["image_size"]
        out = model.encode_image(torch.zeros(2, 3, size, size))
        assert out.shape == (2, TINY_CONFIGS[arch]["embed_dim"])
    tokens = get_tokenizer("mcl-tiny-vit")(["a photo of a red circle"])
    assert tokens.shape == (1, TINY_CONFIGS["mcl-tiny-vit"]["text_cfg"]["context_length"])
    assert torch.equal(
        create_clip("mcl-tiny-vit", seed=3).visual.proj, create_clip("mcl-tiny-vit", seed=3).visual.proj
    )


def test_create_clip_rejects_unknown_arch_and_tag():
    with pytest.raises(ValueError, match="arch='nope'"):
        create_clip("nope")
    with pytest.raises(ValueError, match="pretrained='not-a-tag'"):
        create_clip("ViT-B-32", pretrained="not-a-tag")


def test_create_clip_loads_a_local_checkpoint_with_module_prefix(tmp_path):
    source = vit(seed=1)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = create_clip("mcl-tiny-vit", pretrained=str(path), image_size=32, seed=2)
    for (k, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


# ----------------------------------------------------------------------------------------- locking
def names_of(model, modules):
    """Parameter names of the given modules/parameters (a reference built from the module tree)."""
    ids = set()
    for item in modules:
        ids |= {id(item)} if isinstance(item, nn.Parameter) else {id(p) for p in item.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("unlocked", [0, 1, 2, 4])
def test_vit_locking_trains_only_the_last_groups_and_logit_scale(unlocked):
    model = vit()
    lock_clip(model, unlocked)
    expected = {"logit_scale"}
    v = model.visual
    blocks = v.transformer.resblocks
    if unlocked >= 1:
        expected |= {"visual.proj"}
    if unlocked >= 2:
        expected |= names_of(model, [blocks[-1], v.ln_post])
    if unlocked >= 3:
        expected |= names_of(model, list(blocks[-(unlocked - 1) : -1]))
    assert set(trainable_parameter_names(model)) == expected
    assert text_tower_frozen(model)


@pytest.mark.parametrize("unlocked", [0, 1, 2, 5, 6])
def test_resnet_locking_unfreezes_the_last_groups_and_freezes_bn_stats_elsewhere(unlocked):
    model = rn()
    v = model.visual
    order = [
        [v.conv1, v.bn1, v.conv2, v.bn2, v.conv3, v.bn3],
        [v.layer1],
        [v.layer2],
        [v.layer3],
        [v.layer4],
        [v.attnpool],
    ]
    expected = {"logit_scale"} | names_of(model, [m for g in order[len(order) - unlocked :] for m in g])
    lock_clip(model, unlocked)
    assert set(trainable_parameter_names(model)) == expected
    assert not any(
        n.startswith(("transformer.", "token_embedding", "ln_final", "text_projection"))
        for n in trainable_parameter_names(model)
    )
    v = model.visual
    frozen_bn = {name for name, m in v.named_modules() if isinstance(m, FrozenBatchNorm2d)}
    live_bn = {name for name, m in v.named_modules() if isinstance(m, nn.BatchNorm2d)}
    groups = ["stem", "layer1", "layer2", "layer3", "layer4", "attnpool"]
    for name in frozen_bn | live_bn:
        group = name.split(".")[0] if name.startswith("layer") else "stem"
        locked = groups.index(group) < len(groups) - unlocked
        assert (name in frozen_bn) == locked, name
    assert len(image_groups(v)) == 6


def test_locking_rejects_too_many_groups():
    with pytest.raises(ValueError, match="unlocked_groups=7"):
        lock_clip(rn(), 7)
    with pytest.raises(ValueError, match="unlocked_groups=9"):
        lock_clip(vit(), 9)


def test_training_changes_only_unlocked_parameters():
    for model in (vit(), rn()):
        images, captions = scenes(16)
        lock_clip(model, 2)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        trainable = set(trainable_parameter_names(model))
        train_clip(model, images, captions, config())
        for name, value in model.state_dict().items():
            if name in trainable:
                assert not torch.equal(before[name], value), name
            elif "running_" not in name and "num_batches" not in name:
                assert torch.equal(before[name], value), name


# -------------------------------------------------------------------------------------- the loss
def naive_clip_loss(image, text, scale):
    n = len(image)
    total = 0.0
    for i in range(n):
        logits_i = [scale * float(image[i] @ text[j]) for j in range(n)]
        logits_t = [scale * float(text[i] @ image[j]) for j in range(n)]
        total += -logits_i[i] + math.log(sum(math.exp(v) for v in logits_i))
        total += -logits_t[i] + math.log(sum(math.exp(v) for v in logits_t))
    return total / (2 * n)


def test_batch_loss_is_the_symmetric_clip_loss_with_the_models_scale():
    model = vit()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(12.0))
    images, captions = scenes(6)
    x = normalize_images(model, images.float() / 255)
    tokens = get_tokenizer("mcl-tiny-vit")(captions)
    loss = clip_batch_loss(model, x, tokens)
    with torch.no_grad():
        img = F.normalize(model.encode_image(x), dim=1)
        txt = F.normalize(model.encode_text(tokens), dim=1)
    assert loss.item() == pytest.approx(naive_clip_loss(img, txt, 12.0), rel=1e-5)
    cached = clip_batch_loss(model, x, text_features=txt.detach())
    assert cached.item() == pytest.approx(loss.item(), rel=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        clip_batch_loss(model, x)


def test_normalize_images_resizes_and_standardises():
    model = vit()
    x = torch.rand(2, 3, 48, 48)
    out = normalize_images(model, x)
    assert out.shape == (2, 3, 32, 32)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    same = torch.rand(2, 3, 32, 32)
    assert torch.allclose(normalize_images(model, same), (same - mean) / std)


def test_schedule_and_optimizer_groups():
    cfg = ClipTrainConfig(lr=1.0, warmup_steps=4, schedule="cosine")
    assert [learning_rate(cfg, s, 12) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert learning_rate(cfg, 8, 12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert learning_rate(ClipTrainConfig(lr=0.3), 100, 10) == 0.3
    model = vit()
    lock_clip(model, 2)
    opt = make_optimizer(model, cfg)
    no_decay, decay = opt.param_groups
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == cfg.weight_decay
    assert all(p.ndim < 2 for p in no_decay["params"]) and all(p.ndim >= 2 for p in decay["params"])
    with pytest.raises(ValueError, match="schedule="):
        ClipTrainConfig(schedule="step")


def test_captions_are_tokenised_once_and_one_is_drawn_per_image():
    tok = get_tokenizer("mcl-tiny-vit")
    tokens, offsets = tokenize_captions(["a", ["b", "c", "d"], "e"], tok)
    assert tokens.shape[0] == 5 and offsets.tolist() == [0, 1, 4, 5]
    picks = torch.stack([pick_captions(offsets, torch.Generator().manual_seed(s)) for s in range(50)])
    assert (picks[:, 0] == 0).all() and (picks[:, 2] == 4).all()
    assert set(picks[:, 1].tolist()) == {1, 2, 3}
    with pytest.raises(ValueError, match=r"captions\[0\] is empty"):
        tokenize_captions([[]], tok)


# ------------------------------------------------------------------------------------- training
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    images, captions = scenes(32)
    full = vit()
    h_full = train_clip(full, images, captions, config(epochs=2))
    part = vit()
    train_clip(part, images, captions, config(epochs=1, checkpoint_dir=str(tmp_path)))
    resumed = vit(seed=5)
    h_res = train_clip(resumed, images, captions, config(epochs=2, checkpoint_dir=str(tmp_path)))
    assert h_res.losses == pytest.approx(h_full.losses, rel=1e-5)
    for (k, p), q in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), k


@pytest.mark.slow
def test_training_lowers_the_loss_and_aligns_colours():
    images, captions = scenes(32)
    model = vit()
    history = train_clip(model, images, captions, config(epochs=8, lr=3e-3))
    assert history.losses[-1] < history.losses[0]
    assert len(history.temperatures) == 8 and history.seconds > 0
    img = encode_images(model, images, device="cpu")
    txt = encode_texts(model, [f"a {c} circle" for c in COLOURS], device="cpu")
    predicted = (img @ txt.T).argmax(1)
    assert (predicted == torch.arange(32) % 4).float().mean() > 0.5


def test_train_clip_validates_inputs():
    images, captions = scenes(8)
    with pytest.raises(ValueError, match="captions has 7"):
        train_clip(vit(), images, captions[:7], config())
    with pytest.raises(ValueError, match="uint8"):
        train_clip(vit(), images.float(), captions, config())
    with pytest.raises(ValueError, match="batch_size=1"):
        config(batch_size=1)


# ------------------------------------------------------------------------------------------ MCL
def test_mcl_clip_restarts_from_stage0_and_trains_on_homogeneous_batches(monkeypatch):
    images, captions = scenes(48)
    base = vit()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    seen = []
    import mcl.clip.stages as clip_module

    real_train = clip_module.train_clip

    def spy(model, imgs, caps, cfg, *, batch_sampler=None, tokenizer=None):
        start = {k: v.clone() for k, v in model.state_dict().items()}
        seen.append((start, batch_sampler, [list(b) for b in batch_sampler]))
        return real_train(model, imgs, caps, cfg, batch_sampler=batch_sampler, tokenizer=tokenizer)

    monkeypatch.setattr(clip_module, "train_clip", spy)
    result = mcl_clip(
        base, images, captions, config(batch_size=4), n_stages=3, k=2, unlocked_groups=2, progress=False
    )
    assert len(result.models) == 3 and result.models[0] is base and result.histories[0] is None
    assert all(torch.equal(v, base_state[k]) for k, v in base.state_dict().items())  # stage 0 untouched
    assert len(seen) == 2
    for stage, (start, _sampler, batches) in enumerate(seen, start=1):
        assert all(
            torch.equal(start[k], base_state[k]) for k in base_state
        )  # every stage starts from stage 0
        labels = result.pseudo_labels[stage]
        assert all(len({int(labels[i]) for i in b}) == 1 for b in batches)
    # stage 0's clusters are k-means of stage 0's normalised image embeddings
    expected = kmeans(encode_images(base, images, device="cpu"), 2, seed=0).labels
    assert torch.equal(result.cluster_ids[0], expected)
    assert torch.equal(result.pseudo_labels[2], combine_labels(result.cluster_ids[:2]))
    assert set(trainable_parameter_names(result.models[1])) == {
        "logit_scale",
        "visual.proj",
        *names_of(
            result.models[1],
            [result.models[1].visual.transformer.resblocks[-1], result.models[1].visual.ln_post],
        ),
    }
    with pytest.raises(ValueError, match="init="):
        mcl_clip(base, images, captions, config(), init="random")
