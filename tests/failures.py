"""Failures injected into a pruner's calls, shared by the all-or-nothing tests of every
backend (``tests/*/test_undo.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lotto_core import Pruner, shuffle_masks


def failing(method: Callable[..., Any], hit: Callable[[Any], bool]) -> Callable[..., Any]:
    """``method`` that raises ``MemoryError("injected")`` for the handles ``hit`` picks, as
    an allocation failing inside it would."""

    def fail_on_hit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if hit(self):
            raise MemoryError("injected")
        return method(self, *args, **kwargs)

    return fail_on_hit


def pruner_calls(pruner: Pruner, saved: Mapping[str, Any]) -> dict[str, Callable[[], None]]:
    """Every call that writes a pruner's layers, by name; ``load_state_dict`` loads ``saved``."""
    return {
        "prune": pruner.prune,
        "rewind": pruner.rewind,
        "set_rewind_point": pruner.set_rewind_point,
        "load_state_dict": lambda: pruner.load_state_dict(saved),
        "shuffle_masks": lambda: shuffle_masks(pruner, seed=1),
    }
