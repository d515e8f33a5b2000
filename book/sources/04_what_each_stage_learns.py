# %% [markdown]
# # What each stage learns
#
# The paper measures how different MCL's stages are by the adjusted mutual information (AMI) between
# their k-means clusters: low AMI means each stage organises the data by something else. This chapter
# shows that table for our Trifeature run, how the pseudo-label groups split up from stage to stage,
# the nearest neighbours of a few images under each stage, and where each stage "looks" (an occlusion
# map: how much the embedding changes when a patch of the image is greyed out).
#
# It reuses the MCL run of the previous chapter (same preset and seed: the trained stages come from the
# run cache).

# %% tags=["parameters"]
scale: str = "book"  # smoke | book | paper
device: str = "auto"
seed: int = 0
epochs = None  # int; None: the preset's value
n_stages = None  # int; None: the preset's value
k = None  # int; None: the preset's value
batch_size = None  # int; None: the preset's value
image_size = None  # int; None: the preset's value
n_anchors: int = 4  # images whose nearest neighbours are shown

# %%
import time
from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from myst_nb import glue

from mcl import experiments, paper
from mcl.cluster import ami, ami_matrix
from mcl.data.show import image_grid
from mcl.device import resolve_device
from mcl.evaluate import nearest_neighbours, occlusion_map
from mcl.recipes import features
from mcl.results import save_results
from mcl.scales import preset

started = time.perf_counter()
device = str(resolve_device(device))
setup = preset("trifeature", scale, epochs=epochs, n_stages=n_stages, k=k, batch_size=batch_size)
setup = experiments.with_data(setup, size=image_size)
train, test = experiments.load_data("trifeature", setup)
result = experiments.multistage("trifeature", setup, train, scale=scale, seed=seed, device=device)
stages = [f"stage {s}" for s in range(len(result.models))]
attributes = list(train.labels)

# %% [markdown]
# ## AMI between the stages' clusters
#
# Left, the paper's table (CLIP stages on its training data); right, ours (SimCLR stages on
# Trifeature). The diagonal is 1 by definition.

# %%
ours = pd.DataFrame(ami_matrix(result.cluster_ids), index=stages, columns=stages)
paper_stages = [f"stage {s}" for s in range(len(paper.STAGE_AMI))]
theirs = pd.DataFrame(paper.STAGE_AMI, index=paper_stages, columns=paper_stages)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
sns.heatmap(theirs, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=axes[0]).set_title("paper")
sns.heatmap(ours, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=axes[1]).set_title("this run")
fig.tight_layout()
off_diagonal = ours.values[~np.eye(len(ours), dtype=bool)]
glue("ami_between_max", float(off_diagonal.max()), display=False)
glue("ami_between_mean", float(off_diagonal.mean()), display=False)

# %% [markdown]
# Between different stages our AMI is at most {glue:text}`ami_between_max:.2f` (mean
# {glue:text}`ami_between_mean:.2f`); the paper's off-diagonal values lie between 0.24 and 0.33.
# What each stage's clusters follow, as AMI with the three attributes:

# %%
by_attribute = pd.DataFrame(
    {
        f"stage {s}": {a: ami(ids, train.labels[a]) for a in attributes}
        for s, ids in enumerate(result.cluster_ids)
    }
).T
by_attribute

# %% [markdown]
# ## How the pseudo-label groups split
#
# Each row of the left panel is one stage-0 cluster, each column one stage-1 cluster: the counts show
# that stage 1 cuts across stage 0's clusters instead of repeating them. The right panel shows how many
# samples each stage's pseudo-label groups hold.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
if len(result.cluster_ids) > 1:
    crosstab = pd.crosstab(
        result.cluster_ids[0].numpy(),
        result.cluster_ids[1].numpy(),
        rownames=["stage 0 cluster"],
        colnames=["stage 1 cluster"],
    )
    sns.heatmap(
        crosstab,
        cmap="mako",
        ax=axes[0],
        cbar=False,
        annot=crosstab.shape[1] <= 12,
        fmt="d",
        annot_kws={"fontsize": 6},
    )
sizes = [np.sort(np.bincount(lab.numpy()))[::-1] for lab in result.pseudo_labels if lab is not None]
for s, size in enumerate(sizes, start=1):
    axes[1].plot(np.arange(1, len(size) + 1), size, marker=".", label=f"stage {s}: {len(size)} groups")
axes[1].set(xlabel="group (largest first)", ylabel="samples", yscale="log", title="pseudo-label group sizes")
axes[1].axhline(setup.recipe.batch_size, color="grey", ls="--", lw=1)
axes[1].text(1, setup.recipe.batch_size * 1.1, "one batch", color="grey", fontsize=8)
axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Nearest neighbours under each stage
#
# For a few test images (left column), their three nearest neighbours among the other test images
# under each stage's backbone features. Under stage 0 the neighbours share the anchor's colour; later
# stages bring neighbours that share its shape or texture instead.

# %%
stage_features = [features(m, test, device=device) for m in result.models]
anchors = torch.arange(n_anchors) * (len(test) // max(n_anchors, 1))
names = test.label_names


def label(i: int) -> str:
    return "/".join(names[a][int(test.labels[a][i])][:5] for a in attributes)


fig, axes = plt.subplots(
    n_anchors, len(stage_features), figsize=(3.2 * len(stage_features), 1.2 * n_anchors), squeeze=False
)
same = {stage: {a: [] for a in attributes} for stage in stages}
for s, (stage, feats) in enumerate(zip(stages, stage_features, strict=True)):
    neighbours = nearest_neighbours(feats, anchors, k=3)
    all_neighbours = nearest_neighbours(feats, torch.arange(len(test)), k=3)
    for a in attributes:
        same[stage][a] = float((test.labels[a][all_neighbours] == test.labels[a][:, None]).float().mean())
    for row, (anchor, nbrs) in enumerate(zip(anchors.tolist(), neighbours.tolist(), strict=True)):
        ax = axes[row, s]
        image_grid(test.images[[anchor, *nbrs]], nrow=4, ax=ax)
        ax.set_title(f"{stage}: {label(anchor)} -> " + ", ".join(label(j) for j in nbrs[:1]), fontsize=6)
fig.tight_layout()
neighbour_agreement = pd.DataFrame(same).T
neighbour_agreement

# %% [markdown]
# The table gives, over all test images, the fraction of the three nearest neighbours that share each
# attribute with the anchor (chance is 0.1 for every attribute).
#
# ## Where each stage looks
#
# Occlusion maps (`mcl.evaluate.occlusion_map`): the cosine distance between an image's embedding and
# the embedding of the same image with an 8x8 grey patch over each region. Bright regions are those the
# stage's representation depends on.

# %%
images = test.images[anchors]
heat = [
    occlusion_map(
        m.eval().to("cpu").features,
        images,
        patch=max(2, images.shape[-1] // 4),
        stride=max(1, images.shape[-1] // 8),
    )
    for m in result.models
]
fig, axes = plt.subplots(
    n_anchors, len(heat) + 1, figsize=(1.6 * (len(heat) + 1), 1.6 * n_anchors), squeeze=False
)
for row in range(n_anchors):
    image_grid(images[row : row + 1], nrow=1, ax=axes[row, 0])
    for s, h in enumerate(heat):
        axes[row, s + 1].imshow(h[row], cmap="magma")
        axes[row, s + 1].set_axis_off()
        if row == 0:
            axes[row, s + 1].set_title(stages[s], fontsize=8)
fig.tight_layout()
shape_focus = {stage: float(h.flatten(1).std(1).mean()) for stage, h in zip(stages, heat, strict=True)}

# %%
metrics = {
    "stage_ami": ours.values.tolist(),
    "cluster_ami_by_attribute": by_attribute.to_dict(orient="index"),
    "neighbour_agreement": neighbour_agreement.to_dict(orient="index"),
    "occlusion_spread": shape_focus,
}
save_results(
    "04_what_each_stage_learns",
    metrics,
    scale=scale,
    seed=seed,
    device=device,
    parameters={"data": setup.data, "recipe": asdict(setup.recipe), "n_anchors": n_anchors},
    wall_time_s=time.perf_counter() - started,
)
