"""pyproject.toml and environment.yml pin the same set."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins_in_pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups() for d in deps)


def pins_in_environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(p.split("==") for p in pip if "==" in p)


def test_every_dependency_is_pinned_exactly():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all("==" in d for d in deps), deps


def test_environment_yml_agrees_with_pyproject():
    assert pins_in_environment() == pins_in_pyproject()


def test_brief_packages_are_pinned():
    pins = pins_in_pyproject()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["jupyter-book"] == "1.0.4.post1"
    for name in (
        "open_clip_torch",
        "papermill",
        "ipykernel",
        "scikit-learn",
        "matplotlib",
        "seaborn",
        "tqdm",
        "pytest",
    ):
        assert name in pins
