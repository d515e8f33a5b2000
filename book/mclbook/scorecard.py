"""The reproduction scorecard: one row per claim of the paper, its number, ours, and a verdict.

Every claim is measured from the chapters' results files (never typed) by a small function of their
metrics, and judged by explicit thresholds (:data:`THRESHOLDS`, printed beside the table):

* **reproduced**: the measurement meets the claim's threshold;
* **partly**: it points the same way but misses the threshold (or rests on one seed where the claim needs
  several);
* **not reproduced**: it does not point the paper's way;
* **not run at this scale**: the chapter that measures it has no results file at this scale.

The scorecard page shows all claims; each chapter ends with :func:`verdict_box` for its own.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN = (
    "reproduced",
    "partly",
    "not reproduced",
    "not run at this scale",
)

# The thresholds every verdict is computed from (shown beside the table).
THRESHOLDS: dict[str, float] = {
    "suppression": 0.10,  # a feature's probe gain lost to the easy feature (chapter 1's measure)
    "suppression_partly": 0.05,
    "easy_cluster_ami": 0.4,  # stage-0 clusters hold the easy feature...
    "hard_cluster_ami": 0.15,  # ...and not the suppressed one
    "beyond_ensemble": 0.05,  # MCL's concatenation above the equal-budget ensemble (probe accuracy)
    "stage_ami": 0.5,  # stages' clusters agree less than this with each other
    "mmvp_beyond_control": 5.0,  # points of MMVP average, stage 0 + MCL stage 1 over stage 0 + control
    "blind_patterns": 3,  # patterns at or below chance make a CLIP "blind"
}

Metrics = Mapping[str, Mapping[str, Any]]  # chapter name -> its results file's "metrics"
# the search record row that is the CIFAR-MNIST book preset
CIFAR_MNIST_ROW = "3 templates, K=30"


@dataclass(frozen=True)
class Finding:
    """A claim judged: our number as text, and the verdict."""

    ours: str
    verdict: str


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: what it says, the paper's number, the chapter that shows it, the threshold rule
    in words, the function that judges the metrics, and where those come from (``source``: the chapter's
    results file by default, or ``"search:<name>"`` for a committed search record in ``book/data``)."""

    key: str
    statement: str
    paper: str
    chapter: str
    rule: str
    judge: Callable[[Mapping[str, Any]], Finding]
    source: str | None = None

    @property
    def origin(self) -> str:
        return self.source or self.chapter


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pm(values: list[float], digits: int = 3) -> str:
    """Mean ± standard deviation over seeds, and how many; one seed has no spread to show."""
    mean, sd = _mean_sd(values)
    if len(values) == 1:
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {sd:.{digits}f} ({len(values)} seeds)"


def _judge_suppression(data: str, attribute: str) -> Callable[[Mapping[str, Any]], Finding]:
    """Chapter 1 reads suppression two ways, per seed: the control's probe accuracy minus SimCLR's, and the
    control's gain over its untrained network minus SimCLR's gain over its own. Reproduced when both
    readings reach the threshold, partly when one does."""

    def judge(m: Mapping[str, Any]) -> Finding:
        readings = m["suppression"][f"{data}/{attribute}"]
        accuracy, gain = readings["accuracy_gap"], readings["gain_gap"]
        met = [statistics.fmean(v) >= THRESHOLDS["suppression"] for v in (accuracy, gain)]
        near = [statistics.fmean(v) >= THRESHOLDS["suppression_partly"] for v in (accuracy, gain)]
        verdict = REPRODUCED if all(met) else PARTLY if any(near) else NOT_REPRODUCED
        return Finding(f"{attribute}: accuracy gap {_pm(accuracy)}, gain gap {_pm(gain)}", verdict)

    return judge


def _judge_stage0_clusters(m: Mapping[str, Any]) -> Finding:
    ami = m["cluster_ami"]["stage 0"]
    easy, hard = ami["color"], ami["shape"]
    ok = easy >= THRESHOLDS["easy_cluster_ami"] and hard <= THRESHOLDS["hard_cluster_ami"]
    return Finding(f"AMI with colour {easy:.2f}, with shape {hard:.2f}", REPRODUCED if ok else NOT_REPRODUCED)


def _judge_beyond_ensemble(columns: list[str]) -> Callable[[Mapping[str, Any]], Finding]:
    """MCL's concatenation minus the equal-budget ensemble, averaged over ``columns`` per seed, from
    chapter 3's runs. Reproduced when the mean over seeds reaches the threshold on 3 seeds or more."""

    def judge(m: Mapping[str, Any]) -> Finding:
        acc: dict[tuple[str, str, int], float] = {
            (r["method"], r["column"], r["seed"]): r["accuracy"] for r in m["runs"] if r["column"] in columns
        }
        seeds = sorted({s for (method, _, s) in acc if method == "MCL"})
        gaps = [
            statistics.fmean(acc["MCL", c, s] - acc["SimCLR ensemble", c, s] for c in columns)
            for s in seeds
            if all(("SimCLR ensemble", c, s) in acc for c in columns)
        ]
        if not gaps:
            return Finding("not measured", NOT_RUN)
        return Finding(f"MCL − ensemble {_pm(gaps)}", _beyond_verdict(gaps))

    return judge


def _beyond_verdict(gaps: list[float]) -> str:
    mean = statistics.fmean(gaps)
    if mean >= THRESHOLDS["beyond_ensemble"]:
        return REPRODUCED if len(gaps) >= 3 else PARTLY
    return PARTLY if mean > 0 else NOT_REPRODUCED


def _judge_search_record(
    record: str, row: str, key: str, label: str
) -> Callable[[Mapping[str, Any]], Finding]:
    """A row of a committed search record (``book/data/<record>.json``, measured by its script with the
    book preset's recipe at several seeds): the per-seed values of ``key``."""

    def judge(m: Mapping[str, Any]) -> Finding:
        seeds = m["candidates"][row]
        values = [seeds[s][key] for s in sorted(seeds)]
        return Finding(f"{label} {_pm(values)} (search record)", _beyond_verdict(values))

    return judge


def _judge_stage_ami(m: Mapping[str, Any]) -> Finding:
    matrix = m["stage_ami"]
    off = [matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix)) if i < j]
    top = max(off)
    verdict = REPRODUCED if top < THRESHOLDS["stage_ami"] else NOT_REPRODUCED
    return Finding(f"between stages {', '.join(f'{v:.2f}' for v in off)}", verdict)


def _judge_linear_eval(m: Mapping[str, Any]) -> Finding:
    acc = m["accuracy"]
    mcl = [v for k, v in acc.items() if k.startswith("MCL")]
    ens = [v for k, v in acc.items() if k.startswith("SimCLR ensemble")]
    grows = all(b > a for a, b in zip(mcl, mcl[1:], strict=False))
    beyond = all(a >= b for a, b in zip(mcl, ens, strict=False))
    text = f"MCL {' → '.join(f'{v:.3f}' for v in mcl)}; ensembles {' → '.join(f'{v:.3f}' for v in ens)}"
    return Finding(text, REPRODUCED if grows and beyond else PARTLY if grows else NOT_REPRODUCED)


def _judge_blind_pairs(m: Mapping[str, Any]) -> Finding:
    blind = m["patterns_at_or_below_chance"]
    average = 100 * m["mmvp"]["stage 0"]["average"]
    verdict = REPRODUCED if len(blind) >= THRESHOLDS["blind_patterns"] else NOT_REPRODUCED
    return Finding(f"stage 0 {average:.1f} %, {len(blind)} of 9 patterns at or below chance", verdict)


# the search record row that is the CLIP book preset
CLIP_ROW = "book preset"


def _judge_mmvp_gain(m: Mapping[str, Any]) -> Finding:
    """The CLIP book preset's row of ``book/data/clip_search.json``: per seed, the paired gain of stage 0 +
    MCL stage 1 over stage 0 + the random-batch control (points of MMVP average, held-out benchmark), and
    the bootstrap intervals of the two seed-averaged averages. Reproduced when the mean gain reaches the
    threshold on 3 seeds or more with the intervals apart; partly when it is positive."""
    summary = m["candidates"][CLIP_ROW]["summary"]
    diffs = [summary["gain_per_seed"][s] for s in sorted(summary["gain_per_seed"], key=int)]
    mean = statistics.fmean(diffs)
    separated = not summary["intervals_overlap"]
    if mean >= THRESHOLDS["mmvp_beyond_control"] and separated and len(diffs) >= 3:
        verdict = REPRODUCED
    elif mean > 0:
        verdict = PARTLY
    else:
        verdict = NOT_REPRODUCED
    mcl, control = summary["stage 0 + stage 1"], summary["stage 0 + control"]

    def cell(v: Mapping[str, Any]) -> str:
        return f"{v['average']:.1f} % [{v['interval'][0]:.1f}, {v['interval'][1]:.1f}]"

    return Finding(
        f"(stage 0 + MCL stage 1) − (stage 0 + control) {_pm(diffs, 1)} points; seed-averaged "
        f"{cell(mcl)} against {cell(control)} (search record)",
        verdict,
    )


def _judge_soup(m: Mapping[str, Any]) -> Finding:
    parts, wins = [], []
    for name, table in m["retrieval"].items():
        soup, base = table["soup"], table["stage 0"]
        mean_soup = statistics.fmean(soup.values())
        mean_base = statistics.fmean(base.values())
        parts.append(f"{name}: soup {100 * mean_soup:.1f} vs stage 0 {100 * mean_base:.1f}")
        wins.append(mean_soup > mean_base)
    verdict = REPRODUCED if wins and all(wins) else PARTLY if any(wins) else NOT_REPRODUCED
    return Finding("; ".join(parts) + " (mean recall@1/5/10, %)", verdict)


CLAIMS: list[Claim] = [
    Claim(
        "suppression-trifeature",
        "SimCLR suppresses Trifeature's shape and texture",
        "SimCLR reads shape at 0.44, texture 0.92, colour 1.00",
        "01_feature_suppression",
        f"suppression (the one-colour control's probe gain minus SimCLR's) >= {THRESHOLDS['suppression']}",
        _judge_suppression("trifeature", "shape"),
    ),
    Claim(
        "suppression-cifar-mnist",
        "SimCLR suppresses CIFAR-MNIST's photo",
        "SimCLR reads the photo at 0.10, the digit at 0.99",
        "01_feature_suppression",
        f"suppression (the CIFAR-only control's probe gain minus SimCLR's) >= {THRESHOLDS['suppression']}",
        _judge_suppression("cifar_mnist", "cifar"),
    ),
    Claim(
        "stage0-clusters-easy-feature",
        "Stage 0's clusters group by the easy feature",
        "stage-0 groups follow the easiest feature (focus shifting figure)",
        "02_mcl_step_by_step",
        f"AMI(stage-0 clusters, colour) >= {THRESHOLDS['easy_cluster_ami']} and "
        f"AMI(…, shape) <= {THRESHOLDS['hard_cluster_ami']}",
        _judge_stage0_clusters,
    ),
    Claim(
        "beyond-ensemble-trifeature",
        "MCL recovers Trifeature's shape beyond an equal-budget ensemble",
        "shape 1.00 with MCL, 0.81 with SimCLR",
        "03_baselines",
        f"mean over seeds of MCL − ensemble >= {THRESHOLDS['beyond_ensemble']}, on 3 seeds",
        _judge_beyond_ensemble(["trifeature/shape"]),
    ),
    Claim(
        "beyond-ensemble-cifar-mnist",
        "MCL recovers CIFAR-MNIST's photo beyond an equal-budget ensemble",
        "photo 0.87 with MCL, 0.29 with SimCLR",
        "03_baselines",
        f"mean over seeds of MCL − ensemble on the photo >= {THRESHOLDS['beyond_ensemble']}, on 3 seeds "
        "(the book preset's row of book/data/cifar_mnist_cure_search.json; chapter 3 runs one seed)",
        _judge_search_record("cifar_mnist_cure_search", CIFAR_MNIST_ROW, "concat_gain", "MCL − ensemble"),
        source="search:cifar_mnist_cure_search",
    ),
    Claim(
        "beyond-ensemble-celeba",
        "MCL improves CelebA's attributes beyond an equal-budget ensemble",
        "hair 0.85, smiling 0.79, gender 0.95 with MCL (SimCLR 0.84, 0.75, 0.94)",
        "03_baselines",
        f"mean over hair, smiling and gender of MCL − ensemble >= {THRESHOLDS['beyond_ensemble']}, "
        "on 3 seeds",
        _judge_beyond_ensemble(["celeba/hair", "celeba/smiling", "celeba/gender"]),
    ),
    Claim(
        "stages-differ",
        "Each stage groups the data by something new",
        "AMI between stages' clusters 0.33, 0.25, 0.24",
        "04_what_each_stage_learns",
        f"every AMI between two stages' clusters < {THRESHOLDS['stage_ami']}",
        _judge_stage_ami,
    ),
    Claim(
        "linear-eval-grows",
        "Linear evaluation grows with the stages concatenated",
        "ImageNet: 0.456 → 0.477 → 0.482",
        "05_linear_eval_by_stage",
        "MCL's concatenations grow with the stages and are >= the equal-size SimCLR ensembles",
        _judge_linear_eval,
    ),
    Claim(
        "clip-blind-pairs",
        "A CLIP misses most of MMVP's visual patterns",
        "OpenAI CLIP: 20.0 % average, 6.7 % on three patterns",
        "06_clip_blind_pairs",
        f">= {THRESHOLDS['blind_patterns']} patterns at or below chance (25 %)",
        _judge_blind_pairs,
    ),
    Claim(
        "mcl-clip-mmvp",
        "MCL-tuned CLIP scores higher on MMVP, beyond ensembling",
        "ViT: 20.0 % (stage 0) → 32.6 % (MCL)",
        "07_mcl_clip",
        "(stage 0 + MCL stage 1) − (stage 0 + random-batch control) >= "
        f"{THRESHOLDS['mmvp_beyond_control']:.0f} points on 3 seeds, 95 % intervals apart (the book preset's "
        "row of book/data/clip_search.json, a held-out benchmark of 300 pairs per pattern; chapter 7 runs "
        "one seed)",
        _judge_mmvp_gain,
        source="search:clip_search",
    ),
    Claim(
        "soup-retrieval",
        "A model soup of the MCL stages retrieves better than stage 0",
        "COCO image→text R@1 56.1 → 60.4",
        "08_soup_and_retrieval",
        "soup's mean recall above stage 0's on every retrieval set",
        _judge_soup,
    ),
]


def judge(claim: Claim, metrics: Metrics) -> Finding:
    """The claim's finding from the chapters' metrics (not run when its source has none)."""
    if claim.origin not in metrics:
        return Finding("—", NOT_RUN)
    try:
        return claim.judge(metrics[claim.origin])
    except (KeyError, IndexError, statistics.StatisticsError, TypeError) as err:
        return Finding(f"not measured ({type(err).__name__}: {err})", NOT_RUN)


def table(metrics: Metrics, chapter: str | None = None):
    """A pandas DataFrame, one row per claim (of ``chapter`` when given): claim, paper, this run,
    verdict, rule."""
    import pandas as pd

    rows = []
    for claim in CLAIMS:
        if chapter is not None and claim.chapter != chapter:
            continue
        finding = judge(claim, metrics)
        rows.append(
            {
                "claim": claim.statement,
                "paper": claim.paper,
                "this run": finding.ours,
                "verdict": finding.verdict,
                "threshold": claim.rule,
                "chapter": claim.chapter,
            }
        )
    return pd.DataFrame(rows)


def counts(metrics: Metrics) -> dict[str, int]:
    """How many claims got each verdict."""
    out = {v: 0 for v in (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN)}
    for claim in CLAIMS:
        out[judge(claim, metrics).verdict] += 1
    return out


def verdict_box(chapter: str, metrics: Mapping[str, Any]):
    """The verdicts of ``chapter``'s claims as Markdown (plain CommonMark, so Jupyter and the book render
    it alike), for the end of the chapter (``metrics``: what the chapter saves to its results file)."""
    from IPython.display import Markdown

    sources = {chapter: metrics} | {
        name: value for name, value in _search_records().items() if name.startswith("search:")
    }
    lines = ["**Verdicts of this chapter** (every chapter's are on the scorecard page):", ""]
    for claim in CLAIMS:
        if claim.chapter == chapter:
            finding = judge(claim, sources)
            lines.append(
                f"- {claim.statement}: **{finding.verdict}**. Paper: {claim.paper}. This run: "
                f"{finding.ours}. Threshold: {claim.rule}."
            )
    return Markdown("\n".join(lines))


def _search_records() -> dict[str, Mapping[str, Any]]:
    """The committed search records the claims use, as ``search:<name>``."""
    from mclbook.results import search_record

    names = {c.origin.removeprefix("search:") for c in CLAIMS if c.origin.startswith("search:")}
    return {f"search:{name}": search_record(name) for name in sorted(names)}


def load_metrics(scale: str, directory=None) -> dict[str, Mapping[str, Any]]:
    """Every chapter's metrics at ``scale`` (from :func:`mclbook.results.results_dir`, or ``directory``)
    and the search records the claims use (as ``search:<name>``)."""
    import json

    from mclbook.results import results_dir

    folder = directory or results_dir(scale)
    metrics: dict[str, Mapping[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        metrics[path.stem] = json.loads(path.read_text())["metrics"]
    return metrics | _search_records()
