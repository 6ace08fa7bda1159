"""What ``make_prunable`` converts and what it says it left dense, in the torch and JAX
adapters alike: the ``include``/``exclude`` selectors (a module type, a glob over dotted
names, a predicate) and the warning naming the modules with weights left dense."""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["check_selectors", "dense_reason", "selects", "wanted", "warn_left_dense"]


def selects(selectors: Any, name: str, module: Any) -> bool:
    """Whether any of ``selectors`` picks ``module``, named ``name`` (``None``: none do)."""
    if selectors is None:
        return False
    if isinstance(selectors, type | str) or callable(selectors):
        selectors = [selectors]
    for s in selectors:
        if isinstance(s, type):
            if isinstance(module, s):
                return True
        elif isinstance(s, str):
            if fnmatch.fnmatchcase(name, s):
                return True
        elif s(name, module):
            return True
    return False


def check_selectors(arg: str, selectors: object) -> None:
    """Refuse, naming ``arg``, what is not a selector or a sequence of selectors."""
    if selectors is None:
        return
    items = [selectors] if isinstance(selectors, type | str) or callable(selectors) else selectors
    if not isinstance(items, Sequence):
        raise TypeError(
            f"{arg} must be a module type, a name glob, a predicate or a sequence of them, got {selectors!r}"
        )
    for s in items:
        if not (isinstance(s, type | str) or callable(s)):
            raise TypeError(f"{arg} holds {s!r}: expected a module type, a name glob or a predicate (name, module)")


def wanted(include: Any, exclude: Any, name: str, module: Any) -> bool:
    """Whether ``make_prunable`` is to convert ``module``: selected by ``include`` (or
    ``include`` is ``None``) and not by ``exclude``."""
    if include is not None and not selects(include, name, module):
        return False
    return not selects(exclude, name, module)


def dense_reason(known: bool, unknown: str) -> str:
    """Why ``dense_layers`` lists a module: its type is ``known`` to have a twin, so
    ``make_prunable`` was not asked to convert it; else ``unknown`` (its type, and what
    the adapter adds)."""
    return "not converted (a known type: make_prunable was not asked to)" if known else unknown


def warn_left_dense(unknown: dict[str, str]) -> None:
    """Warn naming each module ``make_prunable`` left with weights dense, and why."""
    if unknown:
        listed = "; ".join(f"{name or '<model>'}: {why}" for name, why in unknown.items())
        warnings.warn(
            f"make_prunable left {len(unknown)} module(s) with weights dense: {listed}. "
            "register_prunable(type, [names]) makes a type prunable; exclude=... leaves it dense without this warning",
            UserWarning,
            stacklevel=3,
        )
