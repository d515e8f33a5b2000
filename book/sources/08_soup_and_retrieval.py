# %% [markdown]
# # A model soup of the stages, and retrieval
#
# Concatenating the stages' features (the previous chapter, {doc}`07_mcl_clip`) multiplies the
# size of the representation and the cost of using it. Every MCL stage of the CLIP recipe starts
# from the same stage-0 weights, so the stages can also be *averaged* into one model of the
# original size, a "model soup" (Wortsman et al., ICML 2022). The paper reports that the uniform soup
# of its MCL-tuned CLIP stages retrieves better than OpenAI's CLIP on COCO and Flickr30k (table
# below): the stages' extra features survive the averaging at least in part.
#
# This chapter makes the soup (`mcl.clip_eval.model_soup`), scores image-to-text and text-to-image
# retrieval (recall@1, 5 and 10: the share of queries whose match is among the top k) for stage 0,
# every stage and the soup, and measures the soup on the blind pairs as well.
#
# ```{admonition} What runs here
# :class: note
# At `book` and `smoke` scale the stages are the small CLIPs trained from scratch on generated
# scenes in the previous two chapters (loaded from their cache). Retrieval is measured on held-out
# generated scenes (their captions name all nine properties, so retrieving the right one needs every
# detail) and on the 79 COCO val2017 images with their 395 captions of the offline mirror, when it
# is there. A model that has only ever seen generated scenes can only guess on COCO photographs
# (recall@k near k / 79 by chance): the COCO rows show that the same code runs on real data, and are
# not to be compared with the paper's. At `scale="paper"` the soup of OpenAI-initialised
# stages is scored on COCO val2017 (5,000 images) and the Flickr30k test set (1,000).
# ```

# %% tags=["parameters"]
scale: str = "book"  # smoke | book | paper
device: str = "auto"  # auto | cpu | cuda
seed: int = 0  # the seed of the stages to load (as in the previous chapters)
soup: str = None  # "all" (stages 0..n-1) or "mcl" (stages 1..n-1) averaged; None: the preset's ("all")
n_retrieval: int = None  # held-out generated scenes for retrieval; None: the preset's
cpu_threads: int = None  # torch CPU threads; None: the preset's

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import display
from myst_nb import glue

from mcl import clip_experiments as ce
from mcl.device import resolve_device
from mcl.paper import RETRIEVAL, RETRIEVAL_COLUMNS
from mcl.results import save_results

start = time.perf_counter()
preset = ce.clip_preset(scale, soup=soup, n_retrieval=n_retrieval, cpu_threads=cpu_threads)
device = str(resolve_device(device))
ce.configure_threads(preset, device)
cache = ce.clip_cache_dir(scale)
data = ce.load_training_data(preset, cache)
pairs = ce.load_mmvp(preset, cache)
stage0, _ = ce.train_stage0(preset, data, device=device, seed=seed, cache=cache)
result = ce.run_mcl(preset, stage0, data, device=device, seed=seed, cache=cache)
souped = ce.soup_of(preset, result.models)
averaged = "stages 0.." if preset.soup == "all" else "stages 1.."
print(f"soup: uniform average of {averaged}{preset.n_stages - 1} ({preset.soup!r})")

# %% [markdown]
# ## Retrieval

# %%
sets, missing = ce.retrieval_sets(preset, ce.model_image_size(stage0), seed=preset.data_seed, cache=cache)
for name, reason in missing.items():
    print(f"{name}: not available here ({reason})")
models = {f"stage {s}": m for s, m in enumerate(result.models)} | {"soup": souped}
recall = ce.retrieval_table(models, sets, device=device)
for name, (images, captions) in sets.items():
    print(f"{name}: {len(images)} images, {sum(len(c) for c in captions)} captions")

# %% [markdown]
# The paper's COCO columns beside ours (%; the paper's "OpenAI CLIP" is its stage 0 and its
# "MCL model soup" the soup; the paper's three Flickr30k values have garbled labels on the poster
# and are left out):

# %%
coco_columns = [c for c in RETRIEVAL_COLUMNS if c.startswith("coco/")]
rows = {f"paper: {name}": {c: values[c] for c in coco_columns} for name, values in RETRIEVAL.items()}
for set_name, by_model in recall.items():
    for model_name in ("stage 0", "soup"):
        values = by_model[model_name]
        rows[f"this run ({set_name}): {model_name}"] = {
            f"coco/{key}": 100 * values[key]
            for key in ("i2t@1", "i2t@5", "i2t@10", "t2i@1", "t2i@5", "t2i@10")
        }
table = pd.DataFrame.from_dict(rows, orient="index")[coco_columns].round(1)
table.columns = [c.removeprefix("coco/") for c in coco_columns]
display(table)

# %%
long = pd.DataFrame(
    [
        {"set": set_name, "model": model_name, "metric": key, "recall (%)": 100 * value}
        for set_name, by_model in recall.items()
        for model_name, values in by_model.items()
        for key, value in values.items()
    ]
)
grid = sns.catplot(
    long, x="metric", y="recall (%)", hue="model", col="set", kind="bar", height=3.2, aspect=1.5, sharey=False
)
grid.figure.suptitle("retrieval recall@k per model", y=1.03)
plt.show()

# %% [markdown]
# ## The soup on the blind pairs

# %%
scores = ce.mmvp_stage_scores(result.models, pairs, device=device, cumulative=False)
scores["soup"] = ce.mmvp_stage_scores([souped], pairs, device=device)["stage 0"]
display(ce.mmvp_table({name: scores[name] for name in ("stage 0", "MCL", "soup") if name in scores}))

# %%
scenes = recall.get("scenes", {})
nan = float("nan")
glue("clip08_scenes_stage0_t2i1", 100 * scenes.get("stage 0", {}).get("t2i@1", nan), display=False)
glue("clip08_scenes_soup_t2i1", 100 * scenes.get("soup", {}).get("t2i@1", nan), display=False)
glue("clip08_scenes_stage0_i2t1", 100 * scenes.get("stage 0", {}).get("i2t@1", nan), display=False)
glue("clip08_scenes_soup_i2t1", 100 * scenes.get("soup", {}).get("i2t@1", nan), display=False)
best_stage = max(
    (100 * scenes[f"stage {s}"]["t2i@1"] for s in range(len(result.models))) if scenes else [nan]
)
glue("clip08_scenes_best_stage_t2i1", best_stage, display=False)
glue("clip08_n_scenes", len(sets["scenes"][0]) if "scenes" in sets else 0, display=False)
glue("clip08_paper_clip_t2i1", RETRIEVAL["OpenAI CLIP"]["coco/t2i@1"], display=False)
glue("clip08_paper_soup_t2i1", RETRIEVAL["MCL model soup"]["coco/t2i@1"], display=False)
glue("clip08_n_extra", len(result.models) - 1, display=False)
glue("clip08_mmvp_stage0", scores["stage 0"].average, display=False)
glue("clip08_mmvp_soup", scores["soup"].average, display=False)
glue("clip08_mmvp_mcl", scores["MCL"].average if "MCL" in scores else nan, display=False)

# %% [markdown]
# On the {glue:text}`clip08_n_scenes:d` held-out scenes, text-to-image recall@1 is
# {glue:text}`clip08_scenes_stage0_t2i1:.1f` % for stage 0 and
# {glue:text}`clip08_scenes_soup_t2i1:.1f` % for the soup (the best single stage:
# {glue:text}`clip08_scenes_best_stage_t2i1:.1f` %); image-to-text recall@1 is
# {glue:text}`clip08_scenes_stage0_i2t1:.1f` % against {glue:text}`clip08_scenes_soup_i2t1:.1f` %.
# The paper's COCO text-to-image recall@1 goes from {glue:text}`clip08_paper_clip_t2i1:.1f` %
# (OpenAI CLIP) to {glue:text}`clip08_paper_soup_t2i1:.1f` % (the soup). On the blind pairs the soup
# gets {glue:text}`clip08_mmvp_soup:.1f` %, against {glue:text}`clip08_mmvp_stage0:.1f` % for stage 0
# and {glue:text}`clip08_mmvp_mcl:.1f` % for the concatenation of all stages, which costs
# {glue:text}`clip08_n_extra:d` more image encoders at inference.
#
# Averaging weights works here because every stage is a fine-tuning of the same stage 0: the
# stages stay in one basin of the loss, where the average of their weights is itself a good model.
# Stages trained from different initialisations (as in the unimodal chapters) could not be souped.

# %%
save_results(
    name="08_soup_and_retrieval",
    metrics={
        "retrieval": recall,
        "missing": missing,
        "mmvp": {name: ce.mmvp_metrics(r) for name, r in scores.items()},
        "soup_of": preset.soup,
        "retrieval_sizes": {
            name: [len(images), sum(len(c) for c in caps)] for name, (images, caps) in sets.items()
        },
    },
    scale=scale,
    seed=seed,
    parameters=preset.parameters(),
    device=device,
    wall_time_s=time.perf_counter() - start,
)
