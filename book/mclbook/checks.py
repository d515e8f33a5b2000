"""Checks that teach: after every workshop exercise, a check cell calls one of these with the participant's
function, for example ``check_nt_xent(my_nt_xent)``.

Each check runs the function on a few random inputs and edge cases, compares it with the library's
reference (:mod:`mcl`) and prints **one line**:

* ``right: ...`` when every case agrees (for the exercises about this run's data, followed by what the
  participant's function says about it);
* ``not written yet: ...`` when the function still raises the student notebook's stub
  (``NotImplementedError``), with the stub's message (what to write);
* ``not yet right: ...`` naming the first case that disagrees, what the function returned and what the
  reference returns, and a targeted hint when the answer matches a known mistake.

Known mistakes are written out as small wrong implementations (:attr:`Check.mistakes`): when the
participant's function gives the same answer as one of them on the failing case, that mistake's hint is
printed. The same catalogue is what the tests feed each check on purpose. A check never lets a traceback
through: whatever the participant's function raises is reported in the line.

``check(fn)`` prints and returns None (so a notebook shows the line only); ``check.verdict(fn)`` returns
the :class:`Verdict` (for tests).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torch import Tensor

from mcl.cluster import ami
from mcl.losses import nt_xent
from mcl.sampling import FeatureAwareBatchSampler, combine_labels


@dataclass(frozen=True)
class Verdict:
    """ok: True (right), False (wrong), None (not written yet); message: the one line a check prints."""

    ok: bool | None
    message: str


@dataclass(frozen=True)
class Case:
    """One input of a check: the positional arguments and a short description for the message."""

    args: tuple
    label: str


@dataclass(frozen=True)
class Mistake:
    """A common wrong answer, as a small implementation, and the hint printed when a function matches it."""

    impl: Callable[..., Any]
    hint: str


@dataclass
class Check:
    """A check of one exercise.

    Args:
        what: the function's role, for messages ("your loss").
        reference: the right answer for a case's arguments (calls into :mod:`mcl`).
        cases: makes the cases (random inputs and edge cases), seeded, so every run checks the same.
        compare: ``compare(expected, got, case)`` -> None when they agree, else what differs (a phrase).
        mistakes: the known mistakes, tried in order when the function disagrees.
        summary: ``summary(fn, **context)`` -> what the right function says about this run's data (the
            chapter passes it as keywords); None when the check has no such data.
    """

    what: str
    reference: Callable[..., Any]
    cases: Callable[[], list[Case]]
    compare: Callable[[Any, Any, Case], str | None]
    mistakes: list[Mistake] = field(default_factory=list)
    summary: Callable[..., str] | None = None

    def verdict(self, fn: Callable[..., Any], **context: Any) -> Verdict:
        """Run ``fn`` on every case and judge it (see the module's docstring)."""
        if not callable(fn):
            return Verdict(
                False,
                f"not yet right: pass your function itself (no parentheses), not {type(fn).__name__} "
                f"{_short(fn)}",
            )
        cases = self.cases()
        for case in cases:
            expected = self.reference(*_fresh(case.args))
            try:
                got = fn(*_fresh(case.args))
            except NotImplementedError as err:
                message = str(err).strip() or f"{getattr(fn, '__name__', 'the function')} still raises"
                message = message.removeprefix("not written yet:").strip()
                return Verdict(None, f"not written yet: {message}")
            except Exception as err:  # noqa: BLE001 - a check reports what the participant's code raised
                hint = self._diagnose_error(err, case)
                text = (
                    f"not yet right: {self.what} raised {type(err).__name__}: {_short(err)} for {case.label}"
                )
                return Verdict(False, text + (f". {hint}" if hint else ""))
            problem = self.compare(expected, got, case)
            if problem is not None:
                hint = self._diagnose(fn, got, case)
                return Verdict(
                    False, f"not yet right: {problem} for {case.label}" + (f": {hint}" if hint else "")
                )
        line = f"right: {self.what} agrees with the reference on all {len(cases)} cases"
        if self.summary is not None and context:
            try:
                line += f". {self.summary(fn, **context)}"
            except Exception as err:  # noqa: BLE001 - the check passed; the data summary must not hide that
                line += f" (but on this run's data it raised {type(err).__name__}: {_short(err)})"
        return Verdict(True, line)

    def __call__(self, fn: Callable[..., Any], **context: Any) -> None:
        print(self.verdict(fn, **context).message)

    def _diagnose(self, fn: Callable[..., Any], got: Any, case: Case) -> str | None:
        """The hint of the known mistake that ``fn`` repeats: the first one that gives ``fn``'s answers on
        every case, else the first that gives its answer on the failing ``case``."""
        answers = []
        for other in self.cases():
            try:
                answers.append((other, fn(*_fresh(other.args))))
            except Exception:  # noqa: BLE001 - cases fn cannot answer do not count
                continue
        everywhere, here = None, None
        for mistake in self.mistakes:
            if here is None and self._agrees(mistake, got, case):
                here = mistake.hint
            if everywhere is None and all(self._agrees(mistake, a, c) for c, a in answers):
                everywhere = mistake.hint
        return everywhere or here

    def _agrees(self, mistake: Mistake, got: Any, case: Case) -> bool:
        try:
            return self.compare(mistake.impl(*_fresh(case.args)), got, case) is None
        except Exception:  # noqa: BLE001 - a mistake that cannot answer this case does not match it
            return False

    def _diagnose_error(self, err: Exception, case: Case) -> str | None:
        for mistake in self.mistakes:
            try:
                mistake.impl(*_fresh(case.args))
            except type(err):
                return mistake.hint
            except Exception:  # noqa: BLE001
                continue
        return None


def _fresh(args: tuple) -> tuple:
    """A deep copy of a case's arguments, so a function that changes its inputs in place cannot change the
    reference's (tensors are cloned)."""
    return tuple(a.clone() if isinstance(a, Tensor) else copy.deepcopy(a) for a in args)


def _short(value: Any, limit: int = 90) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return _short(repr(value), 40)


# ------------------------------------------------------------------------------------------------ NT-Xent
def _nt_xent_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 16, generator=g)
    cases = [
        Case((z, z + 0.3 * torch.randn(8, 16, generator=g), 0.5), "a random batch of N=8 pairs, t=0.5"),
        Case(
            (torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g), 0.1),
            "the smallest batch, N=2, t=0.1",
        ),
        Case(
            (40.0 * torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g), 0.5),
            "views of very different lengths",
        ),
        Case(
            (torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g), 1.0),
            "N=16 unrelated pairs, t=1",
        ),
    ]
    grad = torch.randn(4, 8, generator=g).requires_grad_()
    cases.append(Case((grad, torch.randn(4, 8, generator=g), 0.5), "inputs that need a gradient"))
    return cases


def _compare_loss(expected: Tensor, got: Any, case: Case) -> str | None:
    if not isinstance(got, Tensor):
        return (
            f"your loss is a {type(got).__name__}, not a tensor (training needs its gradient: keep it a "
            "0-dim torch.Tensor, no .item() or numpy)"
        )
    if got.dim() != 0:
        return f"your loss has shape {list(got.shape)}, not a single number (average over the 2N views)"
    if case.args[0].requires_grad and not got.requires_grad:
        return "your loss has no gradient (keep the computation in torch: no .detach(), .item() or numpy)"
    if not torch.isfinite(got.detach()):
        return f"your loss is {got.item()}"
    if not math.isclose(got.item(), expected.item(), rel_tol=1e-4, abs_tol=1e-5):
        return f"your loss is {got.item():.4f}, the reference {expected.item():.4f}"
    return None


def _keeps_self(z1: Tensor, z2: Tensor, t: float) -> Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    return F.cross_entropy(z @ z.T / t, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


def _unnormalised(z1: Tensor, z2: Tensor, t: float) -> Tensor:
    z = torch.cat([z1, z2])
    n = len(z1)
    logits = (z @ z.T / t).fill_diagonal_(float("-inf"))
    return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


def _times_temperature(z1: Tensor, z2: Tensor, t: float) -> Tensor:
    return nt_xent(z1, z2, 1.0 / t)


def _one_side(z1: Tensor, z2: Tensor, t: float) -> Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    logits = (z @ z.T / t).fill_diagonal_(float("-inf"))
    return F.cross_entropy(logits[:n], torch.arange(n, 2 * n))


def _other_view_only(z1: Tensor, z2: Tensor, t: float) -> Tensor:
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    target = torch.arange(len(a))
    return (F.cross_entropy(a @ b.T / t, target) + F.cross_entropy(b @ a.T / t, target)) / 2


def _summed(z1: Tensor, z2: Tensor, t: float) -> Tensor:
    return nt_xent(z1, z2, t) * 2 * len(z1)


NT_XENT_MISTAKES = [
    Mistake(
        _keeps_self,
        "did you mask out each view's similarity with itself? It is always 1/t, the largest logit, and a "
        "view is not its own negative (set the diagonal to -inf before the softmax)",
    ),
    Mistake(_unnormalised, "did you L2-normalise the views first? NT-Xent compares cosine similarities"),
    Mistake(_times_temperature, "divide the similarities by the temperature; you multiplied"),
    Mistake(
        _one_side,
        "every one of the 2N views is an anchor: the second half (z2's rows, whose partner is in z1) "
        "counts too, and the loss is the mean over all 2N",
    ),
    Mistake(
        _other_view_only,
        "a view's negatives are all the other 2N - 2 views, from z1 and z2 alike, not only the other "
        "view's rows (that is CLIP's loss)",
    ),
    Mistake(_summed, "average over the 2N views; a sum grows with the batch size"),
]

check_nt_xent = Check(
    what="your loss",
    reference=nt_xent,
    cases=_nt_xent_cases,
    compare=_compare_loss,
    mistakes=NT_XENT_MISTAKES,
)


# --------------------------------------------------------------------- which attribute SimCLR suppresses
def _largest_shortfall(simclr: dict[str, float], control: dict[str, float]) -> str:
    shortfall = {a: control[a] - simclr[a] for a in control}
    return max(shortfall, key=shortfall.get)


def _suppressed_cases() -> list[Case]:
    return [
        Case(
            ({"shape": 0.55, "texture": 0.50, "color": 1.0}, {"shape": 0.90, "texture": 0.55}),
            "SimCLR {shape 0.55, texture 0.50, color 1.0} against the control {shape 0.90, texture 0.55}",
        ),
        Case(
            ({"shape": 0.80, "texture": 0.45, "color": 0.99}, {"shape": 0.85, "texture": 0.75}),
            "SimCLR {shape 0.80, texture 0.45, color 0.99} against the control {shape 0.85, texture 0.75}",
        ),
        Case(
            ({"color": 1.0, "texture": 0.9, "shape": 0.3}, {"texture": 0.95, "shape": 0.4}),
            "SimCLR {color 1.0, texture 0.9, shape 0.3} against the control {texture 0.95, shape 0.4}",
        ),
    ]


def _compare_name(expected: str, got: Any, case: Case) -> str | None:
    if not isinstance(got, str):
        return f"your function returned {_short(repr(got), 40)}, not an attribute's name such as 'shape'"
    if got != expected:
        return f"your function says {got!r}, the reference {expected!r}"
    return None


def _suppressed_summary(fn, *, simclr: dict, control: dict, guess: str | None = None) -> str:
    simclr, control = {k: float(v) for k, v in simclr.items()}, {k: float(v) for k, v in control.items()}
    answer = fn(simclr, control)
    gaps = ", ".join(f"{a} {control[a] - simclr[a]:+.2f}" for a in control)
    line = f"On this run the control reads more than SimCLR by {gaps}: most suppressed is {answer}"
    if guess is None or guess is Ellipsis:
        return line + " (you made no guess)"
    return line + (" (your guess)" if guess == answer else f" (you guessed {guess!r})")


check_suppressed_attribute = Check(
    what="your function",
    reference=_largest_shortfall,
    cases=_suppressed_cases,
    compare=_compare_name,
    mistakes=[
        Mistake(
            lambda simclr, control: min(control, key=lambda a: simclr[a]),
            "you picked the attribute SimCLR reads worst; suppression is reading it worse than a model "
            "trained without the easy feature could: compare each attribute with the control",
        ),
        Mistake(
            lambda simclr, control: min(control, key=lambda a: control[a] - simclr[a]),
            "you picked the smallest shortfall: the suppressed attribute is the one SimCLR falls furthest "
            "short of the control on (control - SimCLR largest)",
        ),
        Mistake(
            lambda simclr, control: max(simclr, key=lambda a: control[a] - simclr[a]),
            "the one-colour control has no colour attribute (colour never varies there): compare only the "
            "attributes the control has (loop over control)",
        ),
    ],
    summary=_suppressed_summary,
)


# ------------------------------------------------------------------------------ what the eye saw (AMI)
def _eye_reference(cluster_ids: Tensor, labels: dict[str, Tensor]) -> dict[str, float]:
    return {name: ami(cluster_ids, y) for name, y in labels.items()}


def _eye_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    n = 600
    color, texture, shape = (torch.randint(0, 10, (n,), generator=g) for _ in range(3))
    renamed = torch.randperm(10, generator=g)[color]  # clusters = colours under other names
    noisy = torch.where(torch.rand(n, generator=g) < 0.3, torch.randint(0, 10, (n,), generator=g), texture)
    few = torch.randint(0, 3, (n,), generator=g)
    labels = {"shape": shape, "texture": texture, "color": color}
    return [
        Case((renamed, labels), "clusters that are the colours under other cluster ids"),
        Case((noisy, labels), "clusters that follow texture for 70% of the images"),
        Case((few, labels), "3 clusters unrelated to every attribute"),
        Case((torch.zeros(n, dtype=torch.long), labels), "a single cluster"),
    ]


def _compare_scores(expected: dict[str, float], got: Any, case: Case) -> str | None:
    if not isinstance(got, dict):
        return f"your function returned {type(got).__name__}, not a dict attribute -> AMI"
    if set(got) != set(expected):
        return f"your dict has the keys {sorted(got)}, the attributes are {sorted(expected)}"
    for name, value in expected.items():
        try:
            ok = math.isclose(float(got[name]), value, abs_tol=1e-6)
        except (TypeError, ValueError):
            return f"your {name} value {_short(repr(got[name]), 30)} is not a number"
        if not ok:
            return f"your AMI with {name} is {_number(got[name])}, the reference {value:.4f}"
    return None


def _eye_summary(fn, *, cluster_ids: Tensor, labels: dict[str, Tensor], stage: int = 0) -> str:
    scores = fn(cluster_ids, labels)
    eye = max(scores, key=scores.get)
    listed = ", ".join(f"{name} {value:.2f}" for name, value in sorted(scores.items(), key=lambda kv: -kv[1]))
    return f"On this run stage {stage}'s clusters follow {eye} (AMI {listed}): that is what the eye saw"


check_what_the_eye_saw = Check(
    what="your function",
    reference=_eye_reference,
    cases=_eye_cases,
    compare=_compare_scores,
    mistakes=[
        Mistake(
            lambda ids, labels: {
                n: float((torch.as_tensor(ids) == y).float().mean()) for n, y in labels.items()
            },
            "cluster ids are arbitrary names (cluster 3 need not be colour 3): compare the groupings with "
            "mcl.cluster.ami, not the ids with ==",
        ),
        Mistake(
            lambda ids, labels: {n: normalized_mutual_info_score(y, ids) for n, y in labels.items()},
            "that is the normalised mutual information, which is above 0 even for unrelated clusters; AMI "
            "subtracts what chance gives (mcl.cluster.ami)",
        ),
        Mistake(
            lambda ids, labels: {n: adjusted_rand_score(y, ids) for n, y in labels.items()},
            "that is the adjusted Rand index; the chapter and the paper use the adjusted mutual information",
        ),
        Mistake(
            lambda ids, labels: {n: ami(y, y) for n, y in labels.items()},
            "you compared each attribute with itself: compare the cluster ids with each attribute",
        ),
    ],
    summary=_eye_summary,
)


# --------------------------------------------------------------------------- stage 2's pseudo-labels
def _pseudo_reference(ids0: Tensor, ids1: Tensor) -> Tensor:
    return combine_labels([ids0, ids1], mode="product")


def _pseudo_cases() -> list[Case]:
    g = torch.Generator().manual_seed(2)
    crossed = (torch.tensor([1, 2, 1, 2, 0, 0]), torch.tensor([2, 1, 2, 1, 3, 3]))
    return [
        Case(crossed, "ids0=[1, 2, 1, 2, 0, 0], ids1=[2, 1, 2, 1, 3, 3]"),
        Case(
            (torch.randint(0, 10, (300,), generator=g), torch.randint(0, 10, (300,), generator=g)),
            "300 samples, K=10 at both stages",
        ),
        Case(
            (torch.randint(0, 4, (200,), generator=g), torch.randint(0, 12, (200,), generator=g)),
            "200 samples, 4 clusters at stage 0 and 12 at stage 1",
        ),
        Case((torch.zeros(5, dtype=torch.long), torch.tensor([0, 1, 0, 1, 1])), "one stage-0 cluster"),
    ]


def _same_partition(expected: Tensor, got: Any, case: Case) -> str | None:
    try:
        got = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError):
        return f"your function returned {type(got).__name__}, not a tensor of one label per sample"
    n = len(expected)
    if got.shape != (n,):
        return f"your labels have shape {list(got.shape)}, not [{n}] (one pseudo-label per sample)"
    if got.is_floating_point():
        return "your labels are floats; pseudo-labels are integer group ids"
    e, o = expected.numpy(), got.numpy()
    pairs = len(np.unique(np.stack([e, o]), axis=1).T)
    n_exp, n_got = len(np.unique(e)), len(np.unique(o))
    if pairs == n_exp == n_got:
        return None  # the same grouping, whatever the ids are called
    return f"your labels make {n_got} groups, the Cartesian product {n_exp}"


def _pseudo_summary(fn, *, ids0: Tensor, ids1: Tensor) -> str:
    sizes = np.bincount(
        np.unique(torch.as_tensor(fn(ids0.clone(), ids1.clone())).numpy(), return_inverse=True)[1]
    )
    possible = (int(ids0.max()) + 1) * (int(ids1.max()) + 1)
    return (
        f"On this run stages 0 and 1 give {len(sizes)} stage-2 groups of the {possible} possible pairs, "
        f"of {sizes.min()} to {sizes.max()} samples"
    )


check_pseudo_labels = Check(
    what="your function",
    reference=_pseudo_reference,
    cases=_pseudo_cases,
    compare=_same_partition,
    summary=_pseudo_summary,
    mistakes=[
        Mistake(
            lambda ids0, ids1: ids1.clone(),
            "you kept only the latest stage's clusters (the bug in the authors' released script): two "
            "samples share a pseudo-label only if they shared a cluster at every stage, so combine both",
        ),
        Mistake(lambda ids0, ids1: ids0.clone(), "you kept only stage 0's clusters: combine both stages"),
        Mistake(
            lambda ids0, ids1: ids0 + ids1,
            "a sum collides: (1, 2) and (2, 1) get the same label. Make one label per distinct pair",
        ),
        Mistake(
            lambda ids0, ids1: ids0 * 10 + ids1,
            "ids0 * 10 + ids1 assumes fewer than 10 stage-1 clusters; multiply by their number "
            "(ids1.max() + 1), or number the distinct pairs (torch.unique(..., dim=0, return_inverse=True))",
        ),
    ],
)


# ---------------------------------------------------------------------- one epoch of feature-aware batches
def _batches_reference(labels: Tensor, batch_size: int, seed: int) -> int:
    """The number of batches an epoch has (the library's sampler with the authors' one group per batch)."""
    return FeatureAwareBatchSampler(labels, batch_size, seed=seed, world_size=1, rank=0).n_homogeneous_batches


def _batches_cases() -> list[Case]:
    g = torch.Generator().manual_seed(3)
    sizes = torch.tensor([40, 33, 16, 5, 12])
    grouped = torch.repeat_interleave(torch.arange(5), sizes)
    grouped = grouped[torch.randperm(len(grouped), generator=g)]
    return [
        Case((grouped, 8, 0), "5 groups of 40, 33, 16, 5 and 12 samples, batch_size=8"),
        Case((torch.randint(0, 10, (400,), generator=g), 16, 1), "400 samples in 10 groups, batch_size=16"),
        Case((torch.tensor([0, 0, 0, 1, 1, 1, 1, 2]), 2, 5), "8 samples in 3 groups, batch_size=2"),
    ]


_HINT_ONE_GROUP = (
    "every batch must come from one pseudo-label group (then what the earlier stages learned is the same "
    "for all negatives, and the loss has to use something else); shuffle each group, cut it into batches, "
    "and drop the leftovers rather than pooling them"
)
_HINT_DROP = (
    "drop each group's last, incomplete batch (the library's small_groups='drop'): a short batch has fewer "
    "negatives"
)
_HINT_REPEAT = "each index once per epoch: shuffle each group (a permutation, no replacement), then cut it"
_HINT_COUNT = "a group of n samples gives n // batch_size full batches, and every group takes part"


def _batch_problem(expected: int, got: Any, case: Case) -> tuple[str, str] | None:
    """(what is wrong, its hint) with one epoch of batches, or None. The invariants: full batches of valid,
    unrepeated indices, each from one group, as many as the library's sampler makes. Batches differ by their
    shuffle, so a wrong answer is recognised by the invariant it breaks, not by matching a known wrong
    output."""
    labels, batch_size, seed = case.args
    try:
        batches = [[int(i) for i in batch] for batch in got]
    except TypeError:
        return f"your function returned {type(got).__name__}, not a list of batches (lists of indices)", ""
    seen: dict[int, int] = {}
    for b, batch in enumerate(batches):
        groups = sorted({int(labels[i]) for i in batch if 0 <= i < len(labels)})
        if len(groups) > 1:
            return f"batch {b} mixes the groups {groups}", _HINT_ONE_GROUP
        if len(batch) != batch_size:
            return f"batch {b} has {len(batch)} indices, not batch_size={batch_size}", _HINT_DROP
        for i in batch:
            if not 0 <= i < len(labels):
                return f"batch {b} holds index {i}, outside 0..{len(labels) - 1}", ""
            if i in seen:
                return f"index {i} is in batch {seen[i]} and again in batch {b}", _HINT_REPEAT
            seen[i] = b
    if len(batches) != expected:
        return f"your epoch has {len(batches)} batches, a full one {expected}", _HINT_COUNT
    return None


def _compare_batches(expected: int, got: Any, case: Case) -> str | None:
    problem = _batch_problem(expected, got, case)
    return None if problem is None else problem[0]


def _seed_problem(fn) -> str | None:
    """Different seeds must give different batches (each group shuffled by the seed)."""
    labels = torch.repeat_interleave(torch.arange(3), torch.tensor([12, 12, 12]))
    first = [[int(i) for i in b] for b in fn(labels.clone(), 4, 0)]
    second = [[int(i) for i in b] for b in fn(labels.clone(), 4, 1)]
    if first == second:
        return (
            "not yet right: seeds 0 and 1 give the same batches: shuffle each group with the seed "
            "(torch.randperm(n, generator=torch.Generator().manual_seed(seed))), so every epoch brings "
            "other negatives together"
        )
    return None


def _drop_nothing(labels: Tensor, batch_size: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    batches = []
    for group in labels.unique():
        members = torch.nonzero(labels == group).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        batches += [members[i : i + batch_size].tolist() for i in range(0, len(members), batch_size)]
    return batches


def _same_every_seed(labels: Tensor, batch_size: int, seed: int) -> list[list[int]]:
    batches = []
    for group in labels.unique():
        members = torch.nonzero(labels == group).flatten()
        full = len(members) // batch_size * batch_size
        batches += [members[i : i + batch_size].tolist() for i in range(0, full, batch_size)]
    return batches


def _ignore_groups(labels: Tensor, batch_size: int, seed: int) -> list[list[int]]:
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return [order[i : i + batch_size].tolist() for i in range(0, len(order) - batch_size + 1, batch_size)]


def _pool_leftovers(labels: Tensor, batch_size: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    batches, rest = [], []
    for group in labels.unique():
        members = torch.nonzero(labels == group).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        full = len(members) // batch_size * batch_size
        batches += [members[i : i + batch_size].tolist() for i in range(0, full, batch_size)]
        rest += members[full:].tolist()
    return batches + [rest[i : i + batch_size] for i in range(0, len(rest) - batch_size + 1, batch_size)]


class _BatchCheck(Check):
    """The batch-order check: invariants per case (one group per batch, no repeats, full batches, as many
    as the library's sampler makes; each problem names its hint), then that the seed changes the shuffle."""

    def _diagnose(self, fn: Callable[..., Any], got: Any, case: Case) -> str | None:
        problem = _batch_problem(self.reference(*_fresh(case.args)), got, case)
        return problem[1] or None if problem else None

    def verdict(self, fn: Callable[..., Any], **context: Any) -> Verdict:
        first = super().verdict(fn, **context)
        if first.ok is not True:
            return first
        try:
            problem = _seed_problem(fn)
        except Exception as err:  # noqa: BLE001
            problem = (
                f"not yet right: {self.what} raised {type(err).__name__}: {_short(err)} for another seed"
            )
        return first if problem is None else Verdict(False, problem)


def _batches_summary(fn, *, labels: Tensor, batch_size: int, seed: int = 0) -> str:
    batches = fn(labels.clone(), batch_size, seed)
    used = sum(len(b) for b in batches)
    return (
        f"On this run's stage-1 pseudo-labels ({len(labels.unique())} groups), one epoch has {len(batches)} "
        f"batches of {batch_size} and leaves out {len(labels) - used} of {len(labels)} samples"
    )


check_feature_aware_batches = _BatchCheck(
    what="your function",
    reference=_batches_reference,
    cases=_batches_cases,
    compare=_compare_batches,
    summary=_batches_summary,
    mistakes=[
        Mistake(_ignore_groups, _HINT_ONE_GROUP),
        Mistake(_drop_nothing, _HINT_DROP),
        Mistake(_pool_leftovers, _HINT_ONE_GROUP),
        Mistake(_same_every_seed, "seeds 0 and 1 give the same batches"),
    ],
)


# ------------------------------------------------------------------------------------ is MCL's gain real?
def _gain_reference(
    mcl: dict[str, float], simclr: dict[str, float], ensemble: dict[str, float], margin: float
) -> dict[str, bool]:
    return {a: mcl[a] - ensemble[a] >= margin for a in mcl}


def _gain_cases() -> list[Case]:
    return [
        Case(
            (
                {"shape": 0.80, "texture": 0.60},
                {"shape": 0.70, "texture": 0.50},
                {"shape": 0.78, "texture": 0.52},
                0.05,
            ),
            "MCL {shape 0.80, texture 0.60}, SimCLR {0.70, 0.50}, ensemble {0.78, 0.52}, margin 0.05",
        ),
        Case(
            (
                {"shape": 0.70, "texture": 0.90},
                {"shape": 0.72, "texture": 0.80},
                {"shape": 0.80, "texture": 0.83},
                0.05,
            ),
            "MCL {shape 0.70, texture 0.90}, SimCLR {0.72, 0.80}, ensemble {0.80, 0.83}, margin 0.05",
        ),
        Case(
            (
                {"shape": 0.75, "color": 1.0},
                {"shape": 0.60, "color": 1.0},
                {"shape": 0.66, "color": 1.0},
                0.1,
            ),
            "MCL {shape 0.75, color 1.0}, SimCLR {0.60, 1.0}, ensemble {0.66, 1.0}, margin 0.1",
        ),
        Case(
            ({"shape": 0.62}, {"shape": 0.60}, {"shape": 0.55}, 0.05), "MCL 0.62, SimCLR 0.60, ensemble 0.55"
        ),
    ]


def _compare_flags(expected: dict[str, bool], got: Any, case: Case) -> str | None:
    if not isinstance(got, dict):
        return f"your function returned {type(got).__name__}, not a dict attribute -> True/False"
    if set(got) != set(expected):
        return f"your dict has the keys {sorted(got)}, the attributes are {sorted(expected)}"
    wrong = {a: bool(got[a]) for a in expected if bool(got[a]) != expected[a]}
    if wrong:
        return (
            "your verdicts " + ", ".join(f"{a}: {v}" for a, v in wrong.items()) + " differ from the reference"
        )
    return None


def _gain_summary(fn, *, mcl: dict, simclr: dict, ensemble: dict, margin: float = 0.05) -> str:
    mcl, simclr, ensemble = ({k: float(v) for k, v in d.items()} for d in (mcl, simclr, ensemble))
    verdicts = fn(mcl, simclr, ensemble, margin)
    gains = ", ".join(f"{a} {mcl[a] - ensemble[a]:+.3f}" for a in mcl)
    real = [a for a, v in verdicts.items() if v]
    said = (
        f"real (>= {margin}) on {', '.join(real)}" if real else f"not real on any attribute (margin {margin})"
    )
    return f"On this run MCL's concatenation minus the equal-budget ensemble: {gains}; the gain is {said}"


check_gain_is_real = Check(
    what="your function",
    reference=_gain_reference,
    cases=_gain_cases,
    compare=_compare_flags,
    mistakes=[
        Mistake(
            lambda mcl, simclr, ensemble, margin: {a: mcl[a] - simclr[a] >= margin for a in mcl},
            "you compared with SimCLR (stage 0), but MCL's concatenation has n_stages times its width and "
            "training: compare with the ensemble of as many SimCLR models, concatenated the same way",
        ),
        Mistake(
            lambda mcl, simclr, ensemble, margin: {a: abs(mcl[a] - ensemble[a]) >= margin for a in mcl},
            "a loss is not a gain: drop the abs()",
        ),
        Mistake(
            lambda mcl, simclr, ensemble, margin: {a: ensemble[a] - mcl[a] >= margin for a in mcl},
            "the gain is MCL - ensemble, not ensemble - MCL",
        ),
        Mistake(
            lambda mcl, simclr, ensemble, margin: {a: mcl[a] > ensemble[a] for a in mcl},
            "any difference above 0 is not yet a gain: probes on a few thousand images vary by a few "
            "hundredths from seed to seed, so require the margin",
        ),
    ],
    summary=_gain_summary,
)


#: every check of the workshop, by name (for tests and the generator's documentation)
CHECKS: dict[str, Check] = {
    "check_nt_xent": check_nt_xent,
    "check_suppressed_attribute": check_suppressed_attribute,
    "check_what_the_eye_saw": check_what_the_eye_saw,
    "check_pseudo_labels": check_pseudo_labels,
    "check_feature_aware_batches": check_feature_aware_batches,
    "check_gain_is_real": check_gain_is_real,
}


def references() -> dict[str, Callable[..., Any]]:
    """Each check's reference solution, written plainly (for tests: a right answer must pass)."""
    return {
        "check_nt_xent": nt_xent,
        "check_suppressed_attribute": _largest_shortfall,
        "check_what_the_eye_saw": _eye_reference,
        "check_pseudo_labels": _pseudo_reference,
        "check_feature_aware_batches": _reference_batches,
        "check_gain_is_real": _gain_reference,
    }


def _reference_batches(labels: Tensor, batch_size: int, seed: int) -> list[list[int]]:
    sampler = FeatureAwareBatchSampler(labels, batch_size, seed=seed, world_size=1, rank=0)
    return list(sampler)


__all__ = ["Case", "Check", "Mistake", "Verdict", "CHECKS", *CHECKS]
