"""The pins: exact, the same in pyproject.toml, book/pyproject.toml and environment.yml, and covering every
package the code imports directly (the library's in the library's own list)."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mclbook.build import chapter_notebook

ROOT = Path(__file__).resolve().parents[1]
ROOT_TOML = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
BOOK_TOML = tomllib.loads((ROOT / "book" / "pyproject.toml").read_text())["project"]


def pins(requirements: list[str]) -> dict[str, str]:
    out = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", requirement)
        assert match, f"{requirement!r} is not pinned exactly (name==version)"
        out[match[1].lower().replace("_", "-")] = match[2]
    return out


LIBRARY = pins(ROOT_TOML["dependencies"])
TEST = pins(ROOT_TOML["optional-dependencies"]["test"])
BOOK = pins([r for r in BOOK_TOML["dependencies"] if not r.startswith("mcl==")])


def test_environment_yml_pins_the_same_set():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pins([p for p in pip if not p.startswith("-e")]) == LIBRARY | TEST | BOOK


def imported_distributions(files: list[Path]) -> set[str]:
    """The distributions (normalised names) whose top-level modules ``files`` import, standard library,
    the project's own packages and the modules among ``files`` left out."""
    names = set()
    for path in files:
        if path.suffix == ".md":
            sources = [c.source for c in chapter_notebook(path).cells if c.cell_type == "code"]
        else:
            sources = [path.read_text()]
        for source in sources:
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    local = {path.stem for path in files}  # e.g. one test module reusing another's naive references
    names -= set(sys.stdlib_module_names) | {"mcl", "mclbook", "conftest", "__future__"} | local
    owners = importlib.metadata.packages_distributions()
    return {owners[name][0].lower().replace("_", "-") for name in names}


@pytest.mark.parametrize(
    "files, allowed",
    [
        (sorted((ROOT / "mcl").rglob("*.py")), LIBRARY),
        (
            [*(ROOT / "book").rglob("*.py"), *(ROOT / "book").glob("*.md")],
            LIBRARY | BOOK,
        ),
        ([*(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")], LIBRARY | BOOK | TEST),
    ],
    ids=["library", "book", "tests"],
)
def test_every_directly_imported_package_is_pinned(files, allowed):
    missing = imported_distributions(files) - set(allowed)
    assert not missing, f"imported but not pinned here: {sorted(missing)}"
