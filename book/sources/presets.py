# %% [markdown]
# # Scales and presets
#
# Every unimodal chapter takes its data sizes and training recipe from `mcl.scales`: one preset per
# data set and scale. The table below is generated from the code, so it is what the chapters ran with
# (a chapter's `parameters` cell can override any recipe field).
#
# - `smoke`: CI on 2 CPU cores; seconds per chapter; numbers are not meaningful, only the plumbing.
# - `book`: a laptop CPU; the small CNN (`SmallCNN`: four stride-2 conv-BN-ReLU blocks) on a few
#   thousand images at 32 px; the default of `make book`.
# - `paper`: one GPU; the CIFAR-style ResNet-18 (3x3 stem, no max-pool), full data sets, long training.
#   Run it with `make book SCALE=paper` (all chapters) or one chapter with
#   `papermill book/<chapter>.ipynb out.ipynb -p scale paper -p device cuda`; several GPUs through
#   `torchrun` are covered in `mcl/distributed.py`.

# %% tags=["parameters"]
scale: str = "book"
device: str = "auto"

# %%
from dataclasses import asdict

import pandas as pd

from mcl.scales import PRESETS

rows = []
for name, by_scale in PRESETS.items():
    for level, setup in by_scale.items():
        recipe = asdict(setup.recipe)
        rows.append(
            {
                "data set": name,
                "scale": level,
                **{f"data: {k}": v for k, v in setup.data.items()},
                "seeds": setup.n_seeds,
                **recipe,
            }
        )
table = pd.DataFrame(rows).set_index(["data set", "scale"])
table.T.fillna("")
