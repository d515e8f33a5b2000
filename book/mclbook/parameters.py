"""A chapter's parameters, checked against the types its parameters cell declares.

Every chapter starts with one cell of annotated literals (``seed: int = 0``, ``epochs: int = None``,
``datasets: list[str] = [...]``). papermill replaces them with an untyped cell (``-p epochs abc`` injects
``epochs = "abc"``), and a wrong type would otherwise surface as a TypeError deep inside a training run, or
not at all (a string iterated as a list). IPython keeps the annotations in the notebook's
``__annotations__``, so the chapter's next cell calls ``check_parameters(globals())``: one ValueError that
names the parameter, its declared type and how to pass it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any


def _matches(value: Any, annotation: Any) -> bool:
    """``value`` fits ``annotation`` (int, float, str, bool, dict, list[str], ...); None always fits (a
    chapter's None means "the preset's value")."""
    if value is None:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if origin is not None:  # list[str], dict[str, int]: the container, then its items
        if not isinstance(value, origin):
            return False
        args = typing.get_args(annotation)
        if origin is list and args:
            return all(_matches(item, args[0]) and item is not None for item in value)
        return True
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # an annotation this check does not understand


def _name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def check_parameters(namespace: Mapping[str, Any]) -> None:
    """ValueError naming the first parameter whose value does not fit the type its chapter declares, or an
    int parameter below its range (every int parameter is >= 0; ``n_*`` counts are >= 1).

    ``namespace``: the notebook's ``globals()``; its ``__annotations__`` are the parameters cell's.
    """
    annotations = namespace.get("__annotations__", {})
    for name, annotation in annotations.items():
        if name not in namespace:
            continue
        value = namespace[name]
        if not _matches(value, annotation):
            container = typing.get_origin(annotation) in (list, dict) or annotation in (list, dict)
            how = f"-y '{name}: ...'" if container else f"-p {name} VALUE"
            declared = _name(annotation)
            raise ValueError(
                f"parameter {name}={value!r} is a {type(value).__name__}, but the chapter declares "
                f"`{name}: {declared}`; pass a value of type {declared} (papermill: {how})"
            )
        if isinstance(value, int) and not isinstance(value, bool) and annotation in (int, float):
            low = 1 if name.startswith("n_") else 0
            if value < low:
                raise ValueError(
                    f"parameter {name}={value!r} must be >= {low} (or None for the preset's value)"
                )
