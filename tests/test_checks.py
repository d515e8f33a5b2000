"""mclbook.checks: every check accepts the right answer, says "not written yet" for the student stub, and
rejects wrong implementations with one line (no traceback) and the hint of the mistake they make."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mcl.losses import nt_xent
from mclbook import checks

NAMES = sorted(checks.CHECKS)


def one_line(verdict: checks.Verdict) -> str:
    assert "\n" not in verdict.message and "Traceback" not in verdict.message, verdict.message
    return verdict.message


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_answer_is_right(name):
    verdict = checks.CHECKS[name].verdict(checks.references()[name])
    assert verdict.ok is True, verdict.message
    assert one_line(verdict).startswith("right: ")


@pytest.mark.parametrize("name", NAMES)
def test_the_student_stub_is_not_written_yet(name):
    def stub(*args, **kwargs):
        raise NotImplementedError("my_function: write the thing the exercise asks for.")

    verdict = checks.CHECKS[name].verdict(stub)
    assert verdict.ok is None
    assert one_line(verdict) == "not written yet: my_function: write the thing the exercise asks for."


@pytest.mark.parametrize(
    "name, mistake",
    [(name, m) for name in NAMES for m in checks.CHECKS[name].mistakes],
    ids=lambda x: x if isinstance(x, str) else x.hint[:40],
)
def test_every_known_mistake_is_rejected_with_its_hint(name, mistake):
    verdict = checks.CHECKS[name].verdict(mistake.impl)
    assert verdict.ok is False
    assert one_line(verdict).startswith("not yet right: ")
    assert mistake.hint in verdict.message


@pytest.mark.parametrize("name", NAMES)
def test_every_check_knows_at_least_two_mistakes(name):
    assert len(checks.CHECKS[name].mistakes) >= 2


# Wrong implementations written here, independently of the catalogue, as a participant would write them.
def nt_xent_keeping_self(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = torch.exp(z @ z.T / temperature)
    n = len(z1)
    positive = torch.cat([torch.diag(sim, n), torch.diag(sim, -n)])
    return -torch.log(positive / sim.sum(dim=1)).mean()  # the denominator keeps exp(s_ii / t)


def nt_xent_as_float(z1, z2, temperature=0.5):
    return nt_xent(z1, z2, temperature).item()


def nt_xent_per_view(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    n = len(z1)
    return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]), reduction="none")


def pseudo_labels_latest_only(ids0, ids1):
    return ids1


def pseudo_labels_as_strings(ids0, ids1):
    return [f"{a}-{b}" for a, b in zip(ids0.tolist(), ids1.tolist(), strict=True)]


def pseudo_labels_product_right(ids0, ids1):  # another right answer: ids need not be compact
    return ids0 * (int(ids1.max()) + 1) + ids1


@pytest.mark.parametrize(
    "fn, expected",
    [
        (nt_xent_keeping_self, "did you mask out each view's similarity with itself?"),
        (nt_xent_as_float, "not a tensor"),
        (nt_xent_per_view, "not a single number"),
    ],
)
def test_nt_xent_check_rejects_a_participants_mistakes(fn, expected):
    verdict = checks.check_nt_xent.verdict(fn)
    assert verdict.ok is False and expected in one_line(verdict)


def test_nt_xent_check_names_the_numbers():
    message = checks.check_nt_xent.verdict(nt_xent_keeping_self).message
    assert "your loss is" in message and "the reference" in message


def test_pseudo_label_check_rejects_the_latest_stage_and_accepts_any_ids():
    latest = checks.check_pseudo_labels.verdict(pseudo_labels_latest_only)
    assert latest.ok is False and "only the latest stage" in one_line(latest)
    assert checks.check_pseudo_labels.verdict(pseudo_labels_as_strings).ok is False
    assert checks.check_pseudo_labels.verdict(pseudo_labels_product_right).ok is True


def test_a_crash_in_the_participants_code_is_one_line_not_a_traceback():
    def broken(z1, z2, temperature=0.5):
        return z1 @ z2  # shapes do not match

    verdict = checks.check_nt_xent.verdict(broken)
    assert verdict.ok is False and "raised RuntimeError" in one_line(verdict)


def test_passing_the_result_instead_of_the_function():
    verdict = checks.check_gain_is_real.verdict({"shape": True})
    assert verdict.ok is False and "pass your function itself" in one_line(verdict)


def test_a_function_that_changes_its_input_in_place_does_not_fool_the_check():
    def in_place(z1, z2, temperature=0.5):
        z1.mul_(0)  # ruins the caller's tensor; the check gives every call its own copy
        return nt_xent(z1, z2, temperature)

    assert checks.check_nt_xent.verdict(in_place).ok is False


def test_the_checks_print_one_line_and_return_nothing(capsys):
    assert checks.check_pseudo_labels(checks.references()["check_pseudo_labels"]) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("right: ")


def test_with_this_runs_data_the_line_says_what_the_function_found():
    g = torch.Generator().manual_seed(0)
    labels = {name: torch.randint(0, 10, (500,), generator=g) for name in ("shape", "texture", "color")}
    eye = checks.check_what_the_eye_saw.verdict(
        checks.references()["check_what_the_eye_saw"], cluster_ids=labels["color"], labels=labels
    )
    assert eye.ok is True and "follow color" in eye.message
    suppressed = checks.check_suppressed_attribute.verdict(
        checks.references()["check_suppressed_attribute"],
        guess="texture",
        simclr={"shape": 0.65, "texture": 0.5, "color": 1.0},
        control={"shape": 0.8, "texture": 0.55},
    )
    assert suppressed.ok is True and "most suppressed is shape" in suppressed.message
    assert "you guessed 'texture'" in suppressed.message
    gain = checks.check_gain_is_real.verdict(
        checks.references()["check_gain_is_real"],
        mcl={"shape": 0.8, "texture": 0.7},
        simclr={"shape": 0.7, "texture": 0.6},
        ensemble={"shape": 0.72, "texture": 0.69},
    )
    assert gain.ok is True and "real (>= 0.05) on shape" in gain.message
    batches = checks.check_feature_aware_batches.verdict(
        checks.references()["check_feature_aware_batches"], labels=labels["color"], batch_size=16
    )
    assert batches.ok is True and "leaves out" in batches.message
