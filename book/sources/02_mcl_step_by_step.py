# %% [markdown]
# # MCL step by step on Trifeature
#
# This chapter runs Multistage Contrastive Learning on Trifeature one stage at a time and looks at
# what happens in between: what stage 0 learns, what its clusters group by, what pseudo-labels and a
# feature-aware batch look like, and how every stage's linear-probe accuracies change.
#
# Trifeature images show a shape (10 kinds) filled with a texture (10 kinds) in a colour (10 kinds),
# and the three attributes are independent. Colour is the easiest of the three to tell apart: a
# contrastive model can solve most of its task with colour alone, and then has little reason to learn
# shape. MCL's answer, in the paper's words, is an "eye" and a "brain": the eye (k-means on the previous
# stage's embeddings) notices what has been learned, and the brain (the next stage) is then trained
# only on negatives that already agree on it, so it must find something else.

# %% tags=["parameters"]
scale: str = "book"  # smoke | book | paper
device: str = "auto"  # auto | cpu | cuda
seed: int = 0
epochs = None  # int; None: the preset's value for this scale
n_stages = None  # int; None: the preset's value
k = None  # int; k-means clusters per stage (None: the preset's)
batch_size = None  # int; None: the preset's value
image_size = None  # int; Trifeature render size in pixels (None: the preset's)

# %%
import json
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from myst_nb import glue

from mcl import experiments, paper
from mcl.cluster import ami
from mcl.data.show import image_grid
from mcl.device import resolve_device
from mcl.recipes import probe_models
from mcl.results import save_results
from mcl.scales import preset

started = time.perf_counter()
device = str(resolve_device(device))
setup = preset("trifeature", scale, epochs=epochs, n_stages=n_stages, k=k, batch_size=batch_size)
setup = experiments.with_data(setup, size=image_size)
recipe = setup.recipe
train, test = experiments.load_data("trifeature", setup)
attributes = list(train.labels)
print(f"{len(train)} training and {len(test)} test images of {tuple(train.images.shape[1:])}; {recipe}")

# %% [markdown]
# ## The data
#
# A few training images with their three labels:

# %%
names = train.label_names
titles = [
    f"{names['shape'][int(train.labels['shape'][i])]}\n{names['texture'][int(train.labels['texture'][i])]}"
    f"\n{names['color'][int(train.labels['color'][i])]}"
    for i in range(16)
]
_ = image_grid(train.images[:16], nrow=8, titles=titles)
# %% [markdown]
# ## All stages, with the library's driver
#
# `experiments.multistage` calls `mcl.stages.run_multistage` with SimCLR's build, train and embed
# functions: stage 0 is plain SimCLR; before every later stage the previous stage's backbone features
# of the training set are L2-normalised and clustered with k-means, the cluster ids of all stages so far
# are combined into pseudo-labels (their Cartesian product), and the stage is trained with the
# feature-aware batch sampler, so an anchor's negatives all come from its own pseudo-label group. The
# authors draw every batch from one group; the book preset draws batches of `groups_per_batch` one-group
# blocks and keeps the negatives within a block (the same negatives per anchor; why, below), and with
# `stage_init="previous"` every stage starts from the previous stage's weights ("fresh": a new
# initialisation). Trained stages are cached on disk, so a rerun only evaluates.

# %%
result = experiments.multistage("trifeature", setup, train, scale=scale, seed=seed, device=device)
random_init = experiments.random_model(setup, train, seed=seed)
per_stage = {f"stage {s}": probe_models([m], train, test, device=device) for s, m in enumerate(result.models)}
per_stage["random init"] = probe_models([random_init], train, test, device=device)
concatenated = {
    f"stages 0..{s}": probe_models(result.models[: s + 1], train, test, device=device)
    for s in range(1, len(result.models))
}
probes = pd.DataFrame({**per_stage, **concatenated}).T[attributes]
probes

# %% [markdown]
# ## Stage 0: what plain SimCLR learned
#
# Stage 0 is an ordinary SimCLR model. Its linear probes read colour almost perfectly, and shape much
# less well (random initialisation is shown as the floor every number must be judged against):
# shape {glue:text}`stage0_shape:.2f`, texture {glue:text}`stage0_texture:.2f`, colour
# {glue:text}`stage0_color:.2f`, against {glue:text}`random_shape:.2f`,
# {glue:text}`random_texture:.2f` and {glue:text}`random_color:.2f` for the untrained network.

# %%
for attribute in attributes:
    glue(f"stage0_{attribute}", float(probes.loc["stage 0", attribute]), display=False)
    glue(f"random_{attribute}", float(probes.loc["random init", attribute]), display=False)

# %% [markdown]
# ## The eye: what stage 0's clusters group by
#
# The adjusted mutual information (AMI) between each stage's k-means clusters and each attribute says
# what a stage's embedding space is organised by (1: the clusters are the attribute's classes; 0: they
# are unrelated to it).

# %%
cluster_ami = pd.DataFrame(
    {
        f"stage {s}": {a: ami(ids, train.labels[a]) for a in attributes}
        for s, ids in enumerate(result.cluster_ids)
    }
).T
glue("ami0_color", float(cluster_ami.loc["stage 0", "color"]), display=False)
glue("ami0_shape", float(cluster_ami.loc["stage 0", "shape"]), display=False)
ax = sns.heatmap(cluster_ami, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis")
_ = ax.set_title("AMI between each stage's k-means clusters and the attributes")
# %% [markdown]
# Stage 0's clusters follow colour (AMI {glue:text}`ami0_color:.2f`) far more than shape
# (AMI {glue:text}`ami0_shape:.2f`). Six images of each of stage 0's first clusters:

# %%
ids = result.cluster_ids[0]
rows = [torch.nonzero(ids == c).flatten()[:6] for c in range(min(6, int(ids.max()) + 1))]
fig, axes = plt.subplots(len(rows), 1, figsize=(5, 1.1 * len(rows)))
for c, (ax, index) in enumerate(zip(np.atleast_1d(axes), rows, strict=True)):
    image_grid(train.images[index], nrow=6, ax=ax)
    ax.set_title(f"stage-0 cluster {c}", fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Pseudo-labels and a feature-aware batch
#
# Stage 1's pseudo-label is stage 0's cluster id; stage 2's is the pair (stage-0 id, stage-1 id),
# compacted to consecutive integers. The sampler cuts every group into blocks, visits the groups
# round-robin and puts `groups_per_batch` consecutive blocks (from different groups) into one batch;
# leftovers that do not fill a block are dropped for that epoch (reported below). With K = 10 the product
# gives stage 2 up to 100 groups: this is why the book preset trains on 10,000 images with batches of 64
# (with 5,000 images and batches of 256 no stage-2 group filled a batch, and the driver says so and what
# to change).

# %%
for s in range(1, len(result.models)):
    print(f"stage {s}:", result.samplers[s].summary(), "\n")
sampler = result.samplers[1]
batch = next(iter(sampler))
blocks = [batch[b : b + sampler.block_size] for b in range(0, len(batch), sampler.block_size)]
for b, block in enumerate(blocks):
    print(f"block {b}: colours", sorted({names["color"][int(c)] for c in train.labels["color"][block]}))
_ = image_grid(train.images[[i for block in blocks for i in block[:8]]], nrow=8)
# %% [markdown]
# One stage-1 batch, eight images of each block per row. Within a block colour no longer tells the images
# apart, so the stage-1 model's loss can only fall by learning something else: shape, texture, position.
#
# ## The brain: what every stage learns
#
# Linear-probe accuracy of each stage alone and of the concatenation of stages 0..s (raw backbone
# features concatenated, then L2-normalised once, as the authors do):

# %%
long = probes.reset_index(names="features").melt(
    id_vars="features", var_name="attribute", value_name="accuracy"
)
plt.figure(figsize=(8, 3.5))
ax = sns.barplot(long, x="features", y="accuracy", hue="attribute")
ax.set_ylim(0, 1.05)
ax.set_title("Linear probes on Trifeature, by stage")
_ = plt.xticks(rotation=20)
# %%
last = f"stages 0..{len(result.models) - 1}"
glue("stage1_shape", float(probes.loc["stage 1", "shape"]), display=False)
glue("concat_shape", float(probes.loc[last, "shape"]), display=False)
glue("last_concat", last, display=False)

# %% [markdown]
# Shape: stage 0 {glue:text}`stage0_shape:.2f`, stage 1 alone {glue:text}`stage1_shape:.2f`, and
# the concatenation of {glue:text}`last_concat` {glue:text}`concat_shape:.2f`. The paper reports
# the concatenated MCL representation on Trifeature (its Table 2) against SimCLR:

# %%
paper_vs_run = pd.DataFrame(
    {
        "paper SimCLR": {a: paper.BASELINES["SimCLR"][f"trifeature/{a}"] for a in attributes},
        "paper MCL": {a: paper.BASELINES["MCL"][f"trifeature/{a}"] for a in attributes},
        "this run, stage 0": probes.loc["stage 0"],
        f"this run, MCL ({last})": probes.loc[last],
        "this run, random init": probes.loc["random init"],
    }
)
paper_vs_run

# %% [markdown]
# ## Which recipe? The search behind the book preset
#
# The issue this book answers set two targets for this chapter's data at book scale: stage 1 alone should
# read shape at least 0.05 better than SimCLR, and the concatenation of the three stages at least 0.05
# better than an equal-budget ensemble of three SimCLR seeds. `book/search_trifeature.py` tried a few
# recipes (each changes only what its name says from the book preset; seed 0 unless the name says
# otherwise) and measured both differences. The table is read from the committed file
# `book/data/trifeature_search.json`, not recomputed here; "minutes" is one CPU thread.

# %%
search = json.loads(Path("data/trifeature_search.json").read_text())
search_table = pd.DataFrame(
    [
        {
            "setting": candidate,
            "SimCLR": row["simclr"]["shape"],
            **{f"stage {s} alone": stage["shape"] for s, stage in enumerate(row["stages"]) if s > 0},
            "MCL concat": row["concat"]["shape"],
            "ensemble": row["ensemble"]["shape"],
            "stage 1 - SimCLR": row["stage1_gain"],
            "concat - ensemble": row["concat_gain"],
            "both >= margin": row["meets_targets"],
            "minutes": row["seconds"] / 60,
        }
        for candidate, row in search["candidates"].items()
    ]
).set_index("setting")
glue("tri_search_n", len(search_table), display=False)
glue("tri_search_met", int(search_table["both >= margin"].sum()), display=False)
glue("tri_search_stage1_best", float(search_table["stage 1 - SimCLR"].max()), display=False)
glue("tri_search_concat_best", float(search_table["concat - ensemble"].max()), display=False)
glue("tri_search_stage1_where", str(search_table["stage 1 - SimCLR"].idxmax()), display=False)
glue("tri_search_concat_where", str(search_table["concat - ensemble"].idxmax()), display=False)
commands = sorted({row["command"] for row in search["candidates"].values()})
print("shape probes, measured by:", *commands, sep="\n  ")
search_table.round(3)

# %% [markdown]
# {glue:text}`tri_search_met` of the {glue:text}`tri_search_n` rows meet both targets. The largest
# stage-1 gain over SimCLR is {glue:text}`tri_search_stage1_best:.3f` ("{glue:text}`tri_search_stage1_where`")
# and the largest gain of the concatenation over the ensemble {glue:text}`tri_search_concat_best:.3f`
# ("{glue:text}`tri_search_concat_where`"). Single rows mislead, so the settings that looked best were
# measured at more seeds:

# %%
setting = search_table.index.str.replace(r", seed \d+$", "", regex=True).rename("setting (all seeds)")
seeds_table = search_table.groupby(setting, sort=False)[["stage 1 - SimCLR", "concat - ensemble"]].agg(
    ["mean", "min", "count"]
)
seeds_table = seeds_table[seeds_table[("stage 1 - SimCLR", "count")] > 1]
chosen = seeds_table.loc["4 groups per batch, previous stage"]
glue("preset_stage1_gain", float(chosen[("stage 1 - SimCLR", "mean")]), display=False)
glue("preset_stage1_min", float(chosen[("stage 1 - SimCLR", "min")]), display=False)
glue("preset_concat_gain", float(chosen[("concat - ensemble", "mean")]), display=False)
glue("preset_concat_min", float(chosen[("concat - ensemble", "min")]), display=False)
glue("preset_seeds", int(chosen[("stage 1 - SimCLR", "count")]), display=False)
from_first = seeds_table.loc["4 groups per batch, stages from stage 0"]
glue("first_concat_gain", float(from_first[("concat - ensemble", "mean")]), display=False)
glue("first_seeds", int(from_first[("concat - ensemble", "count")]), display=False)
seeds_table.round(3)

# %% [markdown]
# The book preset is the row "4 groups per batch, previous stage". Over {glue:text}`preset_seeds` seeds its
# stage 1 reads shape {glue:text}`preset_stage1_gain:.3f` better than SimCLR on average (at worst
# {glue:text}`preset_stage1_min:.3f`): the first target is met on average. Its concatenation beats the
# ensemble by {glue:text}`preset_concat_gain:.3f` on average (at worst {glue:text}`preset_concat_min:.3f`):
# the second target, 0.05, is **not** met.
#
# Why blocks of groups: with the authors' sampler ("one group per batch") a stage-1 batch holds one colour,
# so the small CNN's BatchNorm normalises each training step with one colour's statistics, and at evaluation
# with the statistics of all colours; stage 1 then read shape no better, or worse, than SimCLR. Four
# one-colour blocks per batch, with an anchor's negatives still taken only from its own block
# (`mcl.losses.grouped_loss`), keep the feature-aware negatives and give BatchNorm every colour. (A vision
# transformer's LayerNorm normalises every sample on its own, so there one group per batch has no such
# cost.) Starting every stage from the previous stage's weights
# (`stage_init="previous"`) gives it SimCLR's shape knowledge to build on; fresh stages vary more from seed
# to seed. Starting stages 1 and 2 both from stage 0's weights (`stage_init="first"`, so that they diverge
# from each other rather than stage 2 refining stage 1) beats the ensemble by
# {glue:text}`first_concat_gain:.3f` on average over {glue:text}`first_seeds` seeds: no different from the
# preset within the seed spread, with a stage 2 that alone reads shape worse, so the preset keeps
# `"previous"`. A lower temperature or milder crops make plain SimCLR read shape better and leave MCL's
# stages less to add; finer stage-0 clusters (K = 50 or 100) follow colour less cleanly and leave stage 1
# worse at shape than SimCLR. How far stage 1 could go: chapter 1's one-colour control, SimCLR on the same
# renders all drawn in one colour, is the shape accuracy of a model that never sees colour vary.

# %%
metrics = {
    "probes": probes.to_dict(orient="index"),
    "cluster_ami": cluster_ami.to_dict(orient="index"),
    "groups": [None if s is None else s.n_groups for s in result.samplers],
    "dropped": [None if s is None else s.n_dropped for s in result.samplers],
    "final_loss": [h.losses[-1] for h in result.histories],
}
save_results(
    "02_mcl_step_by_step",
    metrics,
    scale=scale,
    seed=seed,
    device=device,
    parameters={"data": setup.data, "recipe": asdict(recipe)},
    wall_time_s=time.perf_counter() - started,
)
