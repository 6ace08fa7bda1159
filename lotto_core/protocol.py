"""The protocol that adapters implement: prunable layers and their parameter handles.

A prunable layer exposes one handle per parameter. A handle reads and writes the
parameter's value and its rewind point; weights that can be pruned also carry a boolean
mask. The core only ever talks to layers through these handles, so it never needs to
know which framework a layer comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from ._array_api import Array

__all__ = ["ParameterHandle", "PrunableLayer"]


@runtime_checkable
class ParameterHandle(Protocol):
    """Access to one parameter of a prunable layer.

    The value read is the effective weight: where the mask is ``False`` it reads exactly
    0. Arrays are returned on the parameter's own device and never copied to the host.
    """

    def get_value(self) -> Array:
        """The parameter's current value."""
        ...

    def set_value(self, value: Array) -> None:
        """Overwrite the parameter's value (same shape, dtype and device)."""
        ...

    def get_mask(self) -> Array | None:
        """The boolean keep-mask (``True`` = kept), or ``None`` for a parameter that is
        not prunable (a bias, say)."""
        ...

    def set_mask(self, mask: Array) -> None:
        """Store a new mask and zero the entries of the value that it prunes."""
        ...

    def get_rewind_point(self) -> Array:
        """The value this parameter returns to on rewind (unmasked)."""
        ...

    def set_rewind_point(self, value: Array) -> None:
        """Store a copy of ``value`` as the rewind point."""
        ...


@runtime_checkable
class PrunableLayer(Protocol):
    """A layer whose parameters the core can prune and rewind."""

    def parameter_handles(self) -> Mapping[str, ParameterHandle]:
        """Every parameter of the layer by name, in a fixed order; prunable ones are
        those whose handle has a mask."""
        ...
