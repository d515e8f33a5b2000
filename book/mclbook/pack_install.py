"""Set up the MCL workshop on this laptop with one command: ``python install.py`` (in the unpacked pack).

Copied into the workshop pack as ``install.py`` by ``python -m mclbook.workshop pack``. It uses only the
standard library, so it runs with any Python 3.11+:

1. creates the virtual environment ``.venv/`` beside this file (kept when it exists);
2. installs ``requirements.txt`` into it: from ``wheels/`` alone when that folder exists (no network), else
   from the package index (extra pip arguments after ``--``, e.g. ``-- --index-url URL``);
3. installs the pack's own ``project/`` (the ``mcl`` library and the book's package ``mclbook``) in editable
   mode, so the notebooks find the pack's data and records;
4. runs ``python -m mcl doctor``: environment, data, CPU, GPU and the time the notebooks should take here.

``python install.py --doctor`` runs only step 4; ``python install.py --lab`` starts Jupyter Lab on the
notebooks from that environment (on every system the same command, no path to type).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--env", type=Path, default=HERE / ".venv", help="where to create the environment")
    parser.add_argument("--doctor", action="store_true", help="only run python -m mcl doctor")
    parser.add_argument(
        "--lab", action="store_true", help="start Jupyter Lab on notebooks/, from the environment"
    )
    parser.add_argument("pip_args", nargs="*", help="more arguments for pip install (after --)")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 11):  # noqa: UP036 - install.py runs under the laptop's own Python, any version
        print(f"Python {sys.version.split()[0]} is too old: install Python 3.11 or newer", file=sys.stderr)
        return 1
    python = venv_python(args.env)
    if args.lab:
        if not python.exists():
            print(f"no environment at {args.env}: run python install.py first", file=sys.stderr)
            return 1
        return subprocess.run([str(python), "-m", "jupyterlab", str(HERE / "notebooks")]).returncode
    if not args.doctor:
        if not python.exists():
            print(f"creating {args.env}", flush=True)
            venv.EnvBuilder(with_pip=True).create(args.env)
        wheels = HERE / "wheels"
        source = ["--no-index", "--find-links", str(wheels)] if wheels.is_dir() else []
        print("installing from", wheels if source else "the package index", flush=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *source, *args.pip_args]
        run([*pip, "-r", str(HERE / "requirements.txt")])
        project = HERE / "project"
        run([*pip, "--no-deps", "--no-build-isolation", "-e", str(project), "-e", str(project / "book")])
    if not python.exists():
        print(f"no environment at {args.env}: run python install.py first", file=sys.stderr)
        return 1
    subprocess.run([str(python), "-m", "mcl", "doctor"], cwd=HERE / "notebooks")
    print("\nready: python install.py --lab")
    return 0


if __name__ == "__main__":
    sys.exit(main())
