# %% [markdown]
# # CLIP's blind pairs
#
# MMVP-VLM ([Tong et al., CVPR 2024](https://arxiv.org/abs/2401.06209)) is a benchmark of
# "CLIP-blind" pairs: two images that a CLIP model embeds almost alike although they differ in one
# visual detail, such as the direction something faces, the number of objects or a colour. Each pair
# comes with two statements, one true of each image; the model gets the pair right only if *both*
# statements pick their own image. Nine visual patterns, 15 pairs each. The paper reports that
# OpenAI's CLIP gets about 20 % of the pairs right, with several patterns far below the 25 % of a
# model that guesses. MCL's claim is that this is feature suppression: the details were never
# learned, because the contrastive objective was already satisfied by easier features.
#
# This chapter makes stage 0, the ordinary contrastive model, and measures it per pattern.
#
# ```{admonition} What runs here
# :class: note
# At the `book` and `smoke` scales there are no pretrained CLIP weights and no MMVP images on this
# machine (no internet). The chapter therefore trains a **small CLIP from scratch** on generated
# captioned scenes (a row of coloured objects beside a star, a word, an arrow: each of MMVP's nine
# patterns is one property of the scene, named in the caption), and scores it on a **generated
# benchmark in MMVP-VLM's exact layout**, in which each pair differs only in its pattern's property.
# The numbers are therefore not comparable one-to-one with the paper's; the per-pattern shape is
# what to look at. At `scale="paper"` the same code loads OpenAI's ViT-B-32 and the real MMVP-VLM.
# ```

# %% tags=["parameters"]
scale: str = "book"  # smoke | book | paper
device: str = "auto"  # auto | cpu | cuda
seed: int = 0  # initialisation and batch order of stage 0
arch: str = None  # open_clip architecture; None: the preset's (mcl-tiny-vit; ViT-B-32 at paper scale)
pretrained: str = None  # open_clip tag or file; None: the preset's (random init; "openai" at paper)
image_size: int = None  # model input side in px; None: the architecture's
n_train: int = None  # training pairs; None: the preset's (4,000 generated scenes at book scale)
stage0_epochs: int = None  # stage-0 epochs (0: a pretrained model as it is); None: the preset's
batch_size: int = None  # batch size; None: the preset's
mmvp_pairs_per_pattern: int = None  # pairs per pattern of the generated benchmark; None: the preset's
cpu_threads: int = None  # torch CPU threads; None: the preset's (1; torch's default at paper scale)

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display
from myst_nb import glue

from mcl import clip_experiments as ce
from mcl.data.mmvp import PATTERN_ABBREVIATIONS, load_pair_images
from mcl.data.show import image_grid
from mcl.device import resolve_device
from mcl.paper import CLIP_MMVP, MMVP_PATTERNS
from mcl.results import save_results

start = time.perf_counter()
preset = ce.clip_preset(
    scale,
    arch=arch,
    pretrained=pretrained,
    image_size=image_size,
    n_train=n_train,
    stage0_epochs=stage0_epochs,
    batch_size=batch_size,
    mmvp_pairs_per_pattern=mmvp_pairs_per_pattern,
    cpu_threads=cpu_threads,
)
device = str(resolve_device(device))
ce.configure_threads(preset, device)
cache = ce.clip_cache_dir(scale)
data = ce.load_training_data(preset, cache)
pairs = ce.load_mmvp(preset, cache)
print(f"training data: {data.source}; benchmark: {preset.mmvp}, {len(pairs)} pairs; device {device}")
print(f"model: {preset.arch} (pretrained={preset.pretrained}), stage 0 epochs: {preset.stage0_epochs}")

# %% [markdown]
# ## The benchmark
#
# One pair of every pattern, with the statement of each image above it. Within a pair the two
# scenes differ only in the pattern's property; the statement names that property alone, while
# the training captions name all nine at once.

# %%
first = [
    next(p for p in pairs if p.pattern == pattern) for pattern in dict.fromkeys(p.pattern for p in pairs)
]
images = torch.cat([load_pair_images(p, size=96) for p in first])
titles = [f"{PATTERN_ABBREVIATIONS[p.pattern]}: {s}" for p in first for s in p.statements]
fig = image_grid(images, nrow=6, titles=titles)
fig.set_size_inches(13, 7.5)
for ax in fig.axes:
    ax.title.set_fontsize(7)
plt.show()

# %% [markdown]
# ## Stage 0: an ordinary CLIP
#
# Stage 0 is trained with the symmetric CLIP loss on random batches of image-caption pairs, both
# towers learning (`mcl.clip.train_clip`; at paper scale it is OpenAI's model as it is).
# The model is cached, so the next two chapters reuse it.

# %%
stage0, history = ce.train_stage0(preset, data, device=device, seed=seed, cache=cache)
if history is not None:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(history.losses) + 1), history.losses, marker="o")
    ax.set(xlabel="epoch", ylabel="CLIP loss", title="stage 0 training")
    plt.show()

# %% [markdown]
# ## Stage 0 on the blind pairs
#
# Scored as MMVP-VLM scores (`mcl.clip_eval.score_mmvp`): for each statement,
# "a photo of " + statement is compared with both images of its pair (softmax of 100 x cosine
# similarity); a pair is right when both statements pick their own image. A model that guesses
# gets 25 %, one that cannot tell the two images apart gets 0 %.

# %%
scores = ce.mmvp_stage_scores([stage0], pairs, device=device)
ours = scores["stage 0"]
table = ce.mmvp_table({"stage 0": ours}, {"pretrained CLIP (MMVP-VLM)": CLIP_MMVP})
display(table)

frame = pd.concat(
    [
        pd.DataFrame(
            {"pattern": MMVP_PATTERNS, "accuracy (%)": [CLIP_MMVP[p] for p in MMVP_PATTERNS]}
        ).assign(model="paper: pretrained CLIP"),
        ce.per_pattern_frame({"this run: stage 0": ours}),
    ]
)
fig, ax = plt.subplots(figsize=(9, 3.5))
sns.barplot(frame, x="pattern", y="accuracy (%)", hue="model", ax=ax)
ax.axhline(ce.chance_level(), color="grey", ls="--", lw=1, label="chance (25 %)")
ax.legend(fontsize=8)
ax.set_ylim(0, 100)
plt.show()

# %%
per_pattern = ce.abbreviate(ours.per_pattern)
below = [p for p, v in per_pattern.items() if v <= ce.chance_level()]
glue("clip06_average", ours.average, display=False)
glue("clip06_paper_average", CLIP_MMVP["average"], display=False)
glue("clip06_n_below_chance", len(below), display=False)
glue("clip06_worst", min(per_pattern.values()), display=False)
glue("clip06_best", max(per_pattern.values()), display=False)
glue("clip06_pairs_per_pattern", len(pairs) // len(per_pattern), display=False)
print("patterns at or below chance:", ", ".join(below) or "none")

# %% [markdown]
# Stage 0 gets {glue:text}`clip06_average:.1f` % of the pairs right on average (the paper's
# pretrained CLIP: {glue:text}`clip06_paper_average:.1f` % on the real benchmark), with
# {glue:text}`clip06_pairs_per_pattern:d` pairs per pattern. {glue:text}`clip06_n_below_chance:d` of
# the nine patterns are at or below chance; the patterns range from
# {glue:text}`clip06_worst:.1f` % to {glue:text}`clip06_best:.1f` %. The model did learn to match
# captions to scenes (its loss fell), yet whole properties of the scene play almost no part in its
# image embedding: those are the blind patterns.
#
# ## Which pairs it misses
#
# Pairs of the two weakest patterns that stage 0 gets wrong, with the probability each statement
# gives to its own image (a pair is right only when both exceed 0.5).

# %%
weakest = sorted(ours.per_pattern, key=ours.per_pattern.get)[:2]
wrong = [i for i, p in enumerate(pairs) if p.pattern in weakest and not bool(ours.right[i])][:6]
if wrong:
    images = torch.cat([load_pair_images(pairs[i], size=96) for i in wrong])
    titles = [
        f"{pairs[i].statements[j]}\np(own) = {ours.probs[i, j, j]:.2f}" for i in wrong for j in range(2)
    ]
    fig = image_grid(images, nrow=4, titles=titles)
    fig.set_size_inches(9, 2.6 * ((len(images) + 3) // 4))
    for ax in fig.axes:
        ax.title.set_fontsize(7)
    plt.show()
else:
    print("stage 0 gets every pair of its two weakest patterns right")

# %% [markdown]
# The next chapter ({doc}`07_mcl_clip`) clusters stage 0's image embeddings, trains new stages on
# batches in which what stage 0 learned is constant, and measures the same nine patterns again.

# %%
save_results(
    name="06_clip_blind_pairs",
    metrics={
        "mmvp": {"stage 0": ce.mmvp_metrics(ours)},
        "benchmark": preset.mmvp,
        "chance": ce.chance_level() / 100,
        "patterns_at_or_below_chance": below,
        "stage0": {
            "losses": history.losses if history else [],
            "train_seconds": history.seconds if history else 0.0,
        },
        "n_train": len(data),
    },
    scale=scale,
    seed=seed,
    parameters=preset.parameters(),
    device=device,
    wall_time_s=time.perf_counter() - start,
)
