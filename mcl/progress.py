"""Progress bars: one helper, so every bar of the library goes where the person running it looks.

``MCL_PROGRESS`` (environment variable) chooses where bars go:

* ``auto`` (the default): in Jupyter a widget bar that updates in place (with ``ipywidgets`` installed;
  without it, a text bar, with no warning), elsewhere a text bar on stderr, as ``tqdm.auto`` does;
* ``text``: a text bar on stderr, in Jupyter too (``papermill --log-output`` then shows it in the terminal);
* ``off``: no bars;
* any other value: a file; bars are appended to it as plain text, one line per redraw (at most every
  ``LOG_INTERVAL_S`` seconds), so they stay out of the notebook's outputs. The book build
  (``mclbook.build``) sets it to each chapter's log, so a rendered page never shows a bar.

A caller's ``disable=True`` (``progress=False`` in the training entry points) always wins.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.std import TqdmWarning
from tqdm.std import tqdm as text_tqdm

LOG_INTERVAL_S = 10.0
_REDRAW = re.compile(r"\r|\x1b\[A")  # tqdm redraws a line with a carriage return (and moves up for nesting)


class _LogLines:
    """A file-like target for tqdm that appends each redraw to ``path`` as one line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, text: str) -> None:
        line = _REDRAW.sub("", text).rstrip()
        if line:
            with self.path.open("a") as handle:
                handle.write(line + "\n")

    def flush(self) -> None:
        pass


def _jupyter_tqdm() -> type[text_tqdm]:
    """``tqdm.autonotebook``'s choice: the widget bar in a Jupyter kernel with ipywidgets, else the text bar.

    Its warnings (experimental mode; ``IProgress not found`` without ipywidgets) are not for the reader of a
    chapter: without ipywidgets the bar is simply text."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.autonotebook import tqdm as auto_tqdm
    return auto_tqdm


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> text_tqdm:
    """A tqdm bar (same arguments as ``tqdm.tqdm``) placed as ``MCL_PROGRESS`` says (see the module)."""
    mode = os.environ.get("MCL_PROGRESS", "auto").strip() or "auto"
    if mode == "off":
        return text_tqdm(iterable, **{**kwargs, "disable": True})
    if mode == "text":
        return text_tqdm(iterable, **{"file": sys.stderr, **kwargs})
    if mode == "auto":
        return _jupyter_tqdm()(iterable, **kwargs)
    # a file: plain text lines; position 0 so that nested bars do not write cursor movements
    settings = {"mininterval": LOG_INTERVAL_S, "ascii": True, **kwargs}
    settings.update(position=0, file=_LogLines(Path(mode)))
    return text_tqdm(iterable, **settings)
