"""How much two tickets agree: the overlap of their masks, per parameter and in total.

Two masks of one parameter keep ``a`` and ``b`` weights, ``both`` of them in common; their
Jaccard similarity is ``both / (a + b - both)`` (1 for the same mask, 0 for disjoint
ones). Used to compare the ticket of one round with the next, or the tickets that two
seeds find (as jaxpruner's mask-intersection summary, per parameter and in total).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._array_api import Array, array_namespace
from .backend import count_kept
from .pruner import Pruner, masked_parameters

__all__ = ["MaskOverlap", "ParameterOverlap", "mask_overlap"]


@dataclass(frozen=True)
class ParameterOverlap:
    """The overlap of two masks of one parameter."""

    name: str
    kept_a: int
    kept_b: int
    kept_both: int
    total: int

    @property
    def jaccard(self) -> float:
        """``kept_both / (kept_a + kept_b - kept_both)``; 1.0 when both keep nothing."""
        union = self.kept_a + self.kept_b - self.kept_both
        return self.kept_both / union if union else 1.0


@dataclass(frozen=True)
class MaskOverlap:
    """Per-parameter and total overlap of two sets of masks."""

    parameters: tuple[ParameterOverlap, ...]

    @property
    def kept_both(self) -> int:
        return sum(p.kept_both for p in self.parameters)

    @property
    def jaccard(self) -> float:
        """The Jaccard similarity of all the masks together."""
        union = sum(p.kept_a + p.kept_b - p.kept_both for p in self.parameters)
        return self.kept_both / union if union else 1.0

    def __str__(self) -> str:
        rows = [f"{p.name}: {p.kept_both:,} kept in both, jaccard {p.jaccard:.4f}" for p in self.parameters]
        return "\n".join([*rows, f"total: {self.kept_both:,} kept in both, jaccard {self.jaccard:.4f}"])


def named_masks(x: Any, arg: str) -> dict[str, Array]:
    """Named masks from a pruner, a ``Pruner.state_dict()``, a mapping or a sequence;
    ``arg`` names the argument in the error.

    Raises
    ------
    TypeError
        If ``x`` is none of these.
    """
    if isinstance(x, Pruner):
        return {name: mask for name, _, mask in masked_parameters(x)}
    if isinstance(x, Mapping) and "groups" in x and "format" in x:
        return {
            f"groups[{g}].layers[{i}].{name}": mask
            for g, group in enumerate(x["groups"])
            for i, layer in enumerate(group["layers"])
            for name, mask in layer["masks"].items()
        }
    if isinstance(x, Mapping):
        return dict(x)
    if isinstance(x, Sequence) and not isinstance(x, str):
        return {f"[{i}]": m for i, m in enumerate(x)}
    raise TypeError(f"{arg} must be a Pruner, a Pruner.state_dict(), a mapping or a sequence of masks, got {x!r}")


def mask_overlap(a: Any, b: Any) -> MaskOverlap:
    """The overlap of two sets of masks: of two pruners (over the same architecture), two
    saved states, or two mappings or sequences of boolean masks, matched by name or
    position.

    Raises
    ------
    ValueError
        If the two do not hold masks of the same names and shapes.

    Examples
    --------
    >>> import numpy as np
    >>> overlap = mask_overlap([np.array([True, True, False, False])], [np.array([True, False, True, False])])
    >>> overlap.kept_both, round(overlap.jaccard, 3)
    (1, 0.333)
    """
    left, right = named_masks(a, "a"), named_masks(b, "b")
    if list(left) != list(right):
        raise ValueError(f"a and b hold different masks: {list(left)} against {list(right)}")
    rows = []
    for name, ma in left.items():
        mb = right[name]
        if tuple(ma.shape) != tuple(mb.shape):
            raise ValueError(f"mask {name} has shape {tuple(ma.shape)} in a and {tuple(mb.shape)} in b")
        xp = array_namespace(ma, mb)
        if ma.dtype != xp.bool or mb.dtype != xp.bool:
            raise TypeError(f"mask {name} must be boolean in both, got {ma.dtype} and {mb.dtype}")
        total = 1
        for d in ma.shape:
            total *= int(d)
        rows.append(ParameterOverlap(name, count_kept(ma), count_kept(mb), count_kept(ma & mb), total))
    return MaskOverlap(tuple(rows))
