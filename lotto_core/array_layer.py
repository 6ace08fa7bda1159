"""A prunable layer over plain arrays of any Array API namespace.

``ArrayLayer`` is the reference implementation of the adapter protocol. It lets the core
prune NumPy, array-api-strict, PyTorch or JAX arrays without any framework module, and
is what the tests and the benchmark use to drive the core directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from array_api_compat import is_numpy_array, is_torch_array, is_writeable_array

from ._array_api import Array, array_namespace, device

__all__ = ["ArrayLayer", "ArrayParameter"]


def _copy(x: Array) -> Array:
    xp = array_namespace(x)
    return xp.asarray(x, copy=True)


class ArrayParameter:
    """One array with an optional boolean mask and a rewind point (a copy of the value
    it was created with). Works for immutable arrays (JAX) by replacing, never mutating."""

    def __init__(self, value: Array, *, prunable: bool) -> None:
        xp = array_namespace(value)
        self.value: Array = value
        self.mask: Array | None = xp.ones(value.shape, dtype=xp.bool, device=device(value)) if prunable else None
        self.rewind_point: Array = _copy(value)

    def get_value(self) -> Array:
        return self.value

    def set_value(self, value: Array) -> None:
        self.value = value

    def get_mask(self) -> Array | None:
        return self.mask

    def set_mask(self, mask: Array) -> None:
        xp = array_namespace(self.value)
        if is_numpy_array(self.value) or is_torch_array(self.value):
            # in place; a uint8 operand is far cheaper to multiply by than a bool one
            with np.errstate(invalid="ignore", over="ignore"):
                self.value *= xp.astype(mask, xp.uint8)
                self.value += 0.0  # -x * 0 is -0.0; adding +0.0 makes it +0.0
                finite = bool(xp.isfinite(xp.sum(self.value)))
            if not finite:  # inf * 0 is NaN: redo it the exact way
                self.value[xp.logical_not(mask)] = 0
        elif is_writeable_array(self.value):
            self.value[xp.logical_not(mask)] = 0
        else:
            # a scalar zero: no zero array the size of the weight (nor a device to place it on)
            self.value = xp.where(mask, self.value, 0.0)
        self.mask = mask

    def set_masked(self, mask: Array, value: Array) -> None:
        """Store ``mask`` and a ``value`` that is already exactly +0.0 wherever the mask
        is ``False`` (what a native writer computed for a whole group at once)."""
        self.value = value
        self.mask = mask

    def get_rewind_point(self) -> Array:
        return self.rewind_point

    def set_rewind_point(self, value: Array) -> None:
        self.rewind_point = _copy(value)

    def __repr__(self) -> str:
        kind = "prunable" if self.mask is not None else "fixed"
        return f"ArrayParameter({kind}, shape={tuple(self.value.shape)})"


class ArrayLayer:
    """A prunable layer made of named arrays.

    Parameters
    ----------
    params
        The layer's arrays by name, e.g. ``{"weight": w, "bias": b}``.
    prunable
        Names of the arrays that get a mask. ``None`` (the default) makes every array
        prunable.

    Examples
    --------
    >>> import numpy as np
    >>> layer = ArrayLayer({"weight": np.ones((2, 3)), "bias": np.zeros(2)}, prunable=["weight"])
    >>> sorted(layer.parameter_handles())
    ['bias', 'weight']
    """

    def __init__(self, params: Mapping[str, Array], *, prunable: Iterable[str] | None = None) -> None:
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"params must be a non-empty mapping of name to array, got {params!r}")
        names = set(params) if prunable is None else set(prunable)
        unknown = names - set(params)
        if unknown:
            raise ValueError(f"prunable names {sorted(unknown)} are not among params {sorted(params)}")
        for name, value in params.items():
            array_namespace(value)  # raises TypeError for anything that is not an array
            if name in names and value.ndim == 0:
                raise ValueError(f"params[{name!r}] is 0-d; a prunable array needs at least one dimension")
        self.params: dict[str, ArrayParameter] = {
            name: ArrayParameter(value, prunable=name in names) for name, value in params.items()
        }

    def parameter_handles(self) -> Mapping[str, ArrayParameter]:
        return self.params

    def __getitem__(self, name: str) -> Any:
        """The current value of parameter ``name``."""
        return self.params[name].value

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"ArrayLayer({inner})"
