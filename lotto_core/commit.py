"""Writing a planned round: every parameter's new mask, through its handle, or through
an adapter's native writer, which can write a whole group in one call."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._array_api import Array
from .protocol import ParameterHandle

__all__ = ["Write", "Writer", "register_native_writer", "write_masks"]

Write = tuple[ParameterHandle, Array, Array | None]
"""``(handle, new mask, new weight or None)``: the weight, pruned entries exactly +0.0,
when the selection already wrote it (``Cut.values``)."""

Writer = Callable[[Sequence[Write]], None]
"""``writes -> None``: store each write as ``handle.set_mask(mask)`` would."""

_NATIVE_WRITERS: list[tuple[Callable[[Array], bool], Writer]] = []


def register_native_writer(accepts: Callable[[Array], bool], writer: Writer) -> None:
    """Let an adapter write a group's new masks with its framework's own kernels (JAX
    zeroes every pruned weight of a group in one compiled call, which runs the
    parameters in parallel). ``write_masks`` hands a group to the first ``writer``
    whose ``accepts`` takes its first mask."""
    _NATIVE_WRITERS.append((accepts, writer))


def write_masks(writes: Sequence[Write]) -> None:
    """Store each new mask (and zero what it prunes) through a native writer that
    accepts the masks, or else one handle at a time: with its new weight where one was
    written and the handle takes it (``set_masked``), else by ``set_mask``."""
    if writes:
        for accepts, writer in _NATIVE_WRITERS:
            if accepts(writes[0][1]):
                writer(writes)
                return
    for handle, mask, value in writes:
        if value is not None and hasattr(handle, "set_masked"):
            handle.set_masked(mask, value)
        else:
            handle.set_mask(mask)
