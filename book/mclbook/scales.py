"""Presets for the four scales of every unimodal experiment: smoke (CI), workshop (a participant's laptop, a
few minutes per notebook), book (laptop CPU), paper (GPU).

A chapter's parameters cell names a ``scale`` and optional overrides; ``preset(name, scale, ...)``
returns the data set's loader arguments and the :class:`~mcl.simclr.SimCLRRecipe`. The choices
the paper does not state (backbone, epochs, batch size, temperature, K, stages, image sizes) are
made here, once, and documented in the book.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mcl.simclr import SimCLRRecipe

SCALES = ("smoke", "workshop", "book", "paper")


@dataclass(frozen=True)
class Preset:
    """data: keyword arguments of the data set's loaders; recipe: the training recipe; n_seeds:
    seeds for the headline rows (mean and spread); moco_seeds: seeds chapter 1 trains MoCo-v2 at (None: all
    n_seeds); baselines: the baselines chapter 3 trains on this data set ("ifm", "ts", "fd")."""

    data: dict = field(default_factory=dict)
    recipe: SimCLRRecipe = field(default_factory=SimCLRRecipe)
    n_seeds: int = 1
    moco_seeds: int | None = None
    baselines: tuple[str, ...] = ("ifm", "ts", "fd")


# Every scale trains MCL's stages the book's way (see _BOOK below): 4 one-group blocks per batch, each stage
# starting from the previous one. At paper scale this is carried over from the book-scale search, not measured
# (ResNet-18 has BatchNorm too). The authors' procedure is groups_per_batch=1 (one group per global batch, the
# loss unchanged) and, as far as their code shows (it covers only CLIP), every stage restarting from stage 0's
# weights: stage_init="first".
_MCL = {"groups_per_batch": 4, "stage_init": "previous"}
_SMOKE = SimCLRRecipe(width=8, proj_dim=32, epochs=1, batch_size=128, n_stages=2, k=4, **_MCL)
_PAPER = SimCLRRecipe(
    encoder="resnet18",
    proj_dim=128,
    epochs=200,
    batch_size=512,
    lr=1e-3,
    temperature=0.5,
    n_stages=3,
    k=10,
    **_MCL,
)

# Book scale (a 2-core laptop CPU): the small CNN, 5 epochs, batch 64. With K = 10 and the product of the
# stages' cluster ids, stage 2 trains on ~100 pseudo-label groups, so it needs ~10,000 training images for
# most groups to fill a batch of 64 (see chapter 2); the 2-stage presets need only stage 0's 10 groups.
# MCL stages: batches of 4 one-group blocks of 16 (negatives within a block), each stage starting from the
# previous stage's weights. Chosen by book/search_trifeature.py: with one group per batch the small CNN's
# BatchNorm sees one colour per step, and stage 1 read shape worse than SimCLR (chapter 2's table).
_BOOK = SimCLRRecipe(width=32, proj_dim=64, epochs=5, batch_size=64, n_stages=3, k=10, **_MCL)

# Workshop scale (a participant's 2-4 core laptop, no GPU): the book's recipe for 3 epochs on about a third of
# its images, so that each workshop notebook (chapters 1 and 2) runs in a few minutes and still shows the
# chapter's point on Trifeature. Measured by bench/bench_workshop.py (book/data/workshop_timing.json, shown on
# the presets page).
_WORKSHOP = replace(_BOOK, epochs=3)

PRESETS: dict[str, dict[str, Preset]] = {
    "trifeature": {
        "smoke": Preset({"n_train": 1, "n_test": 1, "size": 32}, _SMOKE),
        "workshop": Preset({"n_train": 3, "n_test": 1, "size": 32}, _WORKSHOP),
        # MoCo-v2 at the first seed only: the cold book must fit in 30 minutes on 2 cores
        # (book/search_moco.py measures MoCo-v2 at book scale further)
        "book": Preset({"n_train": 10, "n_test": 2, "size": 32}, _BOOK, n_seeds=3, moco_seeds=1),
        "paper": Preset({"n_train": 50, "n_test": 10, "size": 64}, _PAPER, n_seeds=3),
    },
    # CIFAR-MNIST: the photo (left 32 columns) is augmented, the digit beside it is the same in both views
    # (augment_width=32), and every digit is one of 3 MNIST templates of its class (digits_per_class=3: 30
    # values in all), clustered with K = 30. Augmenting the whole 32x64 image showed no suppression at book
    # scale (chapter 1's first search); with one MNIST image per photo MCL cannot hold the shortcut fixed, and
    # with 3 templates and K = 30 it recovers the photo (chapter 1's second search, 3 seeds). The paper preset
    # carries the book's choice over, unmeasured.
    "cifar_mnist": {
        "smoke": Preset(
            {"n_train": 1000, "n_test": 500, "composition": "side", "digits_per_class": 3},
            replace(_SMOKE, augment_width=32),
        ),
        "workshop": Preset(
            {"n_train": 2000, "n_test": 1000, "composition": "side", "digits_per_class": 3},
            replace(_WORKSHOP, n_stages=2, k=30, augment_width=32),
        ),
        # no baselines at book scale, as on CelebA: the cold book must fit in 30 minutes on 2 cores
        "book": Preset(
            {"n_train": 5000, "n_test": 1000, "composition": "side", "digits_per_class": 3},
            replace(_BOOK, n_stages=2, k=30, augment_width=32),
            baselines=(),
        ),
        "paper": Preset(
            {"n_train": None, "n_test": None, "composition": "side", "digits_per_class": 3},
            replace(_PAPER, k=30, augment_width=32),
        ),
    },
    "celeba": {
        "smoke": Preset({"n_train": 500, "n_test": 300, "size": 32}, _SMOKE),
        "workshop": Preset({"n_train": 2000, "n_test": 1000, "size": 32}, replace(_WORKSHOP, n_stages=2)),
        # no baselines on CelebA at book scale: the cold book must fit in 30 minutes on 2 cores (FD alone
        # costs about three SimCLR runs); SimCLR, MCL and the ensemble still run
        "book": Preset(
            {"n_train": None, "n_test": None, "size": 32}, replace(_BOOK, n_stages=2), baselines=()
        ),
        "paper": Preset({"n_train": None, "n_test": None, "size": 64}, _PAPER),
    },
    "cifar10": {
        "smoke": Preset({"n_train": 1000, "n_test": 500}, _SMOKE),
        "workshop": Preset({"n_train": 3000, "n_test": 1000}, _WORKSHOP),
        "book": Preset({"n_train": 10000, "n_test": 2000}, _BOOK),
        "paper": Preset({"n_train": None, "n_test": None}, replace(_PAPER, epochs=500)),
    },
}


def preset(name: str, scale: str, **recipe_overrides) -> Preset:
    """The preset of data set ``name`` at ``scale``, with non-None recipe overrides applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(PRESETS)}")
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}; choose one of {SCALES}")
    base = PRESETS[name][scale]
    return replace(base, recipe=base.recipe.with_overrides(**recipe_overrides))
