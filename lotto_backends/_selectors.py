"""Which modules ``make_prunable`` converts: the ``include``/``exclude`` selectors that
the torch and JAX adapters share (a module type, a glob over dotted names, a predicate)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

__all__ = ["check_selectors", "selects"]


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
