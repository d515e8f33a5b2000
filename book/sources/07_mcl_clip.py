# %% [markdown]
# # MCL for CLIP
#
# The previous chapter ({doc}`06_clip_blind_pairs`) left a stage-0 CLIP that is blind to some of
# MMVP's visual patterns. MCL's answer: cluster the training images by stage 0's image embeddings
# (k-means, K clusters), and train the next stage on batches drawn from one cluster at a time
# (the **feature-aware sampler**). Within such a batch whatever stage 0 learned is nearly
# constant, so it no longer tells the negatives apart, and the loss can only fall by learning
# something else. Stage 2 uses the clusters of stages 0 *and* 1 (their Cartesian product), and so
# on. Every stage starts again from stage 0's weights; the earlier stages serve only to make the
# pseudo-labels. The final representation concatenates the features of all stages.
#
# The paper fine-tunes OpenAI's CLIP (ResNet-50 and ViT-B/32) this way on CC12M for 20 epochs per
# stage, with K = 10, the text tower locked and only the last image blocks trained, and reports the
# MMVP scores of each stage and of the concatenation (the table below).
#
# ```{admonition} What runs here
# :class: note
# At `book` and `smoke` scale, stage 0 is the small CLIP trained from scratch in the previous
# chapter, and the MCL stages are trained on the same generated captioned scenes and scored on the
# generated MMVP-layout benchmark (no pretrained weights, CC12M or MMVP images offline). Two choices
# differ from the paper's, both parameters below: K is small (the training set has 4,000 scenes,
# and the product of K = 10 clusters over three stages would leave groups smaller than a batch),
# and both towers train in every stage. The paper locks OpenAI's text tower, which already
# encodes every detail of a caption; ours was trained from scratch on the same scenes, so it
# suppresses the same details as the image tower, and with it locked the MCL stages barely moved
# away from stage 0 in our trials (`lock_text=True, unlocked_groups=3` reproduces that). At
# `scale="paper"` the recipe is the authors'.
# ```

# %% tags=["parameters"]
scale: str = "book"  # smoke | book | paper
device: str = "auto"  # auto | cpu | cuda
seed: int = 0  # initialisation, batch order and k-means seeds
n_stages: int = None  # stages including stage 0; None: the preset's (4, as the paper)
k: int = None  # k-means clusters per stage; None: the preset's (4 at book scale, 10 at paper scale)
epochs: int = None  # epochs per MCL stage; None: the preset's
batch_size: int = None  # batch size (one pseudo-label group per batch); None: the preset's
lr: float = None  # learning rate of the MCL stages; None: the preset's
combine: str = None  # "product" (paper text) or "latest" (authors' script); None: the preset's
small_groups: str = None  # "drop" or "merge" groups' leftovers (< a batch); None: the preset's
lock_text: bool = None  # freeze the text tower in the MCL stages; None: the preset's
unlocked_groups: int = None  # image groups trained; None: the preset's (all at book scale)
control: bool = True  # also fine-tune stage 0 with random batches, as long as one MCL stage (what MCL adds)
cpu_threads: int = None  # torch CPU threads; None: the preset's

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display
from myst_nb import glue

from mcl import clip_experiments as ce
from mcl.clip_eval import evaluate_mmvp
from mcl.cluster import ami_matrix
from mcl.data.mmvp import PATTERNS
from mcl.data.show import image_grid
from mcl.device import resolve_device
from mcl.paper import MCL_CLIP_MMVP
from mcl.results import save_results

start = time.perf_counter()
overrides = dict(
    n_stages=n_stages,
    k=k,
    epochs=epochs,
    batch_size=batch_size,
    lr=lr,
    combine=combine,
    small_groups=small_groups,
    lock_text=lock_text,
    cpu_threads=cpu_threads,
)
preset = ce.clip_preset(scale, **overrides)
if unlocked_groups is not None:
    preset = ce.clip_preset(scale, **overrides, unlocked_groups=unlocked_groups)
device = str(resolve_device(device))
ce.configure_threads(preset, device)
cache = ce.clip_cache_dir(scale)
data = ce.load_training_data(preset, cache)
pairs = ce.load_mmvp(preset, cache)
print(f"training data: {data.source}; {preset.n_stages} stages, K = {preset.k}, {preset.epochs} epochs each")

# %% [markdown]
# ## Training the stages
#
# Stage 0 comes from the cache of the previous chapter (it is trained here if that chapter has not
# run); {glue:text}`clip07_n_mcl_stages:d` MCL stages follow (`mcl.clip.mcl_clip`).

# %%
stage0, _ = ce.train_stage0(preset, data, device=device, seed=seed, cache=cache)
result = ce.run_mcl(preset, stage0, data, device=device, seed=seed, cache=cache)
glue("clip07_n_mcl_stages", preset.n_stages - 1, display=False)

sampler_rows = []
for s, sampler in enumerate(result.samplers[1:], start=1):
    sampler_rows.append(
        {
            "stage": s,
            "pseudo-label groups": sampler.n_groups,
            "groups with a full batch": sampler.n_trained_groups,
            "homogeneous batches / epoch": sampler.n_homogeneous_batches,
            "mixed batches / epoch": sampler.n_mixed_batches,
            "samples dropped / epoch": sampler.n_dropped,
        }
    )
display(pd.DataFrame(sampler_rows).set_index("stage"))

fig, ax = plt.subplots(figsize=(5, 3))
for s, history in enumerate(result.histories):
    if history is not None:
        ax.plot(range(1, len(history.losses) + 1), history.losses, marker="o", label=f"stage {s}")
ax.set(xlabel="epoch", ylabel="CLIP loss within feature-aware batches", title="MCL stages")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The loss of a stage is measured on its own feature-aware batches, whose negatives are hard (they
# share what the earlier stages learned): it starts high and falls as the stage learns what tells
# them apart. The more stages, the finer the pseudo-labels and the harder the batches.
#
# ## What the pseudo-labels group by
#
# The largest groups of stage 0's clusters, eight random members each (one row per group):

# %%
groups = ce.group_examples(result.cluster_ids[0], n_groups=min(4, preset.k), per_group=8, seed=seed)
fig, axes = plt.subplots(len(groups), 1, figsize=(9, 1.3 * len(groups)))
for row, (ax, members) in enumerate(zip(np.atleast_1d(axes), groups, strict=True)):
    image_grid(data.images[members], nrow=8, ax=ax)
    size = int((result.cluster_ids[0] == result.cluster_ids[0][members[0]]).sum())
    ax.set_title(f"stage-0 cluster, group {row + 1} ({size} images)", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The generated scenes carry their true properties, so the grouping can be measured: the adjusted
# mutual information (AMI) between each stage's clusters and each property of the scenes (0: the
# clusters ignore it, 1: they are exactly it). A stage whose clusters follow a property has learned
# it strongly; MCL then makes that property constant within the next stage's batches.

# %%
if data.properties is not None:
    prop_ami = ce.property_ami(result.cluster_ids, data.properties)
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(prop_ami) + 1.2))
    vmax = max(0.3, float(prop_ami.values.max()))
    sns.heatmap(prop_ami, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=vmax, ax=ax)
    ax.set_title("AMI between each stage's k-means clusters and each scene property")
    plt.show()
    top = {stage: row.idxmax() for stage, row in prop_ami.iterrows()}
    print("the property each stage's clusters follow most:", top)
else:
    prop_ami = None

stage_ami = ami_matrix([ids.numpy() for ids in result.cluster_ids])
names = [f"stage {s}" for s in range(len(stage_ami))]
display(pd.DataFrame(stage_ami, index=names, columns=names).round(2))
off_diagonal = stage_ami[~np.eye(len(stage_ami), dtype=bool)]
glue(
    "clip07_stage_ami_mean", float(off_diagonal.mean()) if off_diagonal.size else float("nan"), display=False
)

# %% [markdown]
# The table above is the AMI between the clusters of different stages (the paper reports 0.24 to
# 0.33 between its stages, low: each stage groups the data by something new); here the mean
# between different stages is {glue:text}`clip07_stage_ami_mean:.2f`.
#
# ## The blind pairs again
#
# Each stage alone, the concatenations of stages 0..s, and "MCL" (all stages concatenated, the
# paper's MCL row), beside the paper's ViT rows. The control row is stage 0 fine-tuned exactly
# like one MCL stage but on random batches: the part of a stage's gain that comes from simply
# training longer.

# %%
scores = ce.mmvp_stage_scores(result.models, pairs, device=device)
if control:
    control_model, _ = ce.train_control(preset, stage0, data, device=device, seed=seed, cache=cache)
    for name, models in (
        ("control (random batches)", control_model),
        ("stage 0 + control", [stage0, control_model]),
    ):
        scores[name] = evaluate_mmvp(models, pairs, device=device, pattern_order=PATTERNS)
paper_rows = {name: row for name, row in MCL_CLIP_MMVP.items() if name.startswith("ViT")}
table = ce.mmvp_table(scores, paper_rows)
display(table)

# %%
shown = {name: r for name, r in scores.items() if name.startswith("stage ") or name == "MCL"}
shown = {name: r for name, r in shown.items() if "-" not in name and "+" not in name}
fig, ax = plt.subplots(figsize=(10, 3.8))
sns.barplot(ce.per_pattern_frame(shown), x="pattern", y="accuracy (%)", hue="model", ax=ax)
ax.axhline(ce.chance_level(), color="grey", ls="--", lw=1)
ax.set_ylim(0, 100)
ax.set_title("MMVP-layout benchmark, per pattern (dashed: chance)")
ax.legend(fontsize=8, ncol=len(shown))
plt.show()

# %%
s0 = ce.abbreviate(scores["stage 0"].per_pattern)
mcl_row = ce.abbreviate(scores["MCL"].per_pattern)
best_single = max((scores[f"stage {s}"].average for s in range(1, preset.n_stages)), default=float("nan"))
glue("clip07_stage0_average", scores["stage 0"].average, display=False)
glue("clip07_mcl_average", scores["MCL"].average, display=False)
glue("clip07_best_stage_average", best_single, display=False)
glue("clip07_n_improved", sum(mcl_row[p] > s0[p] for p in s0), display=False)
glue("clip07_n_worse", sum(mcl_row[p] < s0[p] for p in s0), display=False)
glue("clip07_paper_stage0", MCL_CLIP_MMVP["ViT stage 0"]["average"], display=False)
glue("clip07_paper_mcl", MCL_CLIP_MMVP["ViT MCL"]["average"], display=False)
control_average = scores["stage 0 + control"].average if control else float("nan")
glue("clip07_control_average", control_average, display=False)
glue("clip07_two_stage_average", scores.get("stages 0-1", scores["MCL"]).average, display=False)

# %% [markdown]
# On average over the nine patterns, stage 0 gets {glue:text}`clip07_stage0_average:.1f` % of
# the pairs right, the best single MCL stage {glue:text}`clip07_best_stage_average:.1f` %, and the
# concatenation of all stages {glue:text}`clip07_mcl_average:.1f` % (the paper, on the real
# benchmark with OpenAI's ViT-B/32: {glue:text}`clip07_paper_stage0:.1f` % and
# {glue:text}`clip07_paper_mcl:.1f` %). The concatenation beats stage 0 on
# {glue:text}`clip07_n_improved:d` patterns and falls behind it on {glue:text}`clip07_n_worse:d`.
# Is that MCL, or merely more training and a second model? The control answers for one stage:
# stage 0 concatenated with a copy fine-tuned on random batches gets
# {glue:text}`clip07_control_average:.1f` %, against {glue:text}`clip07_two_stage_average:.1f` % for
# stage 0 concatenated with MCL stage 1 (the same number of models and of training steps; NaN when
# the control is switched off). With a generated benchmark of a few dozen pairs per pattern, one pair
# is several
# points of a pattern's score: read differences of one or two pairs as noise.

# %%
metrics = {
    "mmvp": {name: ce.mmvp_metrics(r) for name, r in scores.items()},
    "stage_ami": stage_ami.tolist(),
    "property_ami": prop_ami.to_dict(orient="index") if prop_ami is not None else None,
    "sampler": sampler_rows,
    "losses": {f"stage {s}": h.losses for s, h in enumerate(result.histories) if h is not None},
    "n_stages": preset.n_stages,
    "k": preset.k,
}
save_results(
    name="07_mcl_clip",
    metrics=metrics,
    scale=scale,
    seed=seed,
    parameters={**preset.parameters(), "control": control},
    device=device,
    wall_time_s=time.perf_counter() - start,
)
